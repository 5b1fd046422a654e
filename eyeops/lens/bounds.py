"""Bounds of the vault for the sizes the data do not support for an eye, and the recommendation.

- `response_bounds`: monotone treatment response with a bounded gain per size step, from the
  supported sizes' intervals (Manski 1997; the step's range from published ICL size effects).
- `anchored_bounds` and `gain_margins`: the model's prediction ± a supported size's wide radius ±
  a margin per mm of size, the margin estimated from calibration eyes implanted with a size
  unsupported for them (a training-conditional conformal order statistic), or none, with why.
- `eyeops.lens.unsupported`: the rule from data that replaced the margin for models fitted since.
- `recommend`: the supported size with the highest P(in range); ties go to the vault nearest 500.

Pure functions of arrays; `eyeops.lens.model.LensModel` applies them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eyeops.lens.sizes import SIZES_MM

TIE_TOLERANCE = 0.005


def response_bounds(
    lower: np.ndarray,
    upper: np.ndarray,
    supported: np.ndarray,
    vault_max: float,
    gain_per_mm: tuple[float, float] = (0.0, float("inf")),
    steps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace unsupported sizes' intervals with bounds implied by every supported size's interval:
    from a smaller supported size i, vault_j ∈ [lower_i + g_min·d, upper_i + g_max·d]; from a larger
    one k, vault_j ∈ [lower_k − g_max·d, upper_k − g_min·d] (d: the size difference in mm). The
    bound is the intersection, within [0, vault_max]; with (0, inf) it is the plain monotone bound,
    which an eye whose limits contradict each other falls back to. `steps`: per size, whether the
    gain per step applies to it (default: to every size); a size without it gets the plain bound."""
    sizes = np.asarray(SIZES_MM, dtype=float)
    lo, hi = lower.copy(), upper.copy()
    n, k = lower.shape
    for j in range(k):
        unsupported = ~supported[:, j]
        if not unsupported.any():
            continue
        g_min, g_max = gain_per_mm if steps is None or steps[j] else (0.0, float("inf"))
        tight_lo, tight_hi = np.zeros(n), np.full(n, vault_max)
        plain_lo, plain_hi = np.zeros(n), np.full(n, vault_max)
        for i in range(k):
            if i == j:
                continue
            d, s_i = abs(sizes[j] - sizes[i]), supported[:, i]
            if i < j:
                step_lo, step_hi, mono_lo, mono_hi = (
                    lower[:, i] + g_min * d,
                    upper[:, i] + g_max * d,
                    lower[:, i],
                    None,
                )
            else:
                step_lo, step_hi, mono_lo, mono_hi = (
                    lower[:, i] - g_max * d,
                    upper[:, i] - g_min * d,
                    None,
                    upper[:, i],
                )
            tight_lo = np.where(s_i, np.maximum(tight_lo, step_lo), tight_lo)
            tight_hi = np.where(s_i, np.minimum(tight_hi, step_hi), tight_hi)
            if mono_lo is not None:
                plain_lo = np.where(s_i, np.maximum(plain_lo, mono_lo), plain_lo)
            if mono_hi is not None:
                plain_hi = np.where(s_i, np.minimum(plain_hi, mono_hi), plain_hi)
        tight_lo, tight_hi = np.clip(tight_lo, 0.0, vault_max), np.clip(tight_hi, 0.0, vault_max)
        contradicted = tight_lo > tight_hi
        lo[unsupported, j] = np.where(contradicted, plain_lo, tight_lo)[unsupported]
        hi[unsupported, j] = np.where(contradicted, plain_hi, tight_hi)[unsupported]
    return lo, hi


def anchored_bounds(
    vault: np.ndarray,
    wide_radius: np.ndarray,
    supported: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    margin_per_mm: float | np.ndarray,
    vault_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Tighten unsupported sizes' bounds with each supported size i as an anchor: the truth at j is
    f_j ± (R_i + margin_j · |s_j − s_i|), R_i being i's wide (1 − bound_alpha) conformal radius,
    since the residual at j is i's residual plus the error of the model's gain between the two
    sizes. `margin_per_mm`: one for every size, or one per size (inf: that size is not anchored).
    Intersected with the bounds given (monotone and per-step gain); where they would cross, the
    bounds given are kept."""
    sizes = np.asarray(SIZES_MM, dtype=float)
    lo, hi = lower.copy(), upper.copy()
    n, k = vault.shape
    margins = np.broadcast_to(np.asarray(margin_per_mm, dtype=float), (k,))
    for j in range(k):
        unsupported = ~supported[:, j]
        if not unsupported.any() or not np.isfinite(margins[j]):
            continue
        reach = np.full(n, np.inf)
        for i in range(k):
            if i != j:
                spread = wide_radius[:, i] + margins[j] * abs(sizes[j] - sizes[i])
                reach = np.where(supported[:, i], np.minimum(reach, spread), reach)
        tight_lo = np.maximum(lower[:, j], np.clip(vault[:, j] - reach, 0.0, vault_max))
        tight_hi = np.minimum(upper[:, j], np.clip(vault[:, j] + reach, 0.0, vault_max))
        keep = unsupported & (tight_lo <= tight_hi)
        lo[keep, j], hi[keep, j] = tight_lo[keep], tight_hi[keep]
    return lo, hi


def anchored_assumptions(
    margins: np.ndarray, why: list[str | None], step_gain: tuple[float, float]
) -> tuple[str, list[str]]:
    """What anchored bounds assume: for every size together, and per size."""
    g_min, g_max = step_gain
    assumes = "monotone treatment response" + (
        f"; vault gain {g_min:g}–{g_max:g} µm per mm of size" if np.isfinite(g_max) or g_min > 0 else ""
    )
    by_size = [
        assumes
        + (
            f"; the model's gain to this size off by at most {m:g} µm per mm"
            if np.isfinite(m)
            else (f"; no tighter bound: {reason}" if reason else "")
        )
        for m, reason in zip(margins, why, strict=True)
    ]
    if np.isfinite(margins).all() and len(set(margins.tolist())) == 1:
        assumes += f"; the model's gain between sizes off by at most {margins[0]:g} µm per mm"
    elif np.isfinite(margins).any():
        assumes += "; the model's gain between sizes off by at most a margin per size (estimated)"
    return assumes, by_size


def gain_margins(
    abs_residual: np.ndarray,
    size_idx: np.ndarray,
    supported: np.ndarray,
    wide_radius: np.ndarray,
    alpha: float,
    min_eyes: int,
    max_gain: float,
    confidence: float | None = None,
) -> list[dict[str, Any]]:
    """Per size j, from calibration eyes implanted with j where j was unsupported for them (their
    `abs_residual` |y − f_j|, the `wide_radius` of every size at their features, `supported` at
    their features): the margin each eye needs for the anchored bound to hold it, max over its
    supported anchors i of (|r| − R_i) / |s_j − s_i| (at least 0), and the split-conformal
    (1 − α) quantile of those, the ⌈(n + 1)(1 − α)⌉-th smallest (Vovk et al. 2005; Lei et al.,
    JASA 2018): for a new eye exchangeable with them, the bound holds with probability ≥ 1 − α.
    None where it cannot be estimated, with the reason."""
    sizes = np.asarray(SIZES_MM, dtype=float)
    out: list[dict[str, Any]] = []
    for j, size in enumerate(SIZES_MM):
        rows = (size_idx == j) & ~supported[:, j]
        n = int(rows.sum())
        rank = _conformal_rank(n, alpha, confidence)
        if n < min_eyes or rank > n:
            out.append(
                {
                    "size_mm": size,
                    "margin_um_per_mm": None,
                    "eyes": n,
                    "why": f"{n} eyes were implanted with {size:g} mm where it was unsupported for them;"
                    f" at least {_eyes_needed(alpha, confidence, min_eyes)} are needed to"
                    " estimate how far the model's gain to it can be off",
                }
            )
            continue
        need = np.zeros(n)
        for i in range(len(SIZES_MM)):
            if i == j:
                continue
            excess = (abs_residual[rows] - wide_radius[rows, i]) / abs(sizes[j] - sizes[i])
            need = np.where(supported[rows, i], np.maximum(need, excess), need)
        margin = float(np.ceil(np.sort(need)[rank - 1]))
        if margin >= max_gain:
            out.append(
                {
                    "size_mm": size,
                    "margin_um_per_mm": None,
                    "eyes": n,
                    "why": f"the gain error estimated on {n} eyes ({margin:.0f} µm/mm) is beyond the"
                    f" published size effects (at most {max_gain:g} µm per mm)",
                }
            )
            continue
        out.append({"size_mm": size, "margin_um_per_mm": margin, "eyes": n, "why": None})
    return out


def _conformal_rank(n: int, alpha: float, confidence: float | None) -> int:
    """The order statistic (1-based) whose bound covers 1 − α: marginally ⌈(n + 1)(1 − α)⌉; with a
    `confidence`, the smallest r with P(Beta(r, n + 1 − r) ≥ 1 − α) ≥ confidence (n + 1 if none)."""
    marginal = int(np.ceil((n + 1) * (1 - alpha)))
    if confidence is None or n == 0:
        return marginal
    # P(Beta(r, n + 1 − r) ≥ 1 − α) = P(Binomial(n, 1 − α) ≤ r − 1)
    p = 1 - alpha
    if n > EXACT_RANK_UP_TO:
        return _conformal_rank_scipy(n, p, marginal, confidence)
    below = 0.0
    for k in range(n + 1):
        if k >= max(marginal, 1) and below >= confidence:
            return k
        below += math.comb(n, k) * p**k * (1 - p) ** (n - k)
    return n + 1  # no order statistic of n eyes is enough


# Up to here the binomial sum is exact in floats (C(1000, 500) ≈ 2.7e299 still fits a double);
# beyond, C(n, k) overflows (a 10⁶-eye cohort failed to train with OverflowError) and SciPy's
# binomial quantile answers instead.
EXACT_RANK_UP_TO = 1000


def _conformal_rank_scipy(n: int, p: float, marginal: int, confidence: float) -> int:
    """`_conformal_rank` for large n: the smallest r ≥ max(marginal, 1) with
    P(Binomial(n, p) ≤ r − 1) ≥ confidence, or n + 1."""
    from scipy.stats import binom  # type: ignore[import-untyped]

    r = max(int(binom.ppf(confidence, n, p)) + 1, marginal, 1)
    return r if r <= n else n + 1


def _eyes_needed(alpha: float, confidence: float | None, min_eyes: int) -> int:
    """The fewest eyes for which `_conformal_rank` names an order statistic that exists."""
    n = 1
    while _conformal_rank(n, alpha, confidence) > n and n < 100_000:
        n += 1
    return max(min_eyes, n)


def monotone_bounds(
    lower: np.ndarray, upper: np.ndarray, supported: np.ndarray, vault_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Plain monotone-treatment-response bounds (no limit on the gain per size step)."""
    return response_bounds(lower, upper, supported, vault_max)


def recommend(vault: np.ndarray, p_in: np.ndarray, supported: np.ndarray) -> np.ndarray:
    """Supported size with the highest P(in range); ties go to the vault nearest 500 µm."""
    score = np.where(supported, np.nan_to_num(p_in, nan=-1.0), -np.inf)
    best = score.max(axis=1, keepdims=True)
    tied = supported & (score >= best - TIE_TOLERANCE)
    distance = np.where(tied, np.abs(vault - 500.0), np.inf)
    return np.asarray(np.array(SIZES_MM)[distance.argmin(axis=1)])
