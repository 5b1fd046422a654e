"""Exams waiting for review, as the OCR service stores them: rendered images of the shipped layouts,
read correctly except for the fields a test names, with the image kept."""

from __future__ import annotations

from collections.abc import Iterable

from eyeops.db.store import ResultsStore
from eyeops.devices.layout import DeviceLayout
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading, read_fields
from eyeops.synth.exams import render_one


def seed_exam(
    results: ResultsStore,
    layout: DeviceLayout,
    index: int,
    misread: dict[str, str] | None = None,
    doubtful: Iterable[str] = (),
    seed: int = 4242,
    second: dict[str, tuple[str, float]] | None = None,
) -> tuple[str, dict[str, str]]:
    """Store one exam of `layout`; `misread` replaces a field's text (read wrongly), `doubtful`
    fields are read at low confidence; with `second` (the second recogniser's text and confidence
    by field), the readings are arbitrated as served, with the shipped calibration. Returns the
    exam id and the true texts."""
    import hashlib

    exam = render_one(layout, seed, "eval", index, clean=True)
    texts = {
        name: ((misread or {}).get(name, text), 0.5 if name in set(doubtful) | set(misread or {}) else 0.999)
        for name, text in exam.texts.items()
    }
    readings: list[FieldReading] = read_fields(layout, texts, 0.97)
    if second is not None:
        from eyeops.ocr.arbitrate import arbitrate, needs_second, shipped_calibrations

        asked = needs_second(readings, layout=layout)
        readings = arbitrate(layout, readings, second, asked, shipped_calibrations())
    status = "accepted" if all(r.status == "accepted" for r in readings) else "review"
    header = {
        r.name: (str(r.value) if r.value is not None and r.status == "accepted" else None)
        for r in readings
        if r.name in ("patient_id", "laterality", "exam_date")
    }
    exam_id = hashlib.sha256(exam.image).hexdigest()
    record = ExamRecord(exam_id, layout.kind, status, readings, header=header, image_bytes=len(exam.image))
    results.save_exam(record, {"http_status": 200}, push_features=True, image=exam.image)
    return exam_id, dict(exam.texts)
