from __future__ import annotations

import datetime as dt

import pytest

from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading
from eyeops.lens.ingest import feature_push_for, view_for_device

pytestmark = pytest.mark.unit
HEADER = {"patient_id": "P0012345", "laterality": "OS", "exam_date": "2026-03-14"}


def biometer(status: str = "accepted", **header: str | None) -> ExamRecord:
    values = {
        "al_mm": 26.4,
        "acd_mm": 3.3,
        "lt_mm": 3.7,
        "wtw_mm": 11.8,
        "k1_d": 43.5,
        "k2_d": 44.75,
        "cct_um": 531.0,
    }
    fields = [FieldReading(n, str(v), v, None, 0.99, "accepted") for n, v in values.items()]
    return ExamRecord("a" * 64, "optical_biometer", status, fields, header={**HEADER, **header})


def test_accepted_biometry_becomes_a_push_for_the_eye():
    push = feature_push_for(biometer())
    assert push is not None
    assert (push.view, push.eye_id) == ("biometry", "P0012345-OS")
    assert (
        push.values["wtw_mm"] == 11.8
        and push.values["cct_um"] == 531
        and isinstance(push.values["cct_um"], int)
    )
    assert push.measured_at == dt.datetime(2026, 3, 14, tzinfo=dt.UTC)


def test_nothing_is_pushed_without_acceptance_identity_or_a_view():
    assert feature_push_for(biometer(status="review")) is None
    assert feature_push_for(biometer(laterality=None)) is None
    tonometer = ExamRecord("b" * 64, "noncontact_tonometer", "accepted", [], header=HEADER)
    assert feature_push_for(tonometer) is None
    assert view_for_device("anterior_segment_oct") == "anterior_segment"
    assert view_for_device("autorefractor") == "refraction"
