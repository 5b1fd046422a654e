"""What a reviewer types is checked as the service checks what it reads: the field's grammar, range
and step (eyeops.fields.parse_field), then the layout's cross-field relations. Only a full, valid
set of values releases an exam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from eyeops.devices.layout import DeviceLayout
from eyeops.fields import FieldReading, apply_cross_checks, parse_field


@dataclass(frozen=True)
class Invalid:
    """One field a reviewer's values cannot release: which, and why (never the patient's value)."""

    field: str
    reason: str


def review_values(
    layout: DeviceLayout, typed: Mapping[str, str], confidences: Mapping[str, float] | None = None
) -> tuple[list[FieldReading], list[Invalid]]:
    """Readings (status `reviewed`) for every field of the layout from what the reviewer typed,
    and the problems that refuse them. A reviewer's value is checked by grammar, range, step and
    the cross-field relations; the recogniser's confidence no longer matters (it is kept, for the
    record, from `confidences`)."""
    confidences = confidences or {}
    readings: list[FieldReading] = []
    problems: list[Invalid] = []
    for spec in layout.all_fields():
        text = typed.get(spec.name)
        if text is None:
            problems.append(Invalid(spec.name, "missing: type the value shown in the crop"))
            readings.append(FieldReading(spec.name, "", None, spec.unit, 0.0, "review", "missing"))
            continue
        reading = parse_field(spec, text.strip(), confidences.get(spec.name, 0.0), threshold=0.0)
        if reading.status != "accepted":
            problems.append(Invalid(spec.name, _without_value(reading.reason)))
        readings.append(reading)
    for reading in apply_cross_checks(layout, readings):
        if reading.status == "review" and (reading.reason or "").startswith("cross_check"):
            problems.append(Invalid(reading.name, reading.reason or "cross_check"))
    reviewed = [replace(r, status="reviewed", reason=None) for r in readings]
    return reviewed, problems


def _without_value(reason: str | None) -> str:
    """A reason as the console shows it: the kind and the rule, not the value (which is on the
    reviewer's own screen and must not travel into logs)."""
    text = reason or "invalid"
    kind = text.split(":", 1)[0]
    hints = {
        "grammar": "does not match the field's format",
        "out_of_range": "outside the field's range",
        "off_step": "not on the field's step",
        "invalid_date": "not a date in the field's format",
    }
    return f"{kind}: {hints.get(kind, text)}"


def describe_problems(problems: Sequence[Invalid]) -> str:
    return "; ".join(f"{p.field}: {p.reason}" for p in problems)
