"""Domain types of a read exam, apart from how they are stored (eyeops.db) or served."""

from __future__ import annotations

from dataclasses import dataclass, field

from eyeops.fields import FieldReading


@dataclass
class ExamRecord:
    """An exam as stored and as answered to the client."""

    exam_id: str
    device_kind: str
    status: str
    fields: list[FieldReading]
    device_id: str | None = None
    error: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    request_id: str | None = None
    image_bytes: int = 0
    header: dict[str, str | None] = field(default_factory=dict)
    # (grammar, crop) of the fields both recognisers read alike, by field name (the crop as
    # CROP_HEIGHT × CROP_WIDTH uint8 bytes): kept with an accepted exam for learning from traffic;
    # never answered or logged.
    learning_crops: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "exam_id": self.exam_id,
            "device_kind": self.device_kind,
            "device_id": self.device_id,
            "status": self.status,
            "error": self.error,
            "patient_id": self.header.get("patient_id"),
            "laterality": self.header.get("laterality"),
            "exam_date": self.header.get("exam_date"),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "fields": [f.to_dict() for f in self.fields],
        }
