"""What the review repository (eyeops.db.review) reads and returns: the queue, an exam as a
reviewer sees it, its audit trail, the labels a release adds to the crop set, the backlog, and the
refusals a decision can meet. Plain values, apart from the database and any web framework."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eyeops.devices.layout import DeviceLayout
from eyeops.errors import EyeopsError
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading

HEADER_FIELDS = ("patient_id", "laterality", "exam_date")
SECOND_LOOK = "second_look"  # a sampled release another reviewer checks blind (reviewer agreement)
DISAGREEMENT = "disagreement"


class Conflict(EyeopsError):
    """Another reviewer saved this exam first; the message says who and when."""

    status_code = 409


class NotReviewable(EyeopsError):
    """The exam is not (or no longer) waiting for review."""

    status_code = 409


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class QueueEntry:
    exam_id: str
    device_kind: str
    status: str  # review | failed
    reasons: tuple[str, ...]  # reason kinds of the open items, e.g. low_confidence, alignment
    open_items: int
    waiting_since: dt.datetime


@dataclass(frozen=True)
class AuditEntry:
    field_name: str | None
    action: str
    old_value: str | None
    new_value: str | None
    user: str
    at: dt.datetime


@dataclass(frozen=True)
class ExamForReview:
    record: ExamRecord
    version: int
    received_at: dt.datetime
    image: bytes | None
    open_items: tuple[tuple[str | None, str], ...]  # (field or None for the exam, reason)
    audit: tuple[AuditEntry, ...]
    reviewed_by: str | None
    corners: list[list[float]] | None

    @property
    def waiting(self) -> bool:
        return bool(self.open_items)

    @property
    def second_look(self) -> bool:
        """A sampled release waiting for another reviewer's blind check."""
        return any(reason.startswith(SECOND_LOOK) for _, reason in self.open_items)

    @property
    def released_by(self) -> str | None:
        releases = [a.user for a in self.audit if a.action == "release"]
        return releases[-1] if releases else None


@dataclass(frozen=True)
class Label:
    """A confirmed or corrected field and the crop the recogniser read (CROP_HEIGHT × CROP_WIDTH)."""

    field_name: str
    grammar: str
    text: str
    corrected: bool
    crop: np.ndarray


def labels_for(
    layout: DeviceLayout,
    readings: Sequence[FieldReading],
    typed: Mapping[str, str],
    previous: Sequence[FieldReading],
    crops: Mapping[str, np.ndarray],
) -> list[Label]:
    """A label per reviewed field: the text as the reviewer typed it (the screen's format), the
    crop the recogniser read, and whether the reading was wrong."""
    before = {r.name: r.value for r in previous}
    return [
        Label(
            r.name,
            layout.field(r.name).grammar,
            typed[r.name].strip(),
            r.name not in before or before[r.name] != r.value,
            crops[r.name],
        )
        for r in readings
    ]


@dataclass(frozen=True)
class Backlog:
    device_kind: str
    exams: int
    oldest: dt.datetime


def reason_kind(reason: str | None) -> str:
    """`low_confidence: 0.91 < 0.995` → `low_confidence`; an alignment failure → `alignment`."""
    text = (reason or "unknown").strip()
    if text.lower().startswith("alignment failed"):
        return "alignment"
    return text.split(":", 1)[0][:40]


def text_of(value: float | str | None) -> str | None:
    return None if value is None else str(value)
