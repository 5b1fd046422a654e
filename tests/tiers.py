"""Test tiers by folder: a test's tier is the folder it sits in under tests/, never a mark set by
hand. tests/conftest.py gives every collected test the marker of its tier, so `-m unit` selects
exactly the unit-tier folders, and holds the unit tier to its contract (no process, no socket).

    unit         no process, no socket: pure code, files, SQLite, ASGI apps through TestClient
    process      starts a local process (the CLI, promtool, amtool, pip), opens no server
    inprocess    a server or client on a local port in this process (gRPC, a refused connection),
                 a real Triton started by a fixture
    integration  real servers (PostgreSQL, Triton, kserve.ModelServer, the stack)
    model        data and model behaviour on freshly rendered data
    containers   the images, run hardened by a real Docker engine

tests/stress and tests/foreign hold independently written renderers of test data; their own tests
start no process and open no socket, so they are unit-tier tests in their own folders."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIERS = {
    "unit": "unit",
    "stress": "unit",
    "foreign": "unit",
    "process": "process",
    "inprocess": "inprocess",
    "integration": "integration",
    "model": "model",
    "containers": "containers",
}


def folder_of(path: Path) -> str | None:
    """The folder directly under tests/ that holds `path`; None outside tests/ or for a file in tests/."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else ""


@cache
def tier_of(path: Path) -> str | None:
    """The tier of a test file under tests/, None where its folder has none (or it is not under tests/)."""
    folder = folder_of(path)
    return TIERS.get(folder) if folder else None


def mark_by_tier(items: Iterable[pytest.Item]) -> None:
    """Give each test under tests/ the marker of its folder's tier; a folder without one is an error."""
    for item in items:
        tier = tier_of(item.path)
        if tier is not None:
            item.add_marker(tier)
        elif folder_of(item.path) is not None:
            raise pytest.UsageError(
                f"{item.nodeid}: {item.path.parent.relative_to(TESTS.parent)} has no test tier;"
                " put the file in the folder of its tier, or give the folder one in tests/tiers.py"
            )
