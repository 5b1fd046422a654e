"""The reference the detector-fitting pipeline builds: OCR confidences, review flags and per-kind
value tables from the results database; written as plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from eyeops.db import ResultsStore, migrate
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading
from eyeops.monitoring.reference import ocr_reference, save_reference

LOG = {"http_status": 200, "model_name": "trocr", "model_version": "1", "total_ms": 12.0}


def test_ocr_reference_from_the_results_database(sqlite_url, tmp_path):
    migrate(sqlite_url)
    store = ResultsStore.from_url(sqlite_url)
    for i in range(4):
        fields = [
            FieldReading("al_mm", f"{24 + i:.2f}", 24.0 + i, "mm", 0.99, "accepted"),
            FieldReading("acd_mm", f"{3 + i / 10:.2f}", 3.0 + i / 10, "mm", 0.98, "accepted"),
        ]
        if i == 3:  # an exam whose ACD went to review: not a complete row of values
            fields[1] = FieldReading("acd_mm", "3.x", None, "mm", 0.4, "review", "grammar: ...")
        record = ExamRecord(
            exam_id=f"{i:064d}", device_kind="optical_biometer", status="accepted", fields=fields
        )
        store.save_exam(record, LOG)
    arrays = ocr_reference(sqlite_url)
    assert arrays["ocr_device_kind"].tolist() == ["optical_biometer"] * 8
    assert arrays["ocr_review"].sum() == 1 and arrays["ocr_confidence"].min() == pytest.approx(0.4)
    names = arrays["ocr_value_names__optical_biometer"].tolist()
    values = arrays["ocr_values__optical_biometer"]
    assert sorted(names) == ["acd_mm", "al_mm"] and values.shape == (3, 2)
    assert sorted(values[:, names.index("al_mm")].tolist()) == [24.0, 25.0, 26.0]
    path = save_reference(arrays, tmp_path / "ref.npz")
    with np.load(path, allow_pickle=False) as data:  # plain arrays: the detectors env reads them
        assert data["ocr_values__optical_biometer"].shape == (3, 2)
