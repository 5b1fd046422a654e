"""The review console's reads and writes of the results database, apart from any web framework.

One transaction per decision: a release updates the fields (value, status `reviewed`), writes an
audit row per field (who, when, old and new value), resolves the exam's review items, queues the
Feast push of the released exam in the same feature outbox the OCR service fills for accepted
exams, and adds every confirmed or corrected field, with its crop, to the labelled crop set.
Optimistic concurrency: a decision names the exam version it was made on; if another reviewer
saved first, it is refused with who and when (`Conflict`), and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from eyeops.db.review_types import (
    DISAGREEMENT,
    HEADER_FIELDS,
    SECOND_LOOK,
    AuditEntry,
    Backlog,
    Conflict,
    ExamForReview,
    Label,
    NotReviewable,
    QueueEntry,
    aware,
    reason_kind,
    text_of,
    utc_now,
)
from eyeops.db.schema import (
    Exam,
    ExamImage,
    FeaturePushRow,
    FieldRow,
    LabelledCrop,
    ReviewAudit,
    ReviewItem,
)
from eyeops.db.store import ResultsStore, field_row
from eyeops.fields import FieldReading


class ReviewStore:
    """Construct with the results database's Engine (the one ResultsStore uses)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.results = ResultsStore(engine)

    # -- reads ---------------------------------------------------------------------------------------
    def queue(
        self,
        device_kind: str | None = None,
        reason: str | None = None,
        older_than: dt.timedelta | None = None,
        limit: int = 200,
        now: dt.datetime | None = None,
    ) -> list[QueueEntry]:
        """Exams with open review items, the longest waiting first."""
        with self.results.session() as s:
            query = (
                select(
                    ReviewItem.exam_id,
                    Exam.device_kind,
                    Exam.status,
                    func.min(ReviewItem.created_at),
                    func.count(),
                )
                .join(Exam, Exam.id == ReviewItem.exam_id)
                .where(ReviewItem.resolved_at.is_(None))
                .group_by(ReviewItem.exam_id, Exam.device_kind, Exam.status)
                .order_by(func.min(ReviewItem.created_at), ReviewItem.exam_id)
            )
            if device_kind:
                query = query.where(Exam.device_kind == device_kind)
            if older_than is not None:
                cutoff = (now or utc_now()) - older_than
                query = query.having(func.min(ReviewItem.created_at) <= cutoff)
            rows = list(s.execute(query))
            reasons: dict[str, set[str]] = {}
            ids = [r[0] for r in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for exam_id, text in s.execute(
                    select(ReviewItem.exam_id, ReviewItem.reason)
                    .where(ReviewItem.resolved_at.is_(None))
                    .where(ReviewItem.exam_id.in_(chunk))
                ):
                    reasons.setdefault(exam_id, set()).add(reason_kind(text))
        out = [
            QueueEntry(r[0], r[1], r[2], tuple(sorted(reasons.get(r[0], ()))), int(r[4]), aware(r[3]))
            for r in rows
        ]
        if reason:
            out = [e for e in out if reason in e.reasons]
        return out[:limit]

    def exam(self, exam_id: str) -> ExamForReview | None:
        record = self.results.get_exam(exam_id)
        if record is None:
            return None
        with self.results.session() as s:
            row = s.get(Exam, exam_id)
            assert row is not None
            image = s.get(ExamImage, exam_id)
            items = s.execute(
                select(ReviewItem.field_name, ReviewItem.reason)
                .where(ReviewItem.exam_id == exam_id)
                .where(ReviewItem.resolved_at.is_(None))
                .order_by(ReviewItem.id)
            )
            audit = s.execute(
                select(ReviewAudit).where(ReviewAudit.exam_id == exam_id).order_by(ReviewAudit.id)
            ).scalars()
            return ExamForReview(
                record=record,
                version=row.version,
                received_at=aware(row.received_at),
                image=image.data if image is not None else None,
                open_items=tuple((i[0], i[1]) for i in items),
                audit=tuple(
                    AuditEntry(a.field_name, a.action, a.old_value, a.new_value, a.user, aware(a.at))
                    for a in audit
                ),
                reviewed_by=row.reviewed_by,
                corners=json.loads(row.corners) if row.corners else None,
            )

    def backlog(self) -> list[Backlog]:
        """Open exams and the oldest waiting item, per device kind."""
        with self.results.session() as s:
            rows = s.execute(
                select(
                    Exam.device_kind,
                    func.count(func.distinct(ReviewItem.exam_id)),
                    func.min(ReviewItem.created_at),
                )
                .join(Exam, Exam.id == ReviewItem.exam_id)
                .where(ReviewItem.resolved_at.is_(None))
                .group_by(Exam.device_kind)
            )
            return [Backlog(r[0], int(r[1]), aware(r[2])) for r in rows]

    def corrections(self) -> list[tuple[str, str, str, int]]:
        """(device kind, field, confirm|correct, count) over every labelled field."""
        with self.results.session() as s:
            rows = s.execute(
                select(
                    LabelledCrop.device_kind, LabelledCrop.field_name, LabelledCrop.corrected, func.count()
                ).group_by(LabelledCrop.device_kind, LabelledCrop.field_name, LabelledCrop.corrected)
            )
            return [(r[0], r[1], "correct" if r[2] else "confirm", int(r[3])) for r in rows]

    def labelled_crops(self, up_to: int | None = None) -> list[LabelledCrop]:
        with self.results.session() as s:
            query = select(LabelledCrop).order_by(LabelledCrop.id)
            if up_to is not None:
                query = query.where(LabelledCrop.id <= up_to)
            return list(s.execute(query).scalars())

    # -- writes --------------------------------------------------------------------------------------
    def _claim(self, s: Session, exam_id: str, version: int, user: str, now: dt.datetime) -> Exam:
        """Move the exam to version + 1 if it is still at `version`; else refuse with who saved."""
        done = s.execute(
            update(Exam)
            .where(Exam.id == exam_id)
            .where(Exam.version == version)
            .values(version=version + 1, reviewed_by=user, reviewed_at=now)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            row = s.get(Exam, exam_id)
            if row is None:
                raise NotReviewable("no exam with this id; go back to the queue")
            when = row.reviewed_at.isoformat(timespec="seconds") if row.reviewed_at else "earlier"
            raise Conflict(
                f"{row.reviewed_by or 'another reviewer'} saved this exam first ({when}); reload it to"
                " see their decision before you change anything"
            )
        row = s.get(Exam, exam_id, populate_existing=True)
        assert row is not None
        return row

    def _resolve_items(self, s: Session, exam_id: str, resolution: str, now: dt.datetime) -> int:
        done = s.execute(
            update(ReviewItem)
            .where(ReviewItem.exam_id == exam_id)
            .where(ReviewItem.resolved_at.is_(None))
            .values(resolved_at=now, resolution=resolution)
        )
        return int(done.rowcount)  # type: ignore[attr-defined]

    def release(
        self,
        exam_id: str,
        version: int,
        user: str,
        readings: Sequence[FieldReading],
        labels: Sequence[Label],
        push_features: bool = True,
        now: dt.datetime | None = None,
        second_look: bool = False,
    ) -> None:
        """Release an exam with the reviewer's validated readings (eyeops.review.validate); with
        `second_look`, another reviewer is asked to check it blind (eyeops.review: reviewer agreement)."""
        now = now or utc_now()
        with self.results.session() as s:
            exam = self._claim(s, exam_id, version, user, now)
            if exam.status not in ("review", "failed"):
                raise NotReviewable(f"this exam is {exam.status}, not waiting for review")
            rows = {r.name: r for r in exam.fields}
            for position, reading in enumerate(readings):
                row = rows.get(reading.name)
                old = None
                if row is None:  # an exam that failed alignment and was read from marked corners
                    row = FieldRow(
                        exam_id=exam_id,
                        position=position,
                        name=reading.name,
                        raw_text="",
                        confidence=0.0,
                        status="review",
                    )
                    s.add(row)
                else:
                    old = text_of(row.value_number if row.value_number is not None else row.value_text)
                new = text_of(reading.value)
                action = "confirm" if old == new else "correct"
                row.value_number = reading.value if isinstance(reading.value, float) else None
                row.value_text = reading.value if isinstance(reading.value, str) else None
                row.unit = reading.unit
                row.status = "reviewed"
                row.reason = None
                s.add(
                    ReviewAudit(
                        exam_id=exam_id,
                        field_name=reading.name,
                        action=action,
                        old_value=old,
                        new_value=new,
                        user=user,
                        at=now,
                    )
                )
            header = {r.name: text_of(r.value) for r in readings if r.name in HEADER_FIELDS}
            exam.patient_id = header.get("patient_id", exam.patient_id)
            exam.laterality = header.get("laterality", exam.laterality)
            exam.exam_date = header.get("exam_date", exam.exam_date)
            exam.status = "accepted"
            exam.error = None
            self._resolve_items(s, exam_id, f"released by {user}", now)
            s.add(ReviewAudit(exam_id=exam_id, action="release", user=user, at=now))
            # A later decision on the same exam (after a disagreement) supersedes the earlier labels.
            s.execute(delete(LabelledCrop).where(LabelledCrop.exam_id == exam_id))
            for label in labels:
                crop = np.ascontiguousarray(label.crop, dtype=np.uint8)
                s.add(
                    LabelledCrop(
                        exam_id=exam_id,
                        device_kind=exam.device_kind,
                        field_name=label.field_name,
                        grammar=label.grammar,
                        text=label.text,
                        corrected=int(label.corrected),
                        crop=crop.tobytes(),
                        labelled_by=user,
                        created_at=now,
                    )
                )
            if push_features:
                s.add(FeaturePushRow(exam_id=exam_id, attempts=0))
            if second_look:
                s.add(
                    ReviewItem(
                        exam_id=exam_id,
                        field_name=None,
                        reason=f"{SECOND_LOOK}: another reviewer checks this release blind",
                        created_at=now,
                    )
                )

    def second_look(
        self,
        exam_id: str,
        version: int,
        user: str,
        readings: Sequence[FieldReading],
        now: dt.datetime | None = None,
    ) -> list[str]:
        """A second reviewer's values for a sampled release, typed without seeing the first's: each
        field is recorded as agree or disagree (reviewer agreement). Fields that disagree go back to
        review for a third decision; the exam waits again. Returns the fields that disagree."""
        now = now or utc_now()
        with self.results.session() as s:
            first = s.scalar(
                select(ReviewAudit.user)
                .where(ReviewAudit.exam_id == exam_id)
                .where(ReviewAudit.action == "release")
                .order_by(ReviewAudit.id.desc())
                .limit(1)
            )
            if first == user:
                raise NotReviewable(f"{user} released this exam: a second look needs another reviewer")
            exam = self._claim(s, exam_id, version, user, now)
            item = s.scalar(
                select(ReviewItem)
                .where(ReviewItem.exam_id == exam_id)
                .where(ReviewItem.resolved_at.is_(None))
                .where(ReviewItem.reason.startswith(SECOND_LOOK))
            )
            if item is None:
                raise NotReviewable("this exam is not waiting for a second look")
            item.resolved_at, item.resolution = now, f"second look by {user}"
            rows = {r.name: r for r in exam.fields}
            differ = []
            for reading in readings:
                row = rows[reading.name]
                current = text_of(row.value_number if row.value_number is not None else row.value_text)
                agrees = current == text_of(reading.value)
                s.add(
                    ReviewAudit(
                        exam_id=exam_id,
                        field_name=reading.name,
                        action="agree" if agrees else "disagree",
                        old_value=current,
                        new_value=text_of(reading.value),
                        user=user,
                        at=now,
                    )
                )
                if not agrees:
                    differ.append(reading.name)
                    row.status = "review"
                    row.reason = f"{DISAGREEMENT}: two reviewers read this field differently"
                    s.add(
                        ReviewItem(
                            exam_id=exam_id, field_name=reading.name, reason=row.reason, created_at=now
                        )
                    )
            if differ:
                exam.status = "review"  # a third reviewer decides; the release pushes the final values
            return differ

    def second_looks(self) -> list[tuple[str, str, str, int]]:
        """(device kind, field, agree|disagree, count) over every second look."""
        with self.results.session() as s:
            rows = s.execute(
                select(Exam.device_kind, ReviewAudit.field_name, ReviewAudit.action, func.count())
                .join(Exam, Exam.id == ReviewAudit.exam_id)
                .where(ReviewAudit.action.in_(("agree", "disagree")))
                .group_by(Exam.device_kind, ReviewAudit.field_name, ReviewAudit.action)
            )
            return [(r[0], str(r[1]), r[2], int(r[3])) for r in rows]

    def reject(
        self, exam_id: str, version: int, user: str, reason: str, now: dt.datetime | None = None
    ) -> None:
        """The exam cannot be used (wrong device, unreadable, not this patient): it leaves the queue
        and never reaches Feast."""
        now = now or utc_now()
        with self.results.session() as s:
            exam = self._claim(s, exam_id, version, user, now)
            if exam.status not in ("review", "failed"):
                raise NotReviewable(f"this exam is {exam.status}, not waiting for review")
            exam.status = "rejected"
            self._resolve_items(s, exam_id, f"rejected by {user}", now)
            s.add(ReviewAudit(exam_id=exam_id, action="reject", new_value=reason, user=user, at=now))

    def reread(
        self,
        exam_id: str,
        version: int,
        user: str,
        corners: Sequence[Sequence[float]],
        readings: Sequence[FieldReading],
        now: dt.datetime | None = None,
    ) -> None:
        """An exam that failed alignment, read again from the four screen corners a reviewer marked:
        its fields are stored as read (each still waits for the reviewer's release)."""
        now = now or utc_now()
        with self.results.session() as s:
            exam = self._claim(s, exam_id, version, user, now)
            if exam.status != "failed":
                raise NotReviewable(f"this exam is {exam.status}; corners are marked only on failed exams")
            for row in list(exam.fields):
                s.delete(row)
            s.flush()
            for position, reading in enumerate(readings):
                s.add(
                    field_row(
                        position,
                        reading,
                        exam_id=exam_id,
                        status="review",
                        reason=reading.reason or "marked_corners: a person marked the screen",
                    )
                )
            exam.corners = json.dumps([[round(float(x), 1), round(float(y), 1)] for x, y in corners])
            exam.status = "review"
            waiting_since = s.scalar(
                select(func.min(ReviewItem.created_at))
                .where(ReviewItem.exam_id == exam_id)
                .where(ReviewItem.resolved_at.is_(None))
            )
            self._resolve_items(s, exam_id, f"corners marked by {user}", now)
            # keeps its place in the queue: it has waited since the exam arrived
            s.add(
                ReviewItem(
                    exam_id=exam_id,
                    field_name=None,
                    reason="marked_corners: confirm the re-read",
                    created_at=waiting_since or now,
                )
            )
            s.add(ReviewAudit(exam_id=exam_id, action="corners", new_value=exam.corners, user=user, at=now))
