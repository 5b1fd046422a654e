"""Performance before the outcome: do the monitor's expectations track what the vaults later show,
when the eyes shift away from the training population?

- expected MAE at the recommended size, two ways: the interval rule (0.485 × the 90 % interval's
  half-width, what the monitor used before) and the direct loss estimate the model now puts in each
  answer (`expected_abs_error_um`, a LightGBM model of |residual| fitted on the calibration eyes);
- expected coverage of the implanted size's interval: the calibration eyes' out-of-sample covered
  flags weighted to the window's covariates by a classifier between them and the window (the
  monitor's own code, detectors/eyeops_detectors/expected.py), over the whole window and over
  windows of 200 eyes, one per patient (what the monitor's gauge sees).

Two worlds, one model each, all windows side by side in one run: the project's simulator (one
noise SD for every eye, so a covariate shift barely moves the error), and the same simulator with
heteroscedastic outcomes (the eye term's SD × e^(0.5·z), z the standardised WTW: large eyes are
harder), where a shift does move it. Windows: the unshifted test cohort, the largest and the
smallest white-to-white (top / bottom 20 %), thick crystalline lenses, older patients, a device
reading WTW 0.6 mm too large (a measurement shift: the eyes are unchanged, but the measured features
now say something else about the vault); in the first world also the independent simulator's
cohort (tests/foreign/cohort.py: another population *and* another outcome function, i.e. concept
shift). No estimate from the features can see either of the last two. Realized values: the MAE
at the recommended size from the simulators' counterfactual vaults, and the coverage at the
implanted size (the factual vault) and at the recommended size (counterfactual). Target: expected /
realized MAE within 0.85–1.15 under every covariate shift.

Run:  .venv/bin/python -m bench.lens_expected [--train 20000] [--test 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eyeops.lens.cohort import COUNTERFACTUAL_COLUMNS, CohortParams, simulate_cohort
from eyeops.lens.features import BASE_FEATURES
from eyeops.lens.model import LensConfig, LensModel
from eyeops.lens.sizes import SIZES_MM

# The monitor's estimator needs only numpy: the same code runs here, in the main environment.
# Appended, not prepended: detectors/ has a `tests` package of its own.
sys.path.append(str(Path(__file__).resolve().parents[1] / "detectors"))
from eyeops_detectors.expected import ExpectedCoverage

# E|r| of a normal residual over a 90 % interval's half-width: √(2/π) / 1.645 (the monitor's).
EXPECTED_ABS_PER_HALF_WIDTH = float(np.sqrt(2 / np.pi) / 1.6449)
MONITOR_WINDOW = 200


def monitor_windows(eyes: pd.DataFrame, rng: np.random.Generator, count: int = 20) -> list[np.ndarray]:
    """Windows of MONITOR_WINDOW eyes, one per patient (the monitor's lens_features stream)."""
    first = eyes.groupby("patient_id", sort=False).head(1) if "patient_id" in eyes else eyes
    rows = first[list(BASE_FEATURES)].to_numpy(dtype=float)
    take = min(MONITOR_WINDOW, len(rows))
    return [rows[rng.choice(len(rows), take, replace=False)] for _ in range(count)]


def window(
    model: LensModel, coverage: ExpectedCoverage, eyes: pd.DataFrame, truth: pd.DataFrame, seed: int
) -> dict[str, Any]:
    """Expected vs realized for one window of eyes. `eyes` is what the service sees (features as
    measured), `truth` holds the implanted size, its vault and the counterfactual vaults."""
    pred = model.predict(eyes)
    assert pred.expected_abs_error_um is not None
    j = np.searchsorted(np.asarray(SIZES_MM), pred.recommended_size_mm)
    rows = np.arange(len(eyes))
    half = (pred.upper_um[rows, j] - pred.lower_um[rows, j]) / 2.0
    interval_rule = float(EXPECTED_ABS_PER_HALF_WIDTH * half.mean())
    dle = float(pred.expected_abs_error_um[rows, j].mean())
    vault = truth[list(COUNTERFACTUAL_COLUMNS)].to_numpy(dtype=float)[rows, j]
    realized = float(np.abs(vault - pred.vault_um[rows, j]).mean())
    covered_rec = (pred.lower_um[rows, j] <= vault) & (vault <= pred.upper_um[rows, j])
    k = np.searchsorted(np.asarray(SIZES_MM), truth["implanted_size_mm"].to_numpy(dtype=float))
    factual = truth["vault_um"].to_numpy(dtype=float)
    covered_imp = (pred.lower_um[rows, k] <= factual) & (factual <= pred.upper_um[rows, k])
    whole = coverage.estimate(eyes[list(BASE_FEATURES)].to_numpy(dtype=float))
    small = [coverage.estimate(w) for w in monitor_windows(eyes, np.random.default_rng(seed))]
    per200 = np.array([e.coverage for e in small])
    return {
        "eyes": len(eyes),
        "realized_mae_um": round(realized, 1),
        "interval_rule_mae_um": round(interval_rule, 1),
        "interval_rule_ratio": round(interval_rule / realized, 3),
        "dle_mae_um": round(dle, 1),
        "dle_ratio": round(dle / realized, 3),
        "expected_coverage": round(whole.coverage, 3),
        "expected_coverage_effective_rows": round(whole.effective_rows),
        "expected_coverage_200": f"{per200.mean():.3f} ± {per200.std():.3f}",
        "realized_coverage_implanted": round(float(covered_imp.mean()), 3),
        "realized_coverage_recommended": round(float(covered_rec.mean()), 3),
        "coverage_gap": round(whole.coverage - float(covered_imp.mean()), 3),
    }


def world(params: CohortParams, train: int, test_n: int, foreign: bool) -> dict[str, Any]:
    model = LensModel.fit(simulate_cohort(train, 101, params), LensConfig(), version="bench")
    assert model.calibration_eyes is not None
    coverage = ExpectedCoverage(model.calibration_eyes.features, model.calibration_eyes.covered)
    test = simulate_cohort(test_n, 202, params)
    big = simulate_cohort(4 * test_n, 303, params)
    windows = {
        "unshifted": (test, test),
        "largest WTW (top 20 %)": (big[big["wtw_mm"] > big["wtw_mm"].quantile(0.8)],) * 2,
        "smallest WTW (bottom 20 %)": (big[big["wtw_mm"] < big["wtw_mm"].quantile(0.2)],) * 2,
        "thick lens (top 20 % LT)": (big[big["lt_mm"] > big["lt_mm"].quantile(0.8)],) * 2,
        "older (top 20 % age)": (big[big["age_years"] > big["age_years"].quantile(0.8)],) * 2,
    }
    misread = test.copy()
    misread["wtw_mm"] = (misread["wtw_mm"] + 0.6).clip(upper=13.5)
    windows["WTW read 0.6 mm too large (measurement shift)"] = (misread, test)
    if foreign:
        try:
            from tests.foreign.cohort import simulate

            other = simulate(test_n, 2, odd_share=0.0)
            windows["independent simulator (concept shift)"] = (other, other)
        except ImportError:  # an installed eyeops without the tests
            pass
    out = {
        name: window(model, coverage, eyes.reset_index(drop=True), truth.reset_index(drop=True), n)
        for n, (name, (eyes, truth)) in enumerate(windows.items())
    }
    # A misread changes what the measured features say about the vault, and the independent
    # simulator changes the outcome function: neither is a covariate shift.
    covariate = [w for name, w in out.items() if not name.endswith("shift)")]
    metrics = model.manifest["metrics"]

    def span(key: str) -> list[float]:
        return [min(w[key] for w in covariate), max(w[key] for w in covariate)]

    return {
        "calibration_eyes": len(model.calibration_eyes.covered),
        "calibration_loo_coverage": round(metrics["calibration_loo_coverage"], 3),
        "dle_crossfit": {k: round(v, 3) for k, v in metrics.items() if k.startswith("dle_")},
        "windows": out,
        "under_covariate_shift": {
            "interval_rule_ratio": span("interval_rule_ratio"),
            "dle_ratio": span("dle_ratio"),
            "coverage_expected_minus_realized_implanted": span("coverage_gap"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--test", type=int, default=5000)
    args = parser.parse_args()
    worlds = {
        "project simulator (one noise SD)": (CohortParams(), True),
        "heteroscedastic (noise SD x e^(0.5 z_WTW))": (CohortParams(noise_log_slope_per_wtw_sd=0.5), False),
    }
    out = {name: world(params, args.train, args.test, foreign) for name, (params, foreign) in worlds.items()}
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
