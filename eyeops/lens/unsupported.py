"""Bounds for sizes the data do not support for an eye, from the eyes that show them (issue 29).

The one place a cohort shows the truth at a size unsupported for an eye is an eye that was implanted
with it anyway. With cross-fitting (`LensConfig.margin_folds`) every such eye of the cohort is scored
by models fitted without it. For each size j, those eyes give two checks, both conformal:

- **the per-step gain** (published ICL size effects, `step_gain_um_per_mm`) is an assumption; an eye
  whose vault falls outside the monotone and per-step bounds built from its supported sizes shows it
  wrong for that eye. More such eyes than the training-conditional order statistic allows (Vovk,
  ACML 2012) refuse the per-step bounds: monotone bounds only;
- **a band scaled to the eye**: its score is |y − f_j| / σ̂_j, σ̂ being the direct loss
  estimator's expected |residual| at that size (out of fold), and ∞ for an eye outside the per-step
  bounds. Normalized scores follow noise that grows with the vault (Lei et al., JASA 2018, §5.2).

The eyes implanted with j where it was unsupported are not the eyes j is asked about: they are the
ones whose measurements made j likelier. The band is therefore the **weighted** conformal quantile
(Tibshirani et al., NeurIPS 2019) with each eye weighted by its odds of not getting j,
(1 − e_j)/e_j, the density ratio from the eyes implanted with j to the eyes asked about j; the new
eye's own weight enters too, so an eye far from every calibration eye gets no band (the quantile is
∞) and keeps the per-step bounds. Eyes whose propensity is below `floor` (propensities that small are
not estimated, and such weights would let one eye decide) take no part, and such an eye is given no
band (overlap trimming, Crump et al., Biometrika 2009). Estimated propensities are not the true ones,
and surgeons may choose on what the cohort does not record: the quantile is the worst case when the
true odds lie within a factor `gamma` of the estimated ones either way (the marginal sensitivity
model; robust weighted conformal inference as in Jin, Ren & Candès, PNAS 2023).

So a size ends one of three ways, each stated in the answer: a band per eye (or, for an eye too
unlike the eyes implanted with it, the per-step bounds), the per-step bounds refused (monotone
bounds only), or too few eyes to tell (the per-step bounds as published, unchecked). Models fitted
with one scale per size (kind "scaled") keep answering with it.
Pure functions of arrays; `eyeops.lens.model.LensModel` applies them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eyeops.lens.bounds import _conformal_rank, _eyes_needed
from eyeops.lens.sizes import SIZES_MM

KIND = "weighted"  # the manifest's `unsupported_bounds.kind`; "scaled": one scale per size, fitted before


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


def weighted_margins(
    abs_residual: np.ndarray,
    scale: np.ndarray,
    inside_steps: np.ndarray,
    size_idx: np.ndarray,
    supported: np.ndarray,
    propensity: np.ndarray,
    alpha: float,
    min_eyes: int,
    step_gain: tuple[float, float],
    confidence: float | None,
    floor: float,
) -> list[dict[str, Any]]:
    """`scaled_margins`' per-step check, and in place of its one scale a table per checked size for
    `eye_scales`: the finite scores of the eyes implanted with it where it was unsupported, whose
    `propensity` of that size is at least `floor`, sorted (`scores`, rounded up), their weights
    (1 − e)/e (`weights`), the weight of those among them outside the per-step bounds
    (`outside_weight`), `band_eyes` and Kish's effective number of eyes."""
    entries = scaled_margins(
        abs_residual, scale, inside_steps, size_idx, supported, alpha, min_eyes, step_gain, confidence
    )
    out = []
    for j, entry in enumerate(entries):
        entry = {k: v for k, v in entry.items() if k != "scale"}
        if entry["steps"] == "checked":
            rows = (size_idx == j) & ~supported[:, j] & (propensity >= floor)
            weight = (1.0 - propensity[rows]) / propensity[rows]
            held = inside_steps[rows]
            score = abs_residual[rows][held] / scale[rows][held]
            order = np.argsort(score)
            entry |= {
                "band_eyes": int(rows.sum()),
                "effective_eyes": round(float(weight.sum() ** 2 / max(float((weight**2).sum()), 1e-300)), 1),
                "scores": [math.ceil(v * 1e4) / 1e4 for v in score[order].tolist()],
                "weights": [float(f"{v:.6g}") for v in weight[held][order].tolist()],
                "outside_weight": float(f"{float(weight[~held].sum()):.6g}"),
            }
        out.append(entry)
    return out


def eye_scales(
    propensity: np.ndarray, entries: list[dict[str, Any]], alpha: float, gamma: float, floor: float
) -> np.ndarray:
    """Per eye (rows of `propensity`, eyes × sizes) and size: the band's scale q, the smallest
    calibration score s_k with A_k / (A_k + B_k + Γ·w) ≥ 1 − α, where A_k is the weight at or below
    s_k taken at its lowest (w_i / Γ), B_k the weight above it and outside the per-step bounds at its
    highest (Γ·w_i) and w = (1 − e)/e the eye's own (the worst case of the marginal sensitivity
    model); ∞ where none is, where the eye's propensity is below `floor`, or the size has no table."""
    n = propensity.shape[0]
    out = np.full((n, len(entries)), np.inf)
    for j, entry in enumerate(entries):
        if "scores" not in entry or not entry["scores"]:
            continue
        scores = np.asarray(entry["scores"], dtype=float)
        weights = np.asarray(entry["weights"], dtype=float)
        below = np.cumsum(weights / gamma)
        above = gamma * (np.cumsum(weights[::-1])[::-1] - weights + float(entry["outside_weight"]))
        reach = alpha * below - (1.0 - alpha) * above  # increasing in k
        e = np.clip(propensity[:, j], 1e-12, 1.0)
        own = gamma * (1.0 - e) / e
        k = np.searchsorted(reach, (1.0 - alpha) * own, side="left")
        q = scores[np.minimum(k, len(scores) - 1)]
        out[:, j] = np.where((k < len(scores)) & (propensity[:, j] >= floor), q, np.inf)
    return out


def scaled_bounds(
    vault: np.ndarray,
    sigma: np.ndarray,
    supported: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    scales: np.ndarray,
    vault_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsupported sizes with a scale (per size, or per eye and size): the bounds given intersected
    with vault ± scale · sigma; where the two would not meet, the bounds given are kept. Supported
    sizes are left as they are. Also returns where a band was applied."""
    scales = np.broadcast_to(scales, vault.shape)
    lo, hi = lower.copy(), upper.copy()
    band = np.zeros(vault.shape, dtype=bool)
    for j in range(vault.shape[1]):
        unsupported = ~supported[:, j] & np.isfinite(scales[:, j])
        if not unsupported.any():
            continue
        reach = np.where(unsupported, scales[:, j], 0.0) * sigma[:, j]
        tight_lo = np.maximum(lower[:, j], np.clip(vault[:, j] - reach, 0.0, vault_max))
        tight_hi = np.minimum(upper[:, j], np.clip(vault[:, j] + reach, 0.0, vault_max))
        keep = unsupported & (tight_lo <= tight_hi)
        lo[keep, j], hi[keep, j] = tight_lo[keep], tight_hi[keep]
        band[:, j] = keep
    return lo, hi, band


def scales_of(entries: list[dict[str, Any]]) -> np.ndarray:
    """Per size: q_j, or inf where there is no band."""
    return np.array([np.inf if e.get("scale") is None else float(e["scale"]) for e in entries])


def steps_of(entries: list[dict[str, Any]]) -> np.ndarray:
    """Per size: whether the per-step gain bounds apply (all but the refused)."""
    return np.array([e.get("steps") != "refused" for e in entries])


def assumption(entry: dict[str, Any], step_gain: tuple[float, float], band: bool = True) -> str:
    """What one size's bounds assume, as the answer says it; `band` False: for an eye that the
    size's weighted band does not reach."""
    g_min, g_max = step_gain
    steps = f"; vault gain {g_min:g}–{g_max:g} µm per mm of size"
    if entry.get("scale") is not None:
        return (
            f"monotone treatment response{steps} (checked on {entry['eyes']} eyes); the vault within"
            f" {float(entry['scale']):g} × the expected error of the model at this size"
        )
    if entry.get("scores"):
        checked = f"monotone treatment response{steps} (checked on {entry['eyes']} eyes)"
        if band:
            return (
                f"{checked}; the vault within a band × the expected error of the model at this size,"
                f" from {entry['band_eyes']} eyes implanted with it where it was unsupported, weighted"
                " to this eye"
            )
        return (
            f"{checked}; no tighter bound: this eye is too unlike the {entry['band_eyes']} eyes"
            " implanted with this size where it was unsupported for a band from them"
        )
    if entry.get("steps") == "refused":
        return f"monotone treatment response; no tighter bound: {entry['why']}"
    if entry.get("steps") == "checked":
        return (
            f"monotone treatment response{steps} (checked on {entry['eyes']} eyes); no tighter bound:"
            " no eye implanted with it where it was unsupported is like the eyes it is asked about"
        )
    return f"monotone treatment response{steps} (published, unchecked here); no tighter bound: {entry['why']}"
