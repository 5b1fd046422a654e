"""Performance before the outcome, on the lens model's side: the direct loss estimate in each answer
tracks the error a shifted window later shows; the calibration eyes' coverage flags are out of
sample; both survive save/load, and a model saved without them still loads and answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eyeops.lens.cohort import COUNTERFACTUAL_COLUMNS, CohortParams, simulate_cohort
from eyeops.lens.conformal import Calibration, leave_one_out_radius
from eyeops.lens.features import BASE_FEATURES
from eyeops.lens.model import LensConfig, LensModel
from eyeops.lens.sizes import SIZES_MM
from eyeops.monitoring.reference import lens_reference

# Large eyes are harder: the outcome noise SD grows by e^0.5 per SD of WTW.
HARDER_LARGE_EYES = CohortParams(noise_log_slope_per_wtw_sd=0.5)
HALF_WIDTH_RULE = float(np.sqrt(2 / np.pi) / 1.6449)


@pytest.fixture(scope="module")
def model() -> LensModel:
    return LensModel.fit(simulate_cohort(6000, 101, HARDER_LARGE_EYES), LensConfig(vault_rounds=200), "dle-1")


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return simulate_cohort(12000, 303, HARDER_LARGE_EYES)


def expected_and_realized(model: LensModel, eyes: pd.DataFrame) -> tuple[float, float, float]:
    """Mean DLE, interval-rule and realized |error| at the recommended size."""
    eyes = eyes.reset_index(drop=True)
    pred = model.predict(eyes)
    assert pred.expected_abs_error_um is not None
    rows = np.arange(len(eyes))
    j = np.searchsorted(np.asarray(SIZES_MM), pred.recommended_size_mm)
    truth = eyes[list(COUNTERFACTUAL_COLUMNS)].to_numpy(dtype=float)[rows, j]
    realized = float(np.abs(truth - pred.vault_um[rows, j]).mean())
    rule = float(HALF_WIDTH_RULE * ((pred.upper_um - pred.lower_um)[rows, j] / 2).mean())
    return float(pred.expected_abs_error_um[rows, j].mean()), rule, realized


def test_the_direct_loss_estimate_tracks_the_realized_error_of_shifted_windows(model, population):
    wtw = population["wtw_mm"]
    large, small = population[wtw > wtw.quantile(0.8)], population[wtw < wtw.quantile(0.2)]
    dle_large, rule_large, real_large = expected_and_realized(model, large)
    dle_small, _, real_small = expected_and_realized(model, small)
    assert real_large > 2 * real_small  # the shift really moves the error
    assert 0.85 <= dle_large / real_large <= 1.15
    assert 0.85 <= dle_small / real_small <= 1.15
    # what the interval rule gives there (the intervals are weighted by the propensity only)
    assert rule_large / real_large < 0.85
    dle_all, _, real_all = expected_and_realized(model, population)
    assert 0.9 <= dle_all / real_all <= 1.1
    metrics = model.manifest["metrics"]
    assert 0.95 <= metrics["dle_crossfit_expected_over_realized"] <= 1.05
    assert metrics["dle_crossfit_top_quintile_mae_um"] > 2 * metrics["dle_crossfit_bottom_quintile_mae_um"]


def test_answers_carry_the_expected_error_for_supported_sizes(model, population):
    pred = model.predict(population.head(50))
    for i in range(50):
        answer = pred.eye(i, model.version)
        for s in answer["sizes"]:
            value = s["expected_abs_error_um"]
            assert (value is None) == (not s["supported"])
            assert value is None or 1.0 <= value < 1000.0
        rec = next(s for s in answer["sizes"] if s["size_mm"] == answer["recommended_size_mm"])
        assert rec["expected_abs_error_um"] is not None
    json.dumps(pred.eye(0, model.version), allow_nan=False)


def test_leave_one_out_radius_is_the_radius_from_the_other_eyes():
    rng = np.random.default_rng(0)
    residuals, weights = np.abs(rng.normal(0, 100, 80)), rng.uniform(1, 8, 80)
    residuals[5] = residuals[6]  # ties too
    for alpha in (0.1, 0.05, 0.5):
        loo = leave_one_out_radius(residuals, weights, alpha)
        brute = [
            Calibration.build(np.delete(residuals, i), np.delete(weights, i)).radius(
                weights[i : i + 1], alpha
            )[0]
            for i in range(80)
        ]
        assert np.array_equal(loo, brute)
    # a tiny set: the other eyes cannot reach 1 − α, the radius is infinite (always covered)
    assert np.isinf(leave_one_out_radius(np.array([3.0, 4.0]), np.array([1.0, 1.0]), 0.1)).all()


def test_calibration_eyes_coverage_is_out_of_sample(model):
    eyes = model.calibration_eyes
    assert eyes is not None
    n = model.manifest["calibration_eyes"]
    assert eyes.features.shape == (n, len(BASE_FEATURES)) and eyes.covered.shape == (n,)
    assert set(np.unique(eyes.implanted_size_mm)) <= set(SIZES_MM)
    # out of sample, the 90 % intervals cover about 90 % (in sample they could not miss more than α)
    assert 0.87 <= eyes.covered.mean() <= 0.93
    assert model.manifest["metrics"]["calibration_loo_coverage"] == pytest.approx(eyes.covered.mean())
    # large eyes are harder: their flags say so, which is what the monitor reweights
    wtw = eyes.features[:, BASE_FEATURES.index("wtw_mm")]
    assert (
        eyes.covered[wtw > np.quantile(wtw, 0.8)].mean()
        < eyes.covered[wtw < np.quantile(wtw, 0.2)].mean() - 0.1
    )


def test_round_trip_keeps_the_estimator_and_the_calibration_eyes(model, population, tmp_path: Path):
    model.save(tmp_path / "m")
    loaded = LensModel.load(tmp_path / "m")
    a, b = model.predict(population.head(200)), loaded.predict(population.head(200))
    assert a.expected_abs_error_um is not None and b.expected_abs_error_um is not None
    assert np.allclose(a.expected_abs_error_um, b.expected_abs_error_um)
    assert loaded.calibration_eyes is not None and model.calibration_eyes is not None
    assert np.array_equal(loaded.calibration_eyes.covered, model.calibration_eyes.covered)
    assert np.array_equal(loaded.calibration_eyes.features, model.calibration_eyes.features)
    reference = lens_reference(loaded, population.head(300))
    assert reference["calibration_features"].shape == model.calibration_eyes.features.shape
    assert reference["calibration_covered"].dtype == bool


def test_a_model_saved_before_the_estimator_loads_and_answers_without_it(model, population, tmp_path: Path):
    folder = tmp_path / "old"
    model.save(folder)
    (folder / "dle.txt").unlink()
    (folder / "calibration_eyes.npz").unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["dle_params"], config["dle_rounds"]
    (folder / "config.json").write_text(json.dumps(config))
    old = LensModel.load(folder)
    assert old.loss_estimator is None and old.calibration_eyes is None
    pred = old.predict(population.head(20))
    assert pred.expected_abs_error_um is None
    assert np.allclose(pred.vault_um, model.predict(population.head(20)).vault_um)
    assert all("expected_abs_error_um" not in s for s in pred.eye(0, old.version)["sizes"])
    assert "calibration_features" not in lens_reference(old, population.head(100))
