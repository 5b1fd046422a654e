"""The results store: one transaction per exam, idempotent by image hash, database errors → 503."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from eyeops.db.schema import (
    Exam,
    ExamImage,
    FeaturePushRow,
    FieldRow,
    InferenceLog,
    LabelledCrop,
    ReviewItem,
    TrafficCrop,
)
from eyeops.errors import DatabaseUnavailable
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading, Status

log = logging.getLogger("eyeops.db")
RETRY_AFTER_S = 5


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema with Alembic."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    try:
        command.upgrade(config, "head")
    except (OperationalError, SAInterfaceError) as exc:
        raise DatabaseUnavailable(
            f"database unreachable during migration: {exc.orig}", retry_after_s=RETRY_AFTER_S
        ) from exc


def field_row(position: int, reading: FieldReading, **columns: object) -> FieldRow:
    """The row of one field reading (the one mapping of FieldReading to the `fields` table);
    `columns` set others (exam_id) or override."""
    number = reading.value if isinstance(reading.value, float) else None
    text = reading.value if isinstance(reading.value, str) else None
    values: dict[str, object] = {
        "position": position,
        "name": reading.name,
        "raw_text": reading.raw_text[:128],
        "value_number": number,
        "value_text": text,
        "unit": reading.unit,
        "confidence": reading.confidence,
        "status": reading.status,
        "reason": reading.reason,
        "second_text": None if reading.second_text is None else reading.second_text[:128],
        "second_confidence": reading.second_confidence,
        "proposal": None if reading.proposal is None else reading.proposal[:128],
    }
    values.update(columns)
    return FieldRow(**values)


def _record(exam: Exam) -> ExamRecord:
    return ExamRecord(
        exam_id=exam.id,
        device_kind=exam.device_kind,
        status=exam.status,
        fields=[_from_row(r) for r in exam.fields],
        device_id=exam.device_id,
        error=exam.error,
        model_name=exam.model_name,
        model_version=exam.model_version,
        request_id=exam.request_id,
        image_bytes=exam.image_bytes,
        header={
            "patient_id": exam.patient_id,
            "laterality": exam.laterality,
            "exam_date": exam.exam_date,
        },
    )


def _from_row(row: FieldRow) -> FieldReading:
    value: float | str | None = row.value_number if row.value_number is not None else row.value_text
    status: Status = row.status if row.status in ("accepted", "reviewed") else "review"  # type: ignore[assignment]
    return FieldReading(
        row.name,
        row.raw_text,
        value,
        row.unit,
        row.confidence,
        status,
        row.reason,
        row.second_text,
        row.second_confidence,
        row.proposal,
    )


class ResultsStore:
    """All reads and writes of OCR results. Construct with an Engine (tests pass their own)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> ResultsStore:
        connect_args = {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        # hide_parameters: a failed statement's message (logged, or raised to the edge) never holds a
        # patient's values.
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)
        if url.startswith("sqlite"):
            from sqlalchemy import event

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; an unreachable database is DatabaseUnavailable (503, Retry-After)."""
        try:
            with self._sessions.begin() as session:
                yield session
        except (OperationalError, SAInterfaceError) as exc:
            # The driver's words name the host, port and user: for the server's log, not for the
            # caller (a device, an unauthenticated readiness probe).
            log.warning("results database unavailable: %s", exc.orig)
            raise DatabaseUnavailable(
                "results database unavailable; retry later", retry_after_s=RETRY_AFTER_S
            ) from exc

    def ping(self) -> None:
        with self.session() as s:
            s.execute(select(1))

    def get_exam(self, exam_id: str) -> ExamRecord | None:
        with self.session() as s:
            exam = s.get(Exam, exam_id)
            return None if exam is None else _record(exam)

    def get_exams(self, exam_ids: Sequence[str]) -> dict[str, ExamRecord]:
        """The stored exams among `exam_ids`, by id, read in one transaction."""
        if not exam_ids:
            return {}
        with self.session() as s:
            rows = s.scalars(
                select(Exam).where(Exam.id.in_(list(exam_ids))).options(selectinload(Exam.fields))
            )
            return {exam.id: _record(exam) for exam in rows}

    def save_exam(
        self,
        record: ExamRecord,
        log: Mapping[str, object],
        push_features: bool = False,
        image: bytes | None = None,
    ) -> bool:
        """Write exam, fields, review items and the log row in one transaction; with
        `push_features`, an accepted exam's feature push is queued in the same transaction (so an
        exam is never stored without its push, nor pushed without being stored). `image`: kept with
        an exam a person has to look at (review or failed), for the review console; an accepted
        exam's image is not kept.

        Returns False (and writes only the log row) when the exam already exists: a concurrent
        re-send of the same image lost the race, which is not an error.
        """
        try:
            with self.session() as s:
                s.add(
                    Exam(
                        id=record.exam_id,
                        device_kind=record.device_kind,
                        device_id=record.device_id,
                        patient_id=record.header.get("patient_id"),
                        laterality=record.header.get("laterality"),
                        exam_date=record.header.get("exam_date"),
                        status=record.status,
                        error=record.error,
                        image_bytes=record.image_bytes,
                        model_name=record.model_name,
                        model_version=record.model_version,
                        request_id=record.request_id,
                        fields=[field_row(i, f) for i, f in enumerate(record.fields)],
                    )
                )
                if record.status == "failed":
                    s.add(
                        ReviewItem(exam_id=record.exam_id, field_name=None, reason=record.error or "failed")
                    )
                for reading in record.fields:
                    if reading.status == "review":
                        s.add(
                            ReviewItem(
                                exam_id=record.exam_id,
                                field_name=reading.name,
                                reason=reading.reason or "review",
                            )
                        )
                if image is not None and record.status != "accepted":
                    s.add(ExamImage(exam_id=record.exam_id, data=image))
                if record.status == "accepted":
                    s.add_all(_traffic_rows(record))
                s.add(InferenceLog(exam_id=record.exam_id, outcome="stored", **log))
                if push_features and record.status == "accepted":
                    s.add(FeaturePushRow(exam_id=record.exam_id, attempts=0))
        except IntegrityError:
            self.log_request(exam_id=record.exam_id, outcome="duplicate", **log)
            return False
        return True

    # -- learning from traffic (eyeops.ocr.traffic decides; `eyeops ocr harvest` asks) -------------
    def traffic_crops(self, since: dt.datetime) -> list[dict[str, object]]:
        """Candidate pseudo-labels kept since `since`, oldest first, with their exam's device."""
        with self.session() as s:
            rows = s.execute(
                select(TrafficCrop, Exam.device_id, Exam.device_kind, Exam.status, Exam.model_version)
                .join(Exam, Exam.id == TrafficCrop.exam_id)
                .where(TrafficCrop.created_at >= since)
                .order_by(TrafficCrop.id)
            )
            return [
                {
                    "exam_id": c.exam_id,
                    "device_id": device or "",
                    "device_kind": kind,
                    "field": c.field_name,
                    "grammar": c.grammar,
                    "crop": c.crop,
                    "text": c.text,
                    "confidence": c.confidence,
                    "second_text": c.second_text,
                    "second_confidence": c.second_confidence,
                    "exam_status": status,
                    "models": f"trocr {version or '?'} + second reader",
                }
                for c, device, kind, status, version in rows
            ]

    def labelled_fields(self) -> list[dict[str, object]]:
        """Every field a person confirmed or corrected (labelled_crops), oldest first, with its device."""
        with self.session() as s:
            rows = s.execute(
                select(LabelledCrop, Exam.device_id)
                .join(Exam, Exam.id == LabelledCrop.exam_id)
                .order_by(LabelledCrop.id)
            )
            return [
                {
                    "exam_id": c.exam_id,
                    "device_id": device or "",
                    "device_kind": c.device_kind,
                    "field": c.field_name,
                    "grammar": c.grammar,
                    "crop": c.crop,
                    "text": c.text,
                }
                for c, device in rows
            ]

    def device_exams(
        self, start: dt.datetime | None, end: dt.datetime
    ) -> dict[str, tuple[int, int, frozenset[str]]]:
        """Per device id: (exams received in [start, end), of them accepted with no person, kinds sent)."""
        with self.session() as s:
            query = select(Exam.device_id, Exam.device_kind, Exam.status, Exam.reviewed_by).where(
                Exam.received_at < end
            )
            if start is not None:
                query = query.where(Exam.received_at >= start)
            exams: dict[str, int] = {}
            accepted: dict[str, int] = {}
            kinds: dict[str, set[str]] = {}
            for device, kind, status, reviewed_by in s.execute(query):
                key = device or ""
                exams[key] = exams.get(key, 0) + 1
                accepted[key] = accepted.get(key, 0) + int(status == "accepted" and reviewed_by is None)
                kinds.setdefault(key, set()).add(kind)
            return {d: (n, accepted[d], frozenset(kinds[d])) for d, n in exams.items()}

    def purge_traffic_crops(self, before: dt.datetime) -> int:
        """Delete the kept crops older than `before` (the retention); how many went."""
        with self.session() as s:
            doomed = s.scalars(select(TrafficCrop).where(TrafficCrop.created_at < before)).all()
            for row in doomed:
                s.delete(row)
            return len(doomed)

    def log_request(self, **values: object) -> None:
        with self.session() as s:
            s.add(InferenceLog(**values))

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            return {
                "exams": int(s.scalar(select(func.count()).select_from(Exam)) or 0),
                "fields": int(s.scalar(select(func.count()).select_from(FieldRow)) or 0),
                "review_items": int(s.scalar(select(func.count()).select_from(ReviewItem)) or 0),
                "log_rows": int(s.scalar(select(func.count()).select_from(InferenceLog)) or 0),
            }

    def open_reviews(self, limit: int = 100) -> list[tuple[str, str | None, str]]:
        with self.session() as s:
            rows = s.execute(
                select(ReviewItem.exam_id, ReviewItem.field_name, ReviewItem.reason)
                .where(ReviewItem.resolved_at.is_(None))
                .limit(limit)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    # -- the feature outbox: one serialized writer drains it (eyeops.features.outbox) -------------
    def due_feature_pushes(self, now: dt.datetime, limit: int = 100) -> list[tuple[int, str, int]]:
        """(id, exam_id, attempts) of queued pushes due at `now`, oldest first."""
        with self.session() as s:
            rows = s.execute(
                select(FeaturePushRow.id, FeaturePushRow.exam_id, FeaturePushRow.attempts)
                .where(FeaturePushRow.pushed_at.is_(None))
                .where(FeaturePushRow.next_attempt_at.is_(None) | (FeaturePushRow.next_attempt_at <= now))
                .order_by(FeaturePushRow.id)
                .limit(limit)
            )
            return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def feature_pushes_done(self, push_ids: Sequence[int], now: dt.datetime) -> None:
        """Mark pushes made, in one transaction."""
        if not push_ids:
            return
        with self.session() as s:
            s.execute(
                update(FeaturePushRow)
                .where(FeaturePushRow.id.in_(list(push_ids)))
                .values(pushed_at=now, attempts=FeaturePushRow.attempts + 1, last_error=None)
            )

    def feature_push_failed(self, push_id: int, error: str, retry_at: dt.datetime) -> None:
        with self.session() as s:
            row = s.get(FeaturePushRow, push_id)
            if row is not None:
                row.attempts += 1
                row.last_error = error[:500]
                row.next_attempt_at = retry_at

    def feature_push_counts(self) -> dict[str, int]:
        """Queued (not yet pushed) and pushed feature pushes."""
        with self.session() as s:
            queued = s.scalar(
                select(func.count()).select_from(FeaturePushRow).where(FeaturePushRow.pushed_at.is_(None))
            )
            pushed = s.scalar(
                select(func.count()).select_from(FeaturePushRow).where(FeaturePushRow.pushed_at.is_not(None))
            )
            return {"queued": int(queued or 0), "pushed": int(pushed or 0)}


def _traffic_rows(record: ExamRecord) -> list[TrafficCrop]:
    """The accepted exam's kept crops, each with both readings: only fields read alike by both."""
    readings = {r.name: r for r in record.fields}
    rows = []
    for name, (grammar, crop) in record.learning_crops.items():
        r = readings.get(name)
        if r is None or r.second_text is None or r.second_confidence is None:
            continue
        if r.second_text.strip() != r.raw_text.strip():
            continue
        rows.append(
            TrafficCrop(
                exam_id=record.exam_id,
                field_name=name,
                grammar=grammar,
                text=r.raw_text.strip()[:128],
                confidence=r.confidence,
                second_text=r.second_text.strip()[:128],
                second_confidence=r.second_confidence,
                crop=crop,
            )
        )
    return rows
