"""The OCR exam pipeline without transport: validate → align → crop, then texts → validated record."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from eyeops.align import align
from eyeops.devices.layout import DeviceLayout, FieldSpec, LayoutRegistry
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading, read_fields
from eyeops.imageio import decode_exam_image
from eyeops.ocr.arbitrate import SECOND_OPINION_BELOW, Calibrations, arbitrate, needs_second
from eyeops.ocr.wire import ExamInput
from eyeops.regions import crop_regions
from eyeops.settings import Settings


@dataclass
class PreparedExam:
    exam: ExamInput
    layout: DeviceLayout
    specs: list[FieldSpec]
    crops: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    alignment: dict[str, object] = field(default_factory=dict)  # Alignment.describe(): method, score, corners
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # each field's box of the aligned image

    @property
    def grammars(self) -> list[str]:
        return [s.grammar for s in self.specs]


def prepare_exam(exam: ExamInput, layouts: LayoutRegistry, settings: Settings) -> PreparedExam:
    """Raise UnknownDeviceKind, InvalidImage, PayloadTooLarge or AlignmentFailed; else crops."""
    layout = layouts[exam.device_kind]
    t0 = time.perf_counter()
    grey = decode_exam_image(exam.image, settings.max_image_bytes, settings.max_image_pixels)
    t1 = time.perf_counter()
    found = align(grey, layout)
    specs = list(layout.all_fields())
    crops = crop_regions(found.aligned, specs, layout.template.value_align)
    t2 = time.perf_counter()
    regions = {
        s.name: found.aligned[s.box[1] : s.box[1] + s.box[3], s.box[0] : s.box[0] + s.box[2]] for s in specs
    }
    return PreparedExam(
        exam,
        layout,
        specs,
        crops,
        {"decode_ms": (t1 - t0) * 1e3, "align_ms": (t2 - t1) * 1e3},
        found.describe(),
        regions,
    )


def validate(
    prepared: PreparedExam, recognitions: Sequence[tuple[str, float]], threshold: float
) -> list[FieldReading]:
    """Every field's (text, confidence) through the layout's grammar, range, step, confidence and
    cross-field checks, in the order of the layout."""
    if len(recognitions) != len(prepared.specs):
        raise ValueError(f"{len(recognitions)} recognitions for {len(prepared.specs)} fields")
    texts = {s.name: rec for s, rec in zip(prepared.specs, recognitions, strict=True)}
    return read_fields(prepared.layout, texts, threshold)


def _identity_checks(exam: ExamInput, readings: list[FieldReading]) -> list[FieldReading]:
    """What the image's header says must agree with what the gateway says; else review."""
    expected = {"patient_id": exam.patient_id, "laterality": exam.laterality, "exam_date": exam.exam_date}
    out = []
    for r in readings:
        hint = expected.get(r.name)
        if hint and r.status == "accepted" and r.value != hint:
            r = replace(
                r, status="review", reason=f"identity_mismatch: image says {r.value!r}, gateway says {hint!r}"
            )
        out.append(r)
    return out


def finish_exam(
    prepared: PreparedExam,
    recognitions: Sequence[tuple[str, float]],
    threshold: float,
    model_name: str,
    model_version: str,
    second: Mapping[str, tuple[str, float]] | None = None,
    calibrations: Calibrations | None = None,
    second_below: float = SECOND_OPINION_BELOW,
) -> ExamRecord:
    """Validate every field and build the record the database stores and the client receives
    (exam_record on validate's readings), with `second` holding the second recogniser's
    (text, confidence) of the fields needs_second chose."""
    readings = validate(prepared, recognitions, threshold)
    asked = needs_second(readings, second_below, prepared.layout) if second is not None else []
    return exam_record(
        prepared, readings, model_name, model_version, second, asked, calibrations, second_below
    )


def exam_record(
    prepared: PreparedExam,
    readings: Sequence[FieldReading],
    model_name: str,
    model_version: str,
    second: Mapping[str, tuple[str, float]] | None = None,
    asked: Sequence[str] = (),
    calibrations: Calibrations | None = None,
    second_below: float = SECOND_OPINION_BELOW,
    keep_crops: bool = False,
) -> ExamRecord:
    """The record of validated readings. With `second` (the second recogniser's (text, confidence)
    by name, of the fields in `asked`), each asked field is arbitrated (eyeops.ocr.arbitrate):
    agreement may accept, a disagreement goes to review with a proposal, and an asked field it did
    not answer goes to review. Without it, no second opinion is taken. With `keep_crops`, an accepted
    exam keeps the crops of the fields both recognisers read alike (learning from traffic)."""
    if second is not None:
        readings = arbitrate(
            prepared.layout,
            readings,
            second,
            asked,
            calibrations or Calibrations.identity(),
            second_below,
        )
    readings = _identity_checks(prepared.exam, list(readings))
    header = {
        r.name: (str(r.value) if r.value is not None and r.status == "accepted" else None)
        for r in readings
        if r.name in ("patient_id", "laterality", "exam_date")
    }
    status = "accepted" if all(r.status == "accepted" for r in readings) else "review"
    exam = prepared.exam
    learning: dict[str, tuple[str, bytes]] = {}
    if keep_crops and status == "accepted":
        index = {s.name: i for i, s in enumerate(prepared.specs)}
        learning = {
            r.name: (
                prepared.specs[index[r.name]].grammar,
                np.ascontiguousarray(prepared.crops[index[r.name]], dtype=np.uint8).tobytes(),
            )
            for r in readings
            if r.raw_text.strip() and (r.second_text or "").strip() == r.raw_text.strip()
        }
    return ExamRecord(
        exam_id=exam.exam_id,
        device_kind=exam.device_kind,
        status=status,
        fields=readings,
        device_id=exam.device_id,
        model_name=model_name,
        model_version=model_version,
        request_id=exam.request_id,
        image_bytes=len(exam.image),
        header=header,
        learning_crops=learning,
    )


def failed_record(exam: ExamInput, error: str) -> ExamRecord:
    """An exam that could not be read at all (alignment failed): stored and queued, never dropped."""
    return ExamRecord(
        exam_id=exam.exam_id,
        device_kind=exam.device_kind,
        status="failed",
        fields=[],
        device_id=exam.device_id,
        error=error,
        request_id=exam.request_id,
        image_bytes=len(exam.image),
    )
