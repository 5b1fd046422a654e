"""The detector set: fitted from a reference file, saved as arrays, loaded without re-simulating the
online thresholds, online state carried over a restart, a refused reference says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eyeops_detectors.__main__ import main
from eyeops_detectors.detectors import DetectorConfig, DetectorSet, Reference, size_index
from tests.reference_data import NAMES, write_reference

pytestmark = pytest.mark.unit


def test_fit_save_load_and_check(tmp_path: Path) -> None:
    config = DetectorConfig(window=100, p_val=0.01, ert=200, online_reference=150)
    reference = Reference.load(write_reference(tmp_path / "ref.npz"))
    fitted = DetectorSet.fit(reference, config)
    assert set(fitted.ocr_confidence) == {"optical_biometer"}  # 10 rows are too few for a test
    fitted.save(tmp_path / "det")
    loaded = DetectorSet.load(tmp_path / "det")
    np.testing.assert_array_equal(loaded.online.thresholds, fitted.online.thresholds)
    rng = np.random.default_rng(5)
    same = reference.features[rng.choice(len(reference.features), 100)]
    assert not loaded.features.check(same).is_drift
    shifted = same.copy()
    shifted[:, 1] += 0.4  # one SD in WTW
    result = loaded.features.check(shifted)
    assert result.is_drift and result.p_values["wtw_mm"] < 1e-4 and result.p_values["age_years"] > 0.01
    assert loaded.recommended.check(size_index(np.full(100, 13.7))).is_drift
    assert not loaded.recommended.check(size_index(reference.recommended[:100])).is_drift


def test_online_state_survives_a_restart(tmp_path: Path) -> None:
    config = DetectorConfig(window=100, ert=200, online_reference=150)
    reference = Reference.load(write_reference(tmp_path / "ref.npz", ocr=False))
    first = DetectorSet.fit(reference, config)
    first.save(tmp_path / "det")
    for row in reference.features[:30]:
        first.online.update(row)
    first.online.save_state(tmp_path / "state")
    again = DetectorSet.load(tmp_path / "det")
    again.online.load_state(tmp_path / "state")
    assert again.online.t == first.online.t == 30


def test_a_strong_shift_trips_the_online_detector_within_a_window(tmp_path: Path) -> None:
    config = DetectorConfig(ert=200, online_reference=150)
    detectors = DetectorSet.fit(Reference.load(write_reference(tmp_path / "ref.npz", ocr=False)), config)
    rng = np.random.default_rng(9)
    stream = np.column_stack(
        [rng.normal(35, 8, 300), rng.normal(11.7 + 1.2, 0.4, 300), rng.normal(3.2, 0.3, 300)]
    )
    delay = next(i for i, row in enumerate(stream) if detectors.online.update(row))
    assert delay < 60  # three SD in WTW: caught within the smallest windows


def test_cli_fit_writes_detectors_and_summary(tmp_path: Path) -> None:
    ref = write_reference(tmp_path / "ref.npz", n=1000)
    code = main(
        ["fit", "--reference", str(ref), "--out", str(tmp_path / "out"), "--ert", "200", "--window", "200",
         "--summary", str(tmp_path / "summary.json")]
    )  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert code == 0 and summary["fit_rows"] == 700 and summary["shift_detected"]
    assert summary["heldout_false_alarm_rate"] <= summary["false_alarm_budget"]
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_a_reference_without_predictions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    with path.open("wb") as handle:
        np.savez(handle, feature_names=np.array(NAMES), features=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="lacks prediction_names, predictions, recommended"):
        Reference.load(path)
