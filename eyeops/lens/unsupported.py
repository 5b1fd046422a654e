"""Bounds for sizes the data do not support for an eye, from the eyes that show them (issue 29).

The one place a cohort shows the truth at a size unsupported for an eye is a calibration eye that was
implanted with it anyway. For each size j, those eyes give two checks, both conformal:

- **the per-step gain** (published ICL size effects, `step_gain_um_per_mm`) is an assumption; an eye
  whose vault falls outside the monotone and per-step bounds built from its supported sizes shows it
  wrong for that eye;
- **a band scaled to the eye**: its score is |y − f_j| / σ̂_j, σ̂ being the direct loss estimator's
  expected |residual| at that size (cross-fitted: out of fold for the calibration eyes), and ∞ for an
  eye outside the per-step bounds. The bound at j is the intersection of the per-step bounds with
  f_j ± q_j · σ̂_j(x), q_j the training-conditional (1 − α) order statistic of the scores (Vovk, ACML
  2012: with probability `confidence` over the calibration draw, it covers ≥ 1 − α of new eyes like
  them). Normalized scores follow noise that grows with the vault (Lei et al., JASA 2018, §5.2).

So a size ends one of three ways, each stated in the answer: a band (`scale`), the per-step bounds
refused (more eyes outside them than the order statistic allows: monotone bounds only), or too few
eyes to tell (the per-step bounds as published, unchecked).
Pure functions of arrays; `eyeops.lens.model.LensModel` applies them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eyeops.lens.bounds import _conformal_rank, _eyes_needed
from eyeops.lens.sizes import SIZES_MM

KIND = "scaled"  # the manifest's `unsupported_bounds.kind`


def scaled_margins(
    abs_residual: np.ndarray,
    scale: np.ndarray,
    inside_steps: np.ndarray,
    size_idx: np.ndarray,
    supported: np.ndarray,
    alpha: float,
    min_eyes: int,
    step_gain: tuple[float, float],
    confidence: float | None,
) -> list[dict[str, Any]]:
    """Per size j, from calibration eyes implanted with j where j was unsupported for them:
    `abs_residual` |y − f_j|, `scale` σ̂_j at their features (out of fold), `inside_steps` whether y
    lay within the monotone and per-step bounds their supported sizes give. Each entry: `scale` (q_j,
    or None), `eyes`, `outside_steps` (eyes outside the per-step bounds), `steps` ("checked",
    "refused" or "unchecked") and `why` (None where a band holds)."""
    g_min, g_max = step_gain
    out: list[dict[str, Any]] = []
    for j, size in enumerate(SIZES_MM):
        rows = (size_idx == j) & ~supported[:, j]
        n = int(rows.sum())
        outside = int((~inside_steps[rows]).sum())
        rank = _conformal_rank(n, alpha, confidence)
        entry: dict[str, Any] = {"size_mm": size, "scale": None, "eyes": n, "outside_steps": outside}
        if n < min_eyes or rank > n:
            needed = _eyes_needed(alpha, confidence, min_eyes)
            entry |= {
                "steps": "unchecked",
                "why": f"{n} eyes were implanted with {size:g} mm where it was unsupported for them;"
                f" at least {needed} are needed to check the bounds at this size",
            }
        elif outside > n - rank:
            entry |= {
                "steps": "refused",
                "why": f"{outside} of {n} eyes implanted with {size:g} mm where it was unsupported for"
                f" them fell outside the published gain of {g_min:g}–{g_max:g} µm per mm of size:"
                " monotone bounds only",
            }
        else:
            score = np.where(inside_steps[rows], abs_residual[rows] / scale[rows], np.inf)
            q = float(np.sort(score)[rank - 1])
            # rounded up, never down: a narrower band than the order statistic would claim too much
            entry |= {"scale": math.ceil(q * 1e4) / 1e4, "steps": "checked", "why": None}
        out.append(entry)
    return out


def scaled_bounds(
    vault: np.ndarray,
    sigma: np.ndarray,
    supported: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    scales: np.ndarray,
    vault_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Unsupported sizes with a scale: the bounds given intersected with vault ± scale · sigma; where
    the two would not meet, the bounds given are kept. Supported sizes are left as they are."""
    lo, hi = lower.copy(), upper.copy()
    for j in range(vault.shape[1]):
        unsupported = ~supported[:, j]
        if not unsupported.any() or not np.isfinite(scales[j]):
            continue
        reach = scales[j] * sigma[:, j]
        tight_lo = np.maximum(lower[:, j], np.clip(vault[:, j] - reach, 0.0, vault_max))
        tight_hi = np.minimum(upper[:, j], np.clip(vault[:, j] + reach, 0.0, vault_max))
        keep = unsupported & (tight_lo <= tight_hi)
        lo[keep, j], hi[keep, j] = tight_lo[keep], tight_hi[keep]
    return lo, hi


def scales_of(entries: list[dict[str, Any]]) -> np.ndarray:
    """Per size: q_j, or inf where there is no band."""
    return np.array([np.inf if e.get("scale") is None else float(e["scale"]) for e in entries])


def steps_of(entries: list[dict[str, Any]]) -> np.ndarray:
    """Per size: whether the per-step gain bounds apply (all but the refused)."""
    return np.array([e.get("steps") != "refused" for e in entries])


def assumption(entry: dict[str, Any], step_gain: tuple[float, float]) -> str:
    """What one size's bounds assume, as the answer says it."""
    g_min, g_max = step_gain
    steps = f"; vault gain {g_min:g}–{g_max:g} µm per mm of size"
    if entry.get("scale") is not None:
        return (
            f"monotone treatment response{steps} (checked on {entry['eyes']} eyes); the vault within"
            f" {float(entry['scale']):g} × the expected error of the model at this size"
        )
    if entry.get("steps") == "refused":
        return f"monotone treatment response; no tighter bound: {entry['why']}"
    return f"monotone treatment response{steps} (published, unchecked here); no tighter bound: {entry['why']}"
