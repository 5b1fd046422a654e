"""ICL sizes and the manufacturer-style nomogram (Sanders et al., Ophthalmology 2003)."""

from __future__ import annotations

import numpy as np

SIZES_MM: tuple[float, ...] = (12.1, 12.6, 13.2, 13.7)
TARGET_VAULT_UM = (250.0, 750.0)


def size_column(size: float) -> str:
    """Name of the counterfactual outcome column for `size` (e.g. ``vault_um_12.6``)."""
    return f"vault_um_{size:.1f}"


def nomogram_size(wtw_mm: np.ndarray, acd_mm: np.ndarray) -> np.ndarray:
    """Sanders 2003: ACD 2.8–3.5 mm → WTW + 0.5; ACD > 3.5 → WTW + 1.0. Between sizes, round
    down when ACD ≤ 3.5 and up otherwise; below 12.1 or above 13.7 take the nearest end.
    (Eyes with ACD < 2.8 are not candidates; the function still answers for them.)"""
    wtw = np.asarray(wtw_mm, dtype=float)
    acd = np.asarray(acd_mm, dtype=float)
    return round_to_size(wtw + nomogram_offset(acd), round_up=acd > 3.5)


def nomogram_offset(acd_mm: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(acd_mm, dtype=float) > 3.5, 1.0, 0.5)


def round_to_size(target_mm: np.ndarray, round_up: np.ndarray) -> np.ndarray:
    """The available size at or below (or, where `round_up`, at or above) each target."""
    target = np.asarray(target_mm, dtype=float)
    sizes = np.array(SIZES_MM)
    below = np.searchsorted(sizes, target + 1e-9, side="right") - 1  # largest size <= target
    above = np.searchsorted(sizes, target - 1e-9, side="left")  # smallest size >= target
    pick = np.where(round_up, above, below)
    return np.asarray(sizes[np.clip(pick, 0, len(sizes) - 1)])
