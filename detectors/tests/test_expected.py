"""Performance before the outcome: expected coverage under a window's covariate shift, and the
expected MAE from the model's direct loss estimate (with the interval rule for older answers)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from eyeops_detectors.detectors import DetectorConfig, DetectorSet, Reference, split
from eyeops_detectors.expected import ExpectedCoverage
from eyeops_detectors.monitor import RESPONSE, Monitor
from eyeops_detectors.payloads import PayloadError, lens_answers
from eyeops_detectors.service import create_app
from eyeops_detectors.store import MonitorStore
from tests.reference_data import covered_probability, write_reference
from tests.test_monitor import WINDOW, features_body, headers, metric, predicted

pytestmark = pytest.mark.unit


def true_coverage(wtw_mean: float, wtw_sd: float = 0.4) -> float:
    """E[P(covered | WTW)] for WTW ~ N(mean, sd): 0.95 below 12 mm, 0.65 above."""
    above = 0.5 * math.erfc((12.0 - wtw_mean) / (wtw_sd * math.sqrt(2)))
    return 0.95 * (1 - above) + 0.65 * above


def eyes(rng: np.random.Generator, n: int, wtw_mean: float = 11.7) -> np.ndarray:
    return np.column_stack([rng.normal(35, 8, n), rng.normal(wtw_mean, 0.4, n), rng.normal(3.2, 0.3, n)])


def test_weighted_coverage_follows_a_window_toward_poorly_covered_eyes() -> None:
    rng = np.random.default_rng(0)
    reference = eyes(rng, 3000)
    covered = rng.random(3000) < covered_probability(reference[:, 1])
    estimator = ExpectedCoverage(reference, covered)
    window = eyes(rng, 400)
    same = estimator.estimate(window)
    # the coverage these very eyes should show, from the rule that made the flags
    assert same.coverage == pytest.approx(covered_probability(window[:, 1]).mean(), abs=0.03)
    assert same.effective_rows > 1500  # an unshifted window barely reweights
    window = eyes(rng, 400, wtw_mean=12.3)
    shifted = estimator.estimate(window)
    assert shifted.coverage == pytest.approx(covered_probability(window[:, 1]).mean(), abs=0.06)
    assert shifted.coverage == pytest.approx(true_coverage(12.3), abs=0.06)  # 0.72, not 0.88
    assert shifted.coverage < same.coverage - 0.1
    assert shifted.reference_coverage == pytest.approx(covered.mean())
    # a shift along a feature the coverage does not depend on moves nothing
    older = eyes(rng, 400)
    older[:, 0] += 10
    assert estimator.estimate(older).coverage == pytest.approx(
        covered_probability(older[:, 1]).mean(), abs=0.04
    )


def test_the_estimator_refuses_what_it_cannot_weigh() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="at least 100"):
        ExpectedCoverage(eyes(rng, 50), np.ones(50))
    with pytest.raises(ValueError, match="same rows"):
        ExpectedCoverage(eyes(rng, 200), np.ones(199))
    with pytest.raises(ValueError, match="window must be"):
        ExpectedCoverage(eyes(rng, 200), np.ones(200)).estimate(np.ones((5, 2)))


def test_calibration_eyes_survive_save_load_and_split(tmp_path: Path) -> None:
    path = write_reference(tmp_path / "ref.npz", n=300, calibration=400)
    reference = Reference.load(path)
    assert reference.calibration_features is not None and reference.calibration_covered is not None
    assert reference.calibration_features.shape == (400, 3) and reference.calibration_covered.dtype == bool
    fit_part, _ = split(reference, 0.3, 0)
    assert fit_part.calibration_features is reference.calibration_features  # other eyes: not split
    config = DetectorConfig(window=50, ert=200, online_reference=100)
    DetectorSet.fit(fit_part, config).save(tmp_path / "det")
    loaded = DetectorSet.load(tmp_path / "det")
    assert loaded.coverage is not None
    assert np.array_equal(loaded.coverage.covered, reference.calibration_covered)
    manifest = json.loads((tmp_path / "det" / "manifest.json").read_text())
    assert manifest["detectors"]["expected_coverage"]["calibration_eyes"] == 400
    # an older reference: no estimator, nothing refused
    old = DetectorSet.fit(Reference.load(write_reference(tmp_path / "old.npz", n=300)), config)
    assert old.coverage is None


def test_a_reference_with_garbled_calibration_eyes_is_refused(tmp_path: Path) -> None:
    path = write_reference(tmp_path / "ref.npz", n=300, calibration=200)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["calibration_covered"] = arrays["calibration_covered"][:-1]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="calibration_features must be"):
        Reference.load(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("det-cal")
    config = DetectorConfig(window=WINDOW, p_val=0.01, ert=200, online_reference=150)
    reference = Reference.load(write_reference(tmp / "ref.npz", n=800, calibration=3000))
    DetectorSet.fit(reference, config).save(tmp / "det")
    return tmp / "det"


def client_for(detectors: Path, state: Path) -> TestClient:
    monitor = Monitor(DetectorSet.load(detectors), MonitorStore(state), {"lens": "lens", "ocr": "ocr"})
    monitor.start()
    return TestClient(create_app(monitor))


def test_the_monitor_exposes_expected_coverage_per_window(calibrated_dir: Path, tmp_path: Path) -> None:
    client = client_for(calibrated_dir, tmp_path / "a.db")
    assert math.isnan(metric(client, "eyeops_lens_expected_coverage"))  # no window yet
    rng = np.random.default_rng(3)
    for i in range(WINDOW):
        predicted(client.post, f"u{i}", features_body(rng))
    unshifted = metric(client, "eyeops_lens_expected_coverage")
    assert unshifted == pytest.approx(true_coverage(11.7), abs=0.05)  # 0.88
    for i in range(WINDOW):
        predicted(client.post, f"s{i}", features_body(rng, wtw_shift=0.6))
    shifted = metric(client, "eyeops_lens_expected_coverage")
    # a window of 50 eyes: a rough estimate (SD ≈ 0.05 here), but clearly lower
    assert shifted == pytest.approx(true_coverage(12.3), abs=0.12) and shifted < unshifted - 0.08
    assert 20 < metric(client, "eyeops_lens_expected_coverage_effective_rows") < 3000


def test_without_calibration_eyes_the_expected_coverage_stays_unset(tmp_path: Path) -> None:
    config = DetectorConfig(window=WINDOW, p_val=0.01, ert=200, online_reference=150)
    DetectorSet.fit(Reference.load(write_reference(tmp_path / "ref.npz", n=400)), config).save(
        tmp_path / "det"
    )
    client = client_for(tmp_path / "det", tmp_path / "m.db")
    rng = np.random.default_rng(4)
    for i in range(WINDOW):
        predicted(client.post, f"o{i}", features_body(rng))
    assert client.get("/status").json()["detectors"]["lens_features"]["rows"] == WINDOW
    assert math.isnan(metric(client, "eyeops_lens_expected_coverage"))


def lens_answer(expected: list[float | None] | None) -> dict[str, Any]:
    sizes = []
    for n, (s, v) in enumerate(zip((12.1, 12.6, 13.2, 13.7), (300.0, 450.0, 600.0, 750.0), strict=True)):
        size: dict[str, Any] = {"size_mm": s, "vault_um": v, "lower_um": v - 200, "upper_um": v + 200}
        if expected is not None:
            size["expected_abs_error_um"] = expected[n]
        sizes.append(size)
    return {"sizes": sizes, "recommended_size_mm": 12.6}


def test_expected_mae_takes_the_direct_loss_estimate_and_falls_back_to_the_interval_rule(
    calibrated_dir: Path, tmp_path: Path
) -> None:
    client = client_for(calibrated_dir, tmp_path / "b.db")
    with_dle = {"predictions": [lens_answer([80.0, 60.0, 70.0, None])] * 2}
    assert client.post("/", headers=headers("d1", RESPONSE), content=json.dumps(with_dle)).status_code == 202
    assert metric(client, "eyeops_lens_expected_mae_um") == pytest.approx(60.0)
    # an answer from a model without the estimator: 200 · √(2/π) / 1.645 ≈ 97 µm, mixed in
    older = {"predictions": [lens_answer(None)] * 2}
    assert client.post("/", headers=headers("d2", RESPONSE), content=json.dumps(older)).status_code == 202
    assert metric(client, "eyeops_lens_expected_mae_um") == pytest.approx((60.0 + 97.0) / 2, abs=0.5)
    # None at the recommended size (never sent for a supported size, but read safely): the rule
    gap = {"predictions": [lens_answer([80.0, None, 70.0, None])] * 4}
    assert client.post("/", headers=headers("d3", RESPONSE), content=json.dumps(gap)).status_code == 202
    assert metric(client, "eyeops_lens_expected_mae_um") == pytest.approx((2 * 60 + 6 * 97.0) / 8, abs=0.5)


def test_a_garbled_expected_error_is_refused() -> None:
    for bad in (-1.0, "many", float("nan")):
        with pytest.raises(PayloadError):
            lens_answers({"predictions": [lens_answer([bad, 1.0, 1.0, 1.0])]})
    parsed = lens_answers({"predictions": [lens_answer([10.0, 20.0, None, 30.0])]})[0]
    assert parsed.expected_abs_error_um == (10.0, 20.0, None, 30.0)
    assert lens_answers({"predictions": [lens_answer(None)]})[0].expected_abs_error_um == (None,) * 4


def test_the_lens_dashboard_names_only_metrics_the_monitor_exposes() -> None:
    from prometheus_client import CollectorRegistry

    from eyeops_detectors.metrics import MonitorMetrics

    registry = CollectorRegistry()
    MonitorMetrics(registry)
    exposed = {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    board = Path(__file__).parents[2] / "charts" / "eyeops" / "files" / "dashboards" / "eyeops-lens.json"
    exprs = [t["expr"] for p in json.loads(board.read_text())["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in re.findall(r"\beyeops_(?:drift|lens|monitor)_[a-z_]+\b", e)}
    assert {"eyeops_lens_expected_coverage", "eyeops_lens_expected_mae_um"} <= named <= exposed, (
        named - exposed
    )
