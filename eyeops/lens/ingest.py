"""From an accepted exam to the lens features: which Feast view, which eye, which values, when.

The OCR service calls a sink with every exam it stores; only accepted exams of a device kind that
feeds a feature view are pushed, so a value a person still has to review never reaches the model.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eyeops.exams import ExamRecord
from eyeops.lens.feature_views import VIEWS

log = logging.getLogger("eyeops.lens")


@dataclass(frozen=True)
class FeaturePush:
    view: str
    eye_id: str
    values: dict[str, Any]
    measured_at: dt.datetime


def view_for_device(device_kind: str) -> str | None:
    for view, (device, _) in VIEWS.items():
        if device == device_kind:
            return view
    return None


def feature_push_for(record: ExamRecord, now: dt.datetime | None = None) -> FeaturePush | None:
    """The push an exam makes, or None (not accepted, no view for its device, no identity)."""
    view = view_for_device(record.device_kind)
    if view is None or record.status != "accepted":
        return None
    patient, laterality = record.header.get("patient_id"), record.header.get("laterality")
    if not patient or laterality not in ("OD", "OS"):
        return None
    by_name = {f.name: f for f in record.fields}
    columns = VIEWS[view][1]
    values: dict[str, Any] = {}
    for column, kind in columns.items():
        reading = by_name.get(column)
        if reading is None or reading.value is None:
            return None
        values[column] = round(float(reading.value)) if kind == "int" else float(reading.value)
    exam_date = record.header.get("exam_date")
    measured = (
        dt.datetime.fromisoformat(exam_date).replace(tzinfo=dt.UTC)
        if exam_date
        else (now or dt.datetime.now(dt.UTC))
    )
    return FeaturePush(view, f"{patient}-{laterality}", values, measured)


class FeastExamSink:
    """Pushes accepted exams into a Feast store (online and offline log)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __call__(self, record: ExamRecord) -> FeaturePush | None:
        from eyeops.lens.feature_store import push_exam

        push = feature_push_for(record)
        if push is not None:
            push_exam(self.store, push.view, push.eye_id, push.values, push.measured_at)
            log.info("pushed %s features of exam %s to Feast", push.view, record.exam_id[:12])
        return push

    def many(self, records: Sequence[ExamRecord]) -> list[FeaturePush | None]:
        """Every exam's push, one Feast push and one offline append per view (in queue order)."""
        from eyeops.lens.feature_store import push_rows

        pushes = [feature_push_for(record) for record in records]
        by_view: dict[str, list[tuple[str, dict[str, Any], dt.datetime]]] = {}
        for push in pushes:
            if push is not None:
                by_view.setdefault(push.view, []).append((push.eye_id, push.values, push.measured_at))
        for view, rows in by_view.items():
            push_rows(self.store, view, rows)
        if by_view:
            log.info("pushed %s to Feast", ", ".join(f"{len(r)} {v}" for v, r in by_view.items()))
        return pushes
