"""Table definitions. Changes here need an Alembic revision in migrations/versions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Exam(Base):
    """One exam image. The id is the image's sha256, so a re-sent image finds its row."""

    __tablename__ = "exams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_kind: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str | None] = mapped_column(String(128))
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    laterality: Mapped[str | None] = mapped_column(String(2))
    exam_date: Mapped[str | None] = mapped_column(String(10))
    # accepted | review | failed | rejected (a reviewer refused it); a released exam is accepted
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    image_bytes: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Optimistic concurrency for the review console: every review save moves it on by one, and a
    # save that names an older version is refused (someone else saved first).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The screen's four corners a reviewer marked on the original image (JSON), when alignment failed.
    corners: Mapped[str | None] = mapped_column(Text)

    fields: Mapped[list[FieldRow]] = relationship(
        back_populates="exam", order_by="FieldRow.position", cascade="all, delete-orphan"
    )


class FieldRow(Base):
    __tablename__ = "fields"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    raw_text: Mapped[str] = mapped_column(String(128))
    value_number: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # the second recogniser's reading, where it was asked, and the proposal for a field in review
    second_text: Mapped[str | None] = mapped_column(String(128))
    second_confidence: Mapped[float | None] = mapped_column(Float)
    proposal: Mapped[str | None] = mapped_column(String(128))

    exam: Mapped[Exam] = relationship(back_populates="fields")


class ReviewItem(Base):
    """Work for a person: a field (or a whole exam, field_name NULL) that was not accepted."""

    __tablename__ = "review_queue"
    __table_args__ = (Index("ix_review_queue_open", "resolved_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    field_name: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolution: Mapped[str | None] = mapped_column(Text)


class ExamImage(Base):
    """The image of an exam a person has to look at (review or failed alignment), kept in the
    exam's own transaction so the console can show it, re-align it and cut the crops it labels."""

    __tablename__ = "exam_images"

    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ReviewAudit(Base):
    """Who did what to which field of an exam, and when: confirm, correct, release, reject, corners."""

    __tablename__ = "review_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    field_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    user: Mapped[str] = mapped_column(String(128))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LabelledCrop(Base):
    """A field a person confirmed or corrected, with the crop the recogniser read: the labelled
    crop set `eyeops review export-crops` writes for the `ocr-training` pipeline. Its id orders
    the set, so a version of the set is "every crop up to id N"."""

    __tablename__ = "labelled_crops"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    device_kind: Mapped[str] = mapped_column(String(64), index=True)
    field_name: Mapped[str] = mapped_column(String(64))
    grammar: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(String(128))
    corrected: Mapped[int] = mapped_column(Integer)  # 1: the reading was wrong, 0: confirmed
    crop: Mapped[bytes] = mapped_column(LargeBinary)  # CROP_HEIGHT × CROP_WIDTH uint8, row-major
    labelled_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TrafficCrop(Base):
    """A field of an exam accepted with no person, which both recognisers read alike: a candidate
    pseudo-label for learning from traffic (eyeops.ocr.traffic decides which become labels). The crop
    is patient data, as the exam image is: same database, same access, purged after the retention
    (`eyeops ocr harvest --retention-days`), and deleted with its exam."""

    __tablename__ = "traffic_crops"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    field_name: Mapped[str] = mapped_column(String(64))
    grammar: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    second_text: Mapped[str] = mapped_column(String(128))
    second_confidence: Mapped[float] = mapped_column(Float)
    crop: Mapped[bytes] = mapped_column(LargeBinary)  # CROP_HEIGHT × CROP_WIDTH uint8, row-major
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class InferenceLog(Base):
    """Every request the OCR service answered, including failures and idempotent re-sends."""

    __tablename__ = "inference_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str | None] = mapped_column(String(64), index=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    device_kind: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # stored | duplicate | failed
    http_status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    decode_ms: Mapped[float | None] = mapped_column(Float)
    align_ms: Mapped[float | None] = mapped_column(Float)
    predict_ms: Mapped[float | None] = mapped_column(Float)
    postprocess_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FeaturePushRow(Base):
    """The durable queue of feature-store pushes: written in the exam's own transaction, drained by
    one serialized writer, marked pushed only after the store took the values. A push that fails
    stays here with its next attempt time; nothing accepted is lost."""

    __tablename__ = "feature_outbox"
    __table_args__ = (Index("ix_feature_outbox_due", "pushed_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    enqueued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    pushed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
