"""The stress renderer's values: the layout YAML files read directly (not through the project's loader),
and each field's text as the device shows it, drawn so that it passes the layout's ranges and its
cross-field checks (or left blank, for an optional field)."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

LAYOUT_DIR = Path(__file__).resolve().parents[2] / "eyeops" / "devices" / "layouts"
BLANK = "---"


@lru_cache(maxsize=1)
def load_stress_layouts() -> dict[str, dict[str, Any]]:
    """The layout YAML files as plain dicts, read directly (not through the project's loader)."""
    layouts = {}
    for path in sorted(LAYOUT_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        layouts[raw["kind"]] = raw
    if not layouts:
        raise FileNotFoundError(f"no layouts in {LAYOUT_DIR}")
    return layouts


def all_fields(layout: dict[str, Any]) -> list[dict[str, Any]]:
    return list(layout["header"]) + list(layout["fields"])


# ---------------------------------------------------------------------------------------------- values


def format_number(spec: dict[str, Any], value: float) -> str:
    decimals = int(spec.get("decimals", 0))
    q = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if q == 0:
        q = abs(q)
    return format(q, f"{'+' if spec.get('show_plus') else ''}.{decimals}f")


def _sample_number(spec: dict[str, Any], rng: np.random.Generator) -> float:
    lo, hi = (float(x) for x in spec["range"])
    mean, sd = spec.get("typical") or ((lo + hi) / 2, (hi - lo) / 6)
    v = float(rng.normal(mean, sd))
    for _ in range(30):  # a truncated normal; clip only when it keeps missing
        if lo <= v <= hi:
            break
        v = float(rng.normal(mean, sd))
    v = min(max(v, lo), hi)
    step = spec.get("step")
    if step:
        v = round(v / step) * step
        v = min(max(v, math.ceil(lo / step - 1e-9) * step), math.floor(hi / step + 1e-9) * step)
    return v


def _sample_regex(pattern: str, rng: np.random.Generator) -> str:
    """A string matching a simple pattern: alternation, literals, escapes, [classes], \\d, {n} / {n,m}."""
    alternatives = pattern.split("|") if "(" not in pattern else [pattern]
    pat = alternatives[int(rng.integers(len(alternatives)))]
    out: list[str] = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "\\":
            nxt = pat[i + 1]
            choices = "0123456789" if nxt == "d" else nxt
            i += 2
        elif c == "[":
            end = pat.index("]", i)
            body, choices = pat[i + 1 : end], ""
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    choices += "".join(chr(k) for k in range(ord(body[j]), ord(body[j + 2]) + 1))
                    j += 3
                else:
                    choices += body[j]
                    j += 1
            i = end + 1
        else:
            choices = c
            i += 1
        n = 1
        m = re.match(r"\{(\d+)(?:,(\d+))?\}", pat[i:])
        if m:
            lo_n = int(m.group(1))
            hi_n = int(m.group(2)) if m.group(2) else lo_n
            n = int(rng.integers(lo_n, hi_n + 1))
            i += m.end()
        out.extend(choices[int(rng.integers(len(choices)))] for _ in range(n))
    text = "".join(out)
    if not re.fullmatch(pattern, text):
        raise ValueError(f"cannot draw a value for pattern {pattern!r} (got {text!r})")
    return text


def _sample_date(spec: dict[str, Any], rng: np.random.Generator) -> str:
    start = dt.datetime(2012, 1, 1, 8, 0)
    span = (dt.datetime(2025, 12, 31) - start).days + 1
    day = start + dt.timedelta(days=int(rng.integers(0, span)), minutes=int(rng.integers(0, 600)))
    text = day.strftime(spec["date_format"])
    if spec.get("pattern") and not re.fullmatch(spec["pattern"], text):
        raise ValueError(f"date {text!r} does not match {spec['pattern']!r}")
    return text


def check_violations(layout: dict[str, Any], texts: dict[str, str]) -> list[str]:
    """What in a set of drawn texts breaks the layout's ranges or cross-field checks."""
    bad = []
    specs = {f["name"]: f for f in all_fields(layout)}
    for name, text in texts.items():
        spec = specs[name]
        if text == BLANK or spec.get("kind", "number") != "number":
            continue
        lo, hi = spec["range"]
        if not lo <= float(text) <= hi:
            bad.append(f"{name}={text} outside {lo}..{hi}")
    for check in layout.get("checks") or []:
        names = check["fields"]
        if any(texts.get(n, BLANK) == BLANK for n in names):
            continue
        vals = [float(texts[n]) for n in names]
        target_dec = int(specs[names[0]].get("decimals", 0))
        slack = float(check.get("tolerance") or 0.0) + 0.5 * 10**-target_dec + 1e-9
        if check["rule"] == "ordered" and vals[0] > vals[1]:
            bad.append(f"{names[0]} > {names[1]}")
        elif check["rule"] == "mean" and abs(vals[0] - sum(vals[1:]) / len(vals[1:])) > slack:
            bad.append(f"{names[0]} is not the mean of {names[1:]}")
        elif check["rule"] == "reciprocal" and abs(vals[0] - check["constant"] / vals[1]) > slack:
            bad.append(f"{names[0]} != {check['constant']} / {names[1]}")
    return bad


def sample_exam_values(layout: dict[str, Any], rng: np.random.Generator) -> dict[str, str | None]:
    """Every field's text as the device shows it; None for an optional field left blank on screen."""
    derived = {c["fields"][0]: c for c in layout.get("checks") or [] if c["rule"] in ("mean", "reciprocal")}
    in_checks = {n for c in layout.get("checks") or [] for n in c["fields"]}
    for _ in range(1000):
        texts: dict[str, str | None] = {}
        for spec in all_fields(layout):
            name, kind = spec["name"], spec.get("kind", "number")
            if spec.get("optional") and name not in in_checks and rng.random() < 0.12:
                texts[name] = BLANK if rng.random() < 0.5 else None
            elif kind == "date":
                texts[name] = _sample_date(spec, rng)
            elif kind == "text":
                texts[name] = _sample_regex(spec["pattern"], rng)
            elif name not in derived:
                texts[name] = format_number(spec, _sample_number(spec, rng))
        pending = dict(derived)
        while pending:
            progressed = False
            for name, check in list(pending.items()):
                sources = check["fields"][1:]
                if any(s not in texts or s in pending for s in sources):
                    continue
                vals = [float(texts[s]) for s in sources]  # type: ignore[arg-type]
                value = sum(vals) / len(vals) if check["rule"] == "mean" else check["constant"] / vals[0]
                specs = {f["name"]: f for f in all_fields(layout)}
                texts[name] = format_number(specs[name], value)
                del pending[name]
                progressed = True
            if not progressed:
                raise ValueError(f"{layout['kind']}: circular checks among {sorted(pending)}")
        drawn = {k: v for k, v in texts.items() if v is not None}
        if not check_violations(layout, drawn):
            return texts
    raise RuntimeError(f"{layout['kind']}: could not draw values that pass its checks")
