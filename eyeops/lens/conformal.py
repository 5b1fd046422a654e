"""Weighted split conformal per ICL size: the calibration residuals of the eyes that received a
size, weighted by 1 / e_s(x) (Tibshirani et al. 2019, covariate shift from the eyes that got the
size to all eyes), give each eye's (1 − α) radius and P(vault in a range); `leave_one_out_radius`
is the radius each calibration eye would have had from the others (its coverage, out of sample).
Pure functions of arrays; eyeops.lens.model applies them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Calibration:
    """Per size: residuals of calibration eyes that received it, and their weights 1 / e_s(x)."""

    abs_sorted: np.ndarray
    abs_cumw: np.ndarray
    signed_sorted: np.ndarray
    signed_cumw: np.ndarray

    @classmethod
    def build(cls, residuals: np.ndarray, weights: np.ndarray) -> Calibration:
        order = np.argsort(np.abs(residuals))
        signed_order = np.argsort(residuals)
        return cls(
            np.abs(residuals)[order],
            np.cumsum(weights[order]),
            residuals[signed_order],
            np.cumsum(weights[signed_order]),
        )

    @property
    def total(self) -> float:
        return float(self.abs_cumw[-1]) if len(self.abs_cumw) else 0.0

    def radius(self, query_weights: np.ndarray, alpha: float) -> np.ndarray:
        """Weighted (1 − α) quantile of |residual| with the query's own mass at +∞."""
        if len(self.abs_sorted) == 0:
            return np.full(len(query_weights), np.inf)
        need = (1 - alpha) * (self.total + query_weights)
        k = np.searchsorted(self.abs_cumw, need, side="left")
        padded = np.append(self.abs_sorted, np.inf)
        return np.asarray(padded[np.minimum(k, len(self.abs_sorted))])

    def mass_between(self, low: np.ndarray, high: np.ndarray, query_weights: np.ndarray) -> np.ndarray:
        """Weighted share of residuals in [low, high] (the query's own mass counts as outside)."""
        if len(self.signed_sorted) == 0:
            return np.zeros(len(low))
        cum = np.append(0.0, self.signed_cumw)
        upper = cum[np.searchsorted(self.signed_sorted, high, side="right")]
        lower = cum[np.searchsorted(self.signed_sorted, low, side="left")]
        return np.asarray((upper - lower) / (self.total + query_weights))


def leave_one_out_radius(abs_residuals: np.ndarray, weights: np.ndarray, alpha: float) -> np.ndarray:
    """Per calibration eye: the weighted (1 − α) conformal radius from the other eyes, with its own
    weight as the query's mass at +∞ (Calibration.radius without the eye itself), so that whether
    its interval covers its own residual is an out-of-sample question."""
    n = len(abs_residuals)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(abs_residuals, kind="stable")
    ranked, cumw = abs_residuals[order], np.cumsum(weights[order])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    need = (1 - alpha) * cumw[-1]  # (others' total + own mass) = the total
    before = np.searchsorted(cumw, np.full(n, need), side="left")
    # below the eye's own rank nothing moves; from it on the others' cumulative weight is cumw − w
    after = np.searchsorted(cumw, need + weights, side="left")
    k = np.where(before < position, before, np.maximum(after, position + 1))
    padded = np.append(ranked, np.inf)
    return np.asarray(padded[np.minimum(k, n)])
