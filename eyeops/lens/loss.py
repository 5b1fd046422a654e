"""Direct loss estimation (as NannyML's DLE): a small LightGBM regressor of |residual| on the
calibration eyes' features, predicted vault and implanted size, and its honest quality by
cross-fitting over patient folds (eyeops.lens.model documents how the lens service uses it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from eyeops.lens.features import FEATURES, SIZE_FEATURE
from eyeops.lens.sizes import SIZES_MM

if TYPE_CHECKING:
    from eyeops.lens.model import LensConfig

DLE_FEATURES: tuple[str, ...] = (*FEATURES, "predicted_vault_um", SIZE_FEATURE)
DLE_FOLDS = 5


def features_array(x: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The FEATURES columns as a float array: a frame's, or an array that already is that."""
    if isinstance(x, pd.DataFrame):
        return x[list(FEATURES)].to_numpy(dtype=float)
    return np.asarray(x, dtype=float)


class LossEstimator:
    """Direct loss estimation: E|residual| given the features, the predicted vault and the size."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    @staticmethod
    def design(x: pd.DataFrame | np.ndarray, vault: np.ndarray, size_mm: np.ndarray) -> np.ndarray:
        """Features (a frame, or its FEATURES columns as an array), the predicted vault, the size."""
        return np.column_stack([features_array(x), vault, size_mm])

    @classmethod
    def fit(cls, design: np.ndarray, abs_residuals: np.ndarray, config: LensConfig) -> LossEstimator:
        import lightgbm as lgb

        params = {**config.dle_params, "seed": config.seed, "num_threads": 1}
        data = lgb.Dataset(design, label=abs_residuals, feature_name=list(DLE_FEATURES))
        return cls(lgb.train(params, data, num_boost_round=config.dle_rounds))

    def predict_design(self, design: np.ndarray) -> np.ndarray:
        n = len(design)
        out = self.booster.predict(design, num_threads=1 if n < 256 else 0)
        return np.asarray(np.clip(np.asarray(out, dtype=float), 1.0, None))  # an L2 fit can dip below 0

    def predict(self, x: pd.DataFrame | np.ndarray, vault: np.ndarray) -> np.ndarray:
        """Expected |residual| for every eye × size (one call on a block, as predict_vault)."""
        n = len(x)
        arr = features_array(x)  # once: selecting columns is pandas' cost
        block = np.vstack([self.design(arr, vault[:, j], np.full(n, s)) for j, s in enumerate(SIZES_MM)])
        return self.predict_design(block).reshape(len(SIZES_MM), n).T


def crossfit_loss_estimator(
    design: np.ndarray, abs_residuals: np.ndarray, groups: np.ndarray, config: LensConfig
) -> tuple[LossEstimator, dict[str, float], np.ndarray]:
    """The served estimator (all calibration eyes), its honest quality, and the out-of-fold
    predictions it rests on (DLE_FOLDS patient folds, so no eye's own residual informs its estimate;
    the bounds for unsupported sizes are calibrated on them)."""
    unique = np.unique(groups)
    fold_of = np.random.default_rng(config.seed + 7).permutation(len(unique)) % DLE_FOLDS
    fold = fold_of[np.searchsorted(unique, groups)]
    oof = np.zeros(len(abs_residuals))
    for k in range(DLE_FOLDS):
        held = fold == k
        if held.any() and (~held).any():
            oof[held] = LossEstimator.fit(design[~held], abs_residuals[~held], config).predict_design(
                design[held]
            )
    top = oof >= np.quantile(oof, 0.8)
    bottom = oof <= np.quantile(oof, 0.2)
    metrics = {
        # ≈ 1 when the estimator is calibrated in the mean
        "dle_crossfit_expected_over_realized": float(oof.mean() / max(abs_residuals.mean(), 1e-9)),
        # realized MAE of the eyes it expects most and least of: the spread it can tell apart
        "dle_crossfit_top_quintile_mae_um": float(abs_residuals[top].mean()),
        "dle_crossfit_bottom_quintile_mae_um": float(abs_residuals[bottom].mean()),
    }
    return LossEstimator.fit(design, abs_residuals, config), metrics, np.clip(oof, 1.0, None)
