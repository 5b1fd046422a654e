"""Sample field values per device kind: realistic (DOMAIN.md §1 figures), uniform over each field's
range ("random"), or texts drawn uniformly from each field's grammar ("grammar": every length the
format allows, every character at every position, values no device would show), so the recogniser
learns characters rather than a prior over values and a device whose values are unusual reads like
any other."""

from __future__ import annotations

import datetime as dt
import re._constants as sre_constants  # type: ignore[import-not-found]  # the parser re itself uses
import re._parser as sre_parser  # type: ignore[import-not-found]
from typing import Any, Literal

import numpy as np

from eyeops.devices.layout import CrossCheck, DeviceLayout, FieldSpec

ValueMode = Literal["realistic", "random", "grammar"]


def _round_to(value: float, spec: FieldSpec) -> float:
    if spec.step is not None:
        value = round(value / spec.step) * spec.step
    return round(value, spec.decimals)


def _sample_number(spec: FieldSpec, rng: np.random.Generator, mode: ValueMode) -> float:
    assert spec.range is not None
    lo, hi = spec.range
    if mode == "random":
        # Uniform over the whole range, so the recogniser learns digits rather than a prior over values.
        value = float(rng.uniform(lo, hi))
    else:
        mean, sd = spec.typical if spec.typical else ((lo + hi) / 2, (hi - lo) / 6)
        value = float(np.clip(rng.normal(mean, sd), lo, hi))
    return float(np.clip(_round_to(value, spec), lo, hi))


def _enforce(check: CrossCheck, values: dict[str, float | str | None], layout: DeviceLayout) -> None:
    """Make sampled values satisfy a relation the way a real device's numbers do."""
    if check.rule == "ordered":
        a, b = check.fields
        va, vb = values[a], values[b]
        if isinstance(va, float) and isinstance(vb, float) and vb < va:
            values[a], values[b] = vb, va
            # A value derived from another (K from radius) swaps together with its source.
            derived = {c.fields[0]: c.fields[1] for c in layout.checks if c.rule == "reciprocal"}
            if a in derived and b in derived:
                values[derived[a]], values[derived[b]] = values[derived[b]], values[derived[a]]
    elif check.rule == "mean":
        target, *sources = check.fields
        nums = [values[s] for s in sources]
        if all(isinstance(v, float) for v in nums):
            values[target] = _round_to(
                sum(float(v) for v in nums if v is not None) / len(nums), layout.field(target)
            )
    else:
        target, source = check.fields
        src = values[source]
        assert check.constant is not None
        if isinstance(src, float) and src > 0:
            values[target] = _round_to(check.constant / src, layout.field(target))


def sample_values(
    layout: DeviceLayout, rng: np.random.Generator, mode: ValueMode = "realistic"
) -> dict[str, float | str | None]:
    """One exam's true values, keyed by field name; header values are strings in the device format."""
    values: dict[str, float | str | None] = {}
    values["patient_id"] = "P" + "".join(str(d) for d in rng.integers(0, 10, size=7))
    values["laterality"] = "OD" if rng.random() < 0.5 else "OS"
    day = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4300)))
    date_spec = layout.field("exam_date")
    assert date_spec.date_format is not None
    values["exam_date"] = day.strftime(date_spec.date_format)
    for spec in layout.fields:
        if spec.optional and rng.random() < 0.4:
            values[spec.name] = None
        else:
            values[spec.name] = _sample_number(spec, rng, mode)
    if mode == "realistic":
        # Reciprocal relations first: they derive K from radius, and ordering then sees final Ks.
        for check in sorted(layout.checks, key=lambda c: c.rule != "reciprocal"):
            _enforce(check, values, layout)
    return values


def format_values(layout: DeviceLayout, values: dict[str, float | str | None]) -> dict[str, str]:
    """The text each field shows on the device's screen."""
    return {spec.name: spec.format_value(values[spec.name]) for spec in layout.all_fields()}


def grammar_text(grammar: str, rng: np.random.Generator) -> str:
    """A text drawn uniformly from a grammar (a field's regex): each alternative, each repeat
    count and each character of a class equally likely. Unbounded repeats draw up to 4 more than
    their minimum."""
    return "".join(_draw(sre_parser.parse(grammar), rng))


_DIGITS = [str(d) for d in range(10)]


def _class_members(items: Any) -> list[str]:
    members: list[str] = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            members.append(chr(arg))
        elif op is sre_constants.RANGE:
            members.extend(chr(c) for c in range(arg[0], arg[1] + 1))
        elif op is sre_constants.CATEGORY and arg is sre_constants.CATEGORY_DIGIT:
            members.extend(_DIGITS)
        else:
            raise ValueError(f"grammar_text does not draw from character classes with {op}")
    return members


def _draw(pattern: Any, rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    for op, arg in pattern:
        if op is sre_constants.LITERAL:
            out.append(chr(arg))
        elif op is sre_constants.IN:
            members = _class_members(arg)
            out.append(members[int(rng.integers(0, len(members)))])
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            high = low + 4 if high == sre_constants.MAXREPEAT else high
            for _ in range(int(rng.integers(low, high + 1))):
                out.extend(_draw(sub, rng))
        elif op is sre_constants.BRANCH:
            alternatives = arg[1]
            out.extend(_draw(alternatives[int(rng.integers(0, len(alternatives)))], rng))
        elif op is sre_constants.SUBPATTERN:
            out.extend(_draw(arg[-1], rng))
        elif op is sre_constants.CATEGORY and arg is sre_constants.CATEGORY_DIGIT:
            out.append(_DIGITS[int(rng.integers(0, 10))])
        else:
            raise ValueError(f"grammar_text does not draw {op}")
    return out


def exam_values(
    layout: DeviceLayout, rng: np.random.Generator, mode: ValueMode = "realistic"
) -> tuple[dict[str, float | str | None], dict[str, str]]:
    """One exam's values and the text each field shows. In "grammar" mode the texts come from the
    fields' grammars (values: the numbers they spell, where they spell one)."""
    if mode != "grammar":
        values = sample_values(layout, rng, mode)
        return values, format_values(layout, values)
    texts = {spec.name: grammar_text(spec.grammar, rng) for spec in layout.all_fields()}
    drawn: dict[str, float | str | None] = {}
    for spec in layout.all_fields():
        text = texts[spec.name]
        if spec.kind != "number":
            drawn[spec.name] = text
        else:
            try:
                drawn[spec.name] = float(text)
            except ValueError:
                drawn[spec.name] = None  # the blank marker of an optional field
    return drawn, texts
