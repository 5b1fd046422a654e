"""From an accepted exam to the lens features: which Feast view, which eye, which values, when.

The OCR service's outbox writer (`eyeops.features.outbox`) hands every stored exam to an
`ExamFeatureSink`; only accepted exams of a device kind that feeds a feature view are pushed, so a
value a person still has to review never reaches the model.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eyeops.exams import ExamRecord
from eyeops.features.online import OnlineStore, Row
from eyeops.features.views import VIEWS

log = logging.getLogger("eyeops.features")


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


class ExamFeatureSink:
    """Pushes accepted exams into an online store (and its offline log)."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store

    def __call__(self, record: ExamRecord) -> FeaturePush | None:
        push = feature_push_for(record)
        if push is not None:
            self.store.push(push.view, [(push.eye_id, push.values, push.measured_at)])
            log.info("pushed %s features of exam %s", push.view, record.exam_id[:12])
        return push

    def many(self, records: Sequence[ExamRecord]) -> list[FeaturePush | None]:
        """Every exam's push, one push per view (in queue order)."""
        pushes = [feature_push_for(record) for record in records]
        by_view: dict[str, list[Row]] = {}
        for push in pushes:
            if push is not None:
                by_view.setdefault(push.view, []).append((push.eye_id, push.values, push.measured_at))
        for view, rows in by_view.items():
            self.store.push(view, rows)
        if by_view:
            log.info("pushed %s", ", ".join(f"{len(r)} {v}" for v, r in by_view.items()))
        return pushes
