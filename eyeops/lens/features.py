"""The lens model's features: one function builds them for training, evaluation and serving."""

from __future__ import annotations

import pandas as pd

BASE_FEATURES: tuple[str, ...] = (
    "age_years",
    "wtw_mm",
    "acd_mm",
    "al_mm",
    "lt_mm",
    "k1_d",
    "k2_d",
    "cct_um",
    "ata_mm",
    "clr_um",
    "sts_mm",
    "sphere_d",
    "cyl_d",
)
# Derived on demand (the Feast on-demand view calls derive_features too).
DERIVED_FEATURES: tuple[str, ...] = ("km_d", "ata_minus_wtw_mm", "spherical_equivalent_d")
FEATURES: tuple[str, ...] = (*BASE_FEATURES, *DERIVED_FEATURES)
SIZE_FEATURE = "size_mm"


def derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The derived features of every row, from the base features."""
    return pd.DataFrame(
        {
            "km_d": (frame["k1_d"] + frame["k2_d"]) / 2.0,
            "ata_minus_wtw_mm": frame["ata_mm"] - frame["wtw_mm"],
            "spherical_equivalent_d": frame["sphere_d"] + frame["cyl_d"] / 2.0,
        },
        index=frame.index,
    )


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Base plus derived features, float, in FEATURES order. Missing base columns raise KeyError."""
    base = frame[list(BASE_FEATURES)].astype(float)
    return pd.concat([base, derive_features(base)], axis=1)[list(FEATURES)]
