"""Off-policy evaluation from observed data only: the share of eyes a sizing policy would bring into
the target vault range, estimated without the counterfactual outcomes a real cohort never has.

Doubly robust (augmented inverse propensity weighting; Dudík, Langford & Li 2011): per eye,

    ψ_i = q(x_i, π(x_i)) + 1[a_i = π(x_i)] / e(π(x_i) | x_i) · (y_i − q(x_i, a_i))

with q the model's P(vault in range | x, size) (its predicted vault and the weighted calibration
residuals, for every size) and e the model's calibrated propensity, clipped below at `min_propensity`
so a size the surgeons almost never chose cannot dominate. The estimate is the mean of ψ; its 95 %
interval the normal one, mean ± 1.96 · sd(ψ) / √n. It is consistent when either q or e is right,
and it is checked against the true counterfactual rate on simulated cohorts (eyeops.lens.evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd

from eyeops.lens.features import feature_matrix
from eyeops.lens.model import LensModel
from eyeops.lens.sizes import SIZES_MM

MIN_PROPENSITY = 0.05
Z95 = 1.959964


class PolicyEstimate(TypedDict):
    """A PolicyValue as a metrics record carries it (JSON)."""

    estimate: float
    ci_low: float
    ci_high: float
    eyes: int
    matched_share: float


@dataclass(frozen=True)
class PolicyValue:
    """A policy's estimated in-range rate with its 95 % confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    eyes: int
    matched_share: float  # eyes whose observed size is the policy's: the data the correction uses

    def to_dict(self) -> PolicyEstimate:
        return {
            "estimate": round(self.estimate, 4),
            "ci_low": round(self.ci_low, 4),
            "ci_high": round(self.ci_high, 4),
            "eyes": self.eyes,
            "matched_share": round(self.matched_share, 4),
        }


def outcome_probabilities(model: LensModel, frame: pd.DataFrame) -> np.ndarray:
    """q(x, s): P(vault in the target range) for every eye × size, supported or not."""
    x = feature_matrix(frame)
    vault = model.predict_vault(x)
    e = model.propensities(x)
    low, high = model.config.target_um
    q = np.zeros_like(vault)
    for j, size in enumerate(SIZES_MM):
        weights = 1.0 / np.clip(e[:, j], model.config.delta, 1.0)
        q[:, j] = model.calibration[size].mass_between(low - vault[:, j], high - vault[:, j], weights)
    return np.asarray(np.clip(q, 0.0, 1.0), dtype=float)


def policy_value(
    model: LensModel,
    frame: pd.DataFrame,
    policy_sizes: np.ndarray,
    min_propensity: float = MIN_PROPENSITY,
) -> PolicyValue:
    """The doubly robust in-range rate of choosing `policy_sizes` (mm, one per eye of `frame`, whose
    `implanted_size_mm` and `vault_um` are what was observed)."""
    sizes = np.asarray(SIZES_MM)
    rows = np.arange(len(frame))
    chosen = np.searchsorted(sizes, np.asarray(policy_sizes, dtype=float))
    observed = np.searchsorted(sizes, frame["implanted_size_mm"].to_numpy(dtype=float))
    vault = frame["vault_um"].to_numpy(dtype=float)
    low, high = model.config.target_um
    y = ((vault >= low) & (vault <= high)).astype(float)
    q = outcome_probabilities(model, frame)
    e = np.clip(model.propensities(feature_matrix(frame)), min_propensity, 1.0)
    matched = chosen == observed
    psi = q[rows, chosen] + matched / e[rows, chosen] * (y - q[rows, observed])
    mean = float(psi.mean())
    half = Z95 * float(psi.std(ddof=1)) / np.sqrt(len(psi)) if len(psi) > 1 else float("inf")
    return PolicyValue(mean, mean - half, mean + half, len(psi), float(matched.mean()))
