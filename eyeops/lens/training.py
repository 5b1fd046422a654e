"""Fitting a `LensModel` (eyeops.lens.model describes what it holds): the served split, and for the
bounds from data (eyeops.lens.unsupported) as many cross-fitted splits again.

`LensModel.fit` is the entry point; this module holds its work so that the model's own module keeps
to prediction and its artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eyeops.lens.conformal import Calibration, leave_one_out_radius
from eyeops.lens.features import BASE_FEATURES, FEATURES, SIZE_FEATURE, feature_matrix
from eyeops.lens.loss import LossEstimator, crossfit_loss_estimator
from eyeops.lens.model import (
    FORMAT_VERSION,
    CalibrationEyes,
    LensConfig,
    LensModel,
    _size_index,
    _with_size,
    data_hash,
)
from eyeops.lens.sizes import SIZES_MM
from eyeops.lens.unsupported import KIND as UNSUPPORTED_KIND
from eyeops.lens.unsupported import weighted_margins


@dataclass
class _Scores:
    """One split's calibration eyes: whether the size each got is supported for it, and (with
    bounds from data) their scores: |y − f| at the implanted size, the DLE's out-of-fold expected
    error there, whether y lay within the bounds its supported sizes give, the implanted size's
    index, the support of every size and the propensity of the implanted size."""

    implanted_supported: np.ndarray
    arrays: tuple[np.ndarray, ...] = field(default_factory=tuple)


def fit(cohort: pd.DataFrame, config: LensConfig | None = None, version: str = "dev") -> LensModel:
    """Train on a validated cohort (factual outcomes only; counterfactual columns are ignored).
    The served model is fitted on the eyes outside the calibration split; with `margin_folds`
    > 1, as many models again are fitted with each other quarter held out, for the scores of
    the bounds from data only (cross-fitting: every eye implanted with a size unsupported for
    it scores out of sample, instead of the calibration split's)."""
    config = config or LensConfig()
    rng = np.random.default_rng(config.seed)
    patients = cohort["patient_id"].unique()
    calib_patients = set(rng.choice(patients, int(len(patients) * config.calibration_share), replace=False))
    is_calib = cohort["patient_id"].isin(calib_patients).to_numpy()  # fellow eyes stay together
    x_all = feature_matrix(cohort)
    size_idx = _size_index(cohort["implanted_size_mm"])
    y = cohort["vault_um"].to_numpy(dtype=float)
    model, metrics, covered, scores = _fit_split(cohort, x_all, size_idx, y, is_calib, config)
    calib_y, calib_idx = y[is_calib], size_idx[is_calib]
    supported_calib = scores.implanted_supported
    if config.margin_from_data:
        pooled = [scores.arrays]
        rest = np.array([p for p in patients if p not in calib_patients], dtype=object)
        groups = (
            np.array_split(rng.permutation(rest), config.margin_folds - 1) if config.margin_folds > 1 else []
        )
        for group in groups:
            held = cohort["patient_id"].isin(set(group)).to_numpy()
            pooled.append(_fit_split(cohort, x_all, size_idx, y, held, config)[3].arrays)
        residual, sigma, inside, implanted, supported, propensity = (
            np.concatenate(part) for part in zip(*pooled, strict=True)
        )
        model.manifest["unsupported_bounds"] = {
            "kind": UNSUPPORTED_KIND,
            "folds": len(pooled),
            "gamma": config.margin_gamma,
            "floor": config.margin_floor,
            "sizes": weighted_margins(
                residual,
                sigma,
                inside,
                implanted,
                supported,
                propensity,
                config.bound_alpha,
                config.margin_min_eyes,
                config.step_gain_um_per_mm,
                config.margin_confidence,
                config.margin_floor,
            ),
        }
    if (~supported_calib).any():
        # An implanted size the model calls unsupported is answered with bounds built from the
        # other sizes' calibration eyes, which this eye is not among: out of sample as they are.
        odd = cohort[is_calib][~supported_calib]
        bounds = model.predict(odd)
        k = calib_idx[~supported_calib]
        at = np.arange(len(k))
        truth = calib_y[~supported_calib]
        covered[~supported_calib] = (bounds.lower_um[at, k] <= truth) & (truth <= bounds.upper_um[at, k])
    model.calibration_eyes = CalibrationEyes(
        cohort.loc[is_calib, list(BASE_FEATURES)].to_numpy(dtype=float),
        np.asarray(SIZES_MM)[calib_idx],
        covered,
    )
    metrics["calibration_loo_coverage"] = float(covered.mean())
    model.manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "features": list(FEATURES),
        "size_feature": SIZE_FEATURE,
        "sizes_mm": list(SIZES_MM),
        "delta": config.delta,
        "alpha": config.alpha,
        "vault_max_um": config.vault_max_um,
        "target_um": list(config.target_um),
        "training_data_sha256": data_hash(cohort),
        "training_eyes": int((~is_calib).sum()),
        "calibration_eyes": int(is_calib.sum()),
        "calibration_eyes_per_size": {
            f"{s:.1f}": int((size_idx[is_calib] == j).sum()) for j, s in enumerate(SIZES_MM)
        },
        "metrics": metrics,
        **({"unsupported_bounds": model.manifest["unsupported_bounds"]} if config.margin_from_data else {}),
    }
    return model


def _fit_split(
    cohort: pd.DataFrame,
    x_all: pd.DataFrame,
    size_idx: np.ndarray,
    y: np.ndarray,
    is_calib: np.ndarray,
    config: LensConfig,
) -> tuple[LensModel, dict[str, float], np.ndarray, _Scores]:
    """One split: the vault and propensity models on the eyes outside `is_calib`, the
    conformal calibration and the DLE on those in it. Returns the model (no manifest yet), its
    metrics, each calibration eye's out-of-sample coverage flag (its implanted size where
    supported) and `_Scores`."""
    import lightgbm as lgb
    from sklearn.calibration import CalibratedClassifierCV

    train_x = _with_size(x_all[~is_calib], 0.0)
    train_x[SIZE_FEATURE] = cohort["implanted_size_mm"].to_numpy(dtype=float)[~is_calib]
    params = {**config.vault_params, "seed": config.seed}
    params["monotone_constraints"] = [0] * len(FEATURES) + [1]
    vault = lgb.train(params, lgb.Dataset(train_x, label=y[~is_calib]), num_boost_round=config.vault_rounds)

    classifier = lgb.LGBMClassifier(
        n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=40, verbose=-1,
        random_state=config.seed,
    )  # fmt: skip
    propensity = CalibratedClassifierCV(classifier, method="isotonic", cv=3)
    propensity.fit(x_all[~is_calib].to_numpy(), size_idx[~is_calib])

    model = LensModel(vault, propensity, {}, config, {})
    calib_x = x_all[is_calib]
    e_calib = model.propensities(calib_x)
    pred_calib = model.predict_vault(calib_x)
    calib_y, calib_idx = y[is_calib], size_idx[is_calib]
    factual = pred_calib[np.arange(len(calib_idx)), calib_idx]
    chosen = np.clip(e_calib[np.arange(len(calib_idx)), calib_idx], 1e-6, 1.0)
    metrics = {  # the calibration split is out of sample for both models
        "calibration_mae_um": float(np.abs(calib_y - factual).mean()),
        "propensity_log_loss": float(-np.log(chosen).mean()),
        "calibration_implanted_supported_share": float((chosen >= config.delta).mean()),
    }
    covered = np.zeros(len(calib_idx), dtype=bool)
    for j, size in enumerate(SIZES_MM):
        rows = calib_idx == j
        residuals = calib_y[rows] - pred_calib[rows, j]
        weights = 1.0 / np.clip(e_calib[rows, j], config.delta, 1.0)
        model.calibration[size] = Calibration.build(residuals, weights)
        radius = leave_one_out_radius(np.abs(residuals), weights, config.alpha)
        low = np.clip(pred_calib[rows, j] - radius, 0.0, config.vault_max_um)
        high = np.clip(pred_calib[rows, j] + radius, 0.0, config.vault_max_um)
        covered[rows] = (low <= calib_y[rows]) & (calib_y[rows] <= high)
    design = LossEstimator.design(calib_x, factual, np.asarray(SIZES_MM)[calib_idx])
    model.loss_estimator, dle_metrics, expected_oof = crossfit_loss_estimator(
        design,
        np.abs(calib_y - factual),
        cohort.loc[is_calib, "patient_id"].astype(str).to_numpy(),
        config,
    )
    metrics |= dle_metrics
    scores = _Scores(chosen >= config.delta)
    if config.margin_from_data:
        # What each calibration eye's own supported sizes bound its vault at the size it got.
        _, _, _, low_c, high_c, _ = model._intervals(calib_x.to_numpy(dtype=float))
        at = np.arange(len(calib_idx))
        inside = (low_c[at, calib_idx] <= calib_y) & (calib_y <= high_c[at, calib_idx])
        scores.arrays = (
            np.abs(calib_y - factual),
            expected_oof,
            inside,
            calib_idx,
            e_calib >= config.delta,
            chosen,
        )
    return model, metrics, covered, scores
