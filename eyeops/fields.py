"""Turn recognised text into validated field readings: grammar, range, step, confidence, cross-checks."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from eyeops.devices.layout import BLANK_MARKER, CrossCheck, DeviceLayout, FieldSpec

# accepted: read and validated by the service; review: waits for a person; reviewed: a person
# confirmed or corrected it in the console (eyeops.review)
Status = Literal["accepted", "review", "reviewed"]


@dataclass(frozen=True)
class FieldReading:
    """What the service says about one field: the contract of the OCR response and database rows."""

    name: str
    raw_text: str
    value: float | str | None
    unit: str | None
    confidence: float
    status: Status
    reason: str | None = None
    # The second recogniser's reading where it was asked (eyeops.ocr.arbitrate), and, for a field in
    # review, the better-validated of the two readings: what the console offers a reviewer to confirm.
    second_text: str | None = None
    second_confidence: float | None = None
    proposal: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "raw_text": self.raw_text,
            "value": self.value,
            "unit": self.unit,
            "confidence": round(self.confidence, 4),
            "status": self.status,
            "reason": self.reason,
            "second_text": self.second_text,
            "second_confidence": (
                None if self.second_confidence is None else round(self.second_confidence, 4)
            ),
            "proposal": self.proposal,
        }


def _on_step(value: float, step: float) -> bool:
    ratio = value / step
    return math.isclose(ratio, round(ratio), abs_tol=1e-6)


def parse_field(spec: FieldSpec, raw_text: str, confidence: float, threshold: float) -> FieldReading:
    """Parse one field's text. Anything doubtful goes to review with the first reason found.

    The order of reasons is fixed: grammar, then range and step, then confidence, so the reason a
    reviewer sees is the most specific one.
    """
    text = raw_text.strip()

    def review(reason: str, value: float | str | None = None) -> FieldReading:
        return FieldReading(spec.name, raw_text, value, spec.unit, confidence, "review", reason)

    if re.fullmatch(spec.grammar, text) is None:
        return review(f"grammar: {text!r} does not match {spec.grammar}")
    value: float | str | None
    if spec.optional and text == BLANK_MARKER:
        value = None
    elif spec.kind == "number":
        value = float(text)
        assert spec.range is not None
        lo, hi = spec.range
        if not lo <= value <= hi:
            return review(f"out_of_range: {value} not in [{lo}, {hi}] {spec.unit or ''}".strip(), value)
        if spec.step is not None and not _on_step(value, spec.step):
            return review(f"off_step: {value} is not a multiple of {spec.step}", value)
    elif spec.kind == "date":
        assert spec.date_format is not None
        try:
            value = dt.datetime.strptime(text, spec.date_format).date().isoformat()
        except ValueError:
            return review(f"invalid_date: {text!r} is not a date in {spec.date_format}")
    else:
        value = text
    if confidence < threshold:
        return review(f"low_confidence: {below(confidence, threshold)} < {threshold}", value)
    return FieldReading(spec.name, raw_text, value, spec.unit, confidence, "accepted", None)


def below(confidence: float, threshold: float) -> str:
    """`confidence` with three decimals, or as many more as it takes to read below `threshold`
    (0.9695 against 0.97 is "0.9695", never "0.970 < 0.97")."""
    for decimals in range(3, 10):
        text = f"{confidence:.{decimals}f}"
        if float(text) < threshold:
            return text
    return repr(confidence)


def check_holds(check: CrossCheck, values: Mapping[str, float], layout: DeviceLayout) -> bool:
    """Whether a cross-field relation holds for the given numeric values.

    A reciprocal relation (K = 337.5 / r) is judged within what the display's rounding allows: the
    device divides by the radius it measured, then shows both rounded, so the pair can disagree by
    half a unit of the target plus how far constant / source moves over half a unit of the source.
    The check's own `tolerance` is extra slack on top. A misread digit beyond that goes to review."""
    if check.rule == "ordered":
        low, high = (values[n] for n in check.fields)
        return high >= low - check.tolerance
    if check.rule == "mean":
        target, *sources = (values[n] for n in check.fields)
        return abs(target - sum(sources) / len(sources)) <= check.tolerance + 1e-9
    assert check.constant is not None
    target, source = (values[n] for n in check.fields)
    half_target, half_source = (0.5 * 10.0 ** -layout.field(n).decimals for n in check.fields)
    if source - half_source <= 0:
        return False
    rounding = half_target + check.constant * half_source / (source * (source - half_source))
    return abs(target - check.constant / source) <= rounding + check.tolerance + 1e-9


def apply_cross_checks(layout: DeviceLayout, readings: Sequence[FieldReading]) -> list[FieldReading]:
    """Send every field of a failing relation to review; fields already in review keep their reason.

    A relation is checked only when all its fields parsed to numbers: a relation cannot be judged
    from a field that was unreadable, and that field is in review already.
    """
    by_name = {r.name: r for r in readings}
    out = dict(by_name)
    for check in layout.checks:
        members = [by_name.get(n) for n in check.fields]
        if any(m is None or not isinstance(m.value, float) for m in members):
            continue
        values = {m.name: float(m.value) for m in members if m is not None and m.value is not None}
        if check_holds(check, values, layout):
            continue
        for name in check.fields:
            current = out[name]
            if current.status == "accepted":
                out[name] = replace(current, status="review", reason=f"cross_check: {check.describe()}")
    return [out[r.name] for r in readings]


def read_fields(
    layout: DeviceLayout,
    texts: Mapping[str, tuple[str, float]],
    threshold: float,
) -> list[FieldReading]:
    """Validate every field of a layout from {name: (text, confidence)}; a missing field is review."""
    readings: list[FieldReading] = []
    for spec in layout.all_fields():
        if spec.name not in texts:
            readings.append(
                FieldReading(spec.name, "", None, spec.unit, 0.0, "review", "missing: not recognised")
            )
            continue
        text, confidence = texts[spec.name]
        readings.append(parse_field(spec, text, confidence, threshold))
    return apply_cross_checks(layout, readings)
