"""The foreign renderer's values: legal, plausible and consistent across fields. Header texts from the
layout's patterns and date format, numbers on their grid within range, and the layout's cross-field
relations (reciprocal, ordered, mean) made to hold."""

from __future__ import annotations

import datetime as dt
import re._parser as sre_parse

import numpy as np

from eyeops.devices.layout import BLANK_MARKER, DeviceLayout, FieldSpec


def _gen_from_parse(items: object, rng: np.random.Generator) -> str:
    out = []
    for op, arg in items:  # type: ignore[attr-defined]
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "IN":
            choices: list[str] = []
            for sub_op, sub_arg in arg:
                sub = str(sub_op)
                if sub == "LITERAL":
                    choices.append(chr(sub_arg))
                elif sub == "RANGE":
                    choices.extend(chr(c) for c in range(sub_arg[0], sub_arg[1] + 1))
                elif sub == "CATEGORY" and str(sub_arg) == "CATEGORY_DIGIT":
                    choices.extend("0123456789")
                else:
                    raise ValueError(f"pattern element {sub} not supported")
            out.append(choices[int(rng.integers(len(choices)))])
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            lo, hi, sub_items = arg
            hi = min(hi, lo + 3)
            for _ in range(int(rng.integers(lo, hi + 1))):
                out.append(_gen_from_parse(sub_items, rng))
        elif name == "BRANCH":
            _, branches = arg
            out.append(_gen_from_parse(branches[int(rng.integers(len(branches)))], rng))
        elif name == "SUBPATTERN":
            out.append(_gen_from_parse(arg[-1], rng))
        else:
            raise ValueError(f"pattern element {name} not supported")
    return "".join(out)


def text_from_pattern(pattern: str, rng: np.random.Generator) -> str:
    return _gen_from_parse(sre_parse.parse(pattern), rng)


def format_number(spec: FieldSpec, value: float) -> str:
    text = f"{value + 0.0:{'+' if spec.show_plus else ''}.{spec.decimals}f}"
    if text.lstrip("+-").strip("0.") == "":  # a zero never carries a minus
        text = ("+" if spec.show_plus else "") + text.lstrip("+-")
    return text


def _quantum(spec: FieldSpec) -> float:
    return spec.step if spec.step is not None else 10.0**-spec.decimals


def _snap(spec: FieldSpec, value: float) -> float:
    assert spec.range is not None
    lo, hi = spec.range
    q = _quantum(spec)
    v = round(value / q) * q
    while v > hi + 1e-9:
        v -= q
    while v < lo - 1e-9:
        v += q
    return round(v, spec.decimals)


def sample_number(spec: FieldSpec, rng: np.random.Generator) -> float:
    assert spec.range is not None
    lo, hi = spec.range
    mean, sd = spec.typical if spec.typical is not None else ((lo + hi) / 2, (hi - lo) / 6)
    return _snap(spec, float(np.clip(rng.normal(mean, sd), lo, hi)))


def sample_values(layout: DeviceLayout, rng: np.random.Generator) -> dict[str, str]:
    """One exam's field texts: header from the patterns and date format, numbers on their grid, and
    the layout's cross-field relations made to hold (reciprocal, ordered, mean)."""
    texts: dict[str, str] = {}
    numbers: dict[str, float] = {}
    for spec in layout.all_fields():
        if spec.kind == "date":
            assert spec.date_format is not None
            day = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
            texts[spec.name] = day.strftime(spec.date_format)
        elif spec.kind == "text":
            assert spec.pattern is not None
            texts[spec.name] = text_from_pattern(spec.pattern, rng)
        else:
            numbers[spec.name] = sample_number(spec, rng)
    checks = sorted(layout.checks, key=lambda c: ["reciprocal", "ordered", "mean"].index(c.rule))
    for check in checks:
        names = check.fields
        if check.rule == "reciprocal":
            target, source = (layout.field(n) for n in names)
            assert check.constant is not None and target.range is not None
            for _ in range(50):
                k = check.constant / numbers[source.name]
                if target.range[0] <= k <= target.range[1]:
                    break
                numbers[source.name] = sample_number(source, rng)
            numbers[target.name] = _snap(target, check.constant / numbers[source.name])
        elif check.rule == "ordered":
            low, high = names
            if numbers[high] < numbers[low]:
                numbers[low], numbers[high] = numbers[high], numbers[low]
                partner = {c.fields[0]: c.fields[1] for c in layout.checks if c.rule == "reciprocal"}
                if low in partner and high in partner:  # keep each K with its radius
                    a, b = partner[low], partner[high]
                    numbers[a], numbers[b] = numbers[b], numbers[a]
        else:
            target_name, *sources = names
            target = layout.field(target_name)
            numbers[target_name] = _snap(target, sum(numbers[s] for s in sources) / len(sources))
    for spec in layout.all_fields():
        if spec.name not in numbers:
            continue
        if spec.optional and rng.random() < 0.25:
            texts[spec.name] = BLANK_MARKER
            continue
        text = format_number(spec, numbers[spec.name])
        if "axis" in spec.name and spec.decimals == 0 and rng.random() < 0.2:
            text = text.zfill(3)  # some devices print axes with three digits
        texts[spec.name] = text
    return {spec.name: texts[spec.name] for spec in layout.all_fields()}
