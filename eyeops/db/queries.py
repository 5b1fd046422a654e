"""Read-only questions other layers ask of the results database, answered as plain rows: the
operations report's and page's aggregates and the monitor's OCR reference. With eyeops.db.store
(the OCR service's writes, the feature outbox's queue included) and eyeops.db.review (the
console's reads and writes), they are the only modules that name the schema's tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from eyeops.db.schema import Exam, FieldRow, InferenceLog, ReviewItem


def exams_received(engine: Engine, since: dt.datetime | None = None) -> list[tuple[dt.datetime, str, str]]:
    """`(received_at, device_kind, status)` of every exam received since `since` (all if None)."""
    query = select(Exam.received_at, Exam.device_kind, Exam.status)
    if since is not None:
        query = query.where(Exam.received_at >= since)
    with engine.connect() as conn:
        return [(received, str(kind), str(status)) for received, kind, status in conn.execute(query)]


def review_reasons(engine: Engine, since: dt.datetime | None = None) -> list[tuple[dt.datetime, str]]:
    """`(created_at, reason)` of the review items opened since `since` (all if None)."""
    query = select(ReviewItem.created_at, ReviewItem.reason)
    if since is not None:
        query = query.where(ReviewItem.created_at >= since)
    with engine.connect() as conn:
        return [(created, str(reason)) for created, reason in conn.execute(query)]


def inference_log(
    engine: Engine, stages: Sequence[str], since: dt.datetime | None = None
) -> list[tuple[Any, ...]]:
    """`(created_at, http_status, *stages)` of every logged request since `since` (all if None);
    `stages` name InferenceLog's timing columns."""
    query = select(
        InferenceLog.created_at, InferenceLog.http_status, *(getattr(InferenceLog, s) for s in stages)
    )
    if since is not None:
        query = query.where(InferenceLog.created_at >= since)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def field_outcomes(engine: Engine, limit: int) -> list[tuple[str, float | None, str]]:
    """`(device_kind, confidence, status)` of the newest `limit` fields read."""
    query = (
        select(Exam.device_kind, FieldRow.confidence, FieldRow.status)
        .join(FieldRow, FieldRow.exam_id == Exam.id)
        .order_by(Exam.received_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(str(k), c, str(s)) for k, c, s in conn.execute(query)]


def accepted_numbers(engine: Engine, limit: int) -> list[tuple[str, str, str, float]]:
    """`(exam_id, device_kind, field, value)` of the newest `limit` accepted numeric fields."""
    query = (
        select(Exam.id, Exam.device_kind, FieldRow.name, FieldRow.value_number)
        .join(FieldRow, FieldRow.exam_id == Exam.id)
        .where(FieldRow.status == "accepted", FieldRow.value_number.is_not(None))
        .order_by(Exam.received_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(str(e), str(k), str(n), float(v)) for e, k, n, v in conn.execute(query) if v is not None]
