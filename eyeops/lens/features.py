"""The lens model's features: one function builds them for training, evaluation and serving."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from eyeops.errors import EyeopsError, InvalidRequest

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

PLAUSIBLE: dict[str, tuple[float, float]] = {
    "age_years": (18, 60),
    "wtw_mm": (10.0, 13.5),
    "acd_mm": (2.0, 4.5),
    "al_mm": (20.0, 32.0),
    "lt_mm": (2.5, 6.0),
    "k1_d": (38.0, 52.0),
    "k2_d": (38.0, 52.0),
    "cct_um": (400, 700),
    "ata_mm": (10.0, 14.0),
    "clr_um": (-400, 900),
    "sts_mm": (10.0, 14.0),
    "sphere_d": (-25.0, 10.0),
    "cyl_d": (-8.0, 0.0),
    "vault_um": (0, 2000),  # outcome, checked in cohort files only
}


class MissingFeatures(EyeopsError):
    """An eye lacks features the model needs; never imputed silently. HTTP 422."""

    status_code = 422


class ImplausibleFeatures(EyeopsError):
    """A biometry value outside the range the lens takes: a misread or a unit slip, or an eye outside
    the model's domain (a device may measure more than the model learnt from: autorefractors accept
    spheres up to +15 D, the lens stops at +10). HTTP 422."""

    status_code = 422


def frame_from_instances(instances: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Validated base features of each instance: 400 for wrong types or NaN, 422 for missing or
    implausible values (each named with its range)."""
    return frame_from_rows(rows_from_instances(instances))


def frame_from_rows(rows: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    """Rows of base features (from rows_from_instances) as the frame the model takes."""
    return pd.DataFrame(rows, columns=list(BASE_FEATURES))


def base_array(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Rows of base features as a float array (eyes × BASE_FEATURES): what `LensModel.predict_base`
    takes, without building a DataFrame for a request of a few eyes."""
    return np.array([[row[name] for name in BASE_FEATURES] for row in rows], dtype=float).reshape(
        len(rows), len(BASE_FEATURES)
    )


def rows_from_instances(instances: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """frame_from_instances's checks, answered as plain rows (a server batches rows of many
    requests into one frame)."""
    if not instances:
        raise InvalidRequest("no instances; send one object of base features per eye")
    rows: list[dict[str, float]] = []
    for n, instance in enumerate(instances):
        if not isinstance(instance, Mapping):
            raise InvalidRequest(f"instance {n} is {type(instance).__name__}, not an object of features")
        missing = [f for f in BASE_FEATURES if instance.get(f) is None]
        if missing:
            raise MissingFeatures(
                f"instance {n} lacks {', '.join(missing)}; the model needs {', '.join(BASE_FEATURES)}"
            )
        row = {}
        for name in BASE_FEATURES:
            value = instance[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(f"instance {n}: {name} must be a number, got {type(value).__name__}")
            if math.isnan(value) or math.isinf(value):
                raise InvalidRequest(f"instance {n}: {name} is {value}; send a finite number")
            low, high = PLAUSIBLE[name]
            if not low <= value <= high:
                # which side, never the value: a measurement is patient data (issue 28, item 10)
                side = "below" if value < low else "above"
                raise ImplausibleFeatures(
                    f"instance {n}: {name} is {side} the range the lens takes ({low}–{high}): check the"
                    " reading; a value measured right there lies outside what the model learnt from, and"
                    " it makes no prediction for it"
                )
            row[name] = float(value)
        rows.append(row)
    return rows


def _derived(column: Any) -> dict[str, Any]:
    """The derived features' one definition, over columns of anything with arithmetic (pandas
    Series, numpy arrays) given by `column(name)`."""
    return {
        "km_d": (column("k1_d") + column("k2_d")) / 2.0,
        "ata_minus_wtw_mm": column("ata_mm") - column("wtw_mm"),
        "spherical_equivalent_d": column("sphere_d") + column("cyl_d") / 2.0,
    }


def derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The derived features of every row, from the base features."""
    return pd.DataFrame(_derived(frame.__getitem__), index=frame.index)


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Base plus derived features, float, in FEATURES order. Missing base columns raise KeyError."""
    return pd.DataFrame(feature_array(frame), columns=list(FEATURES), index=frame.index)


def feature_array(frame: pd.DataFrame) -> np.ndarray:
    """`feature_matrix(frame)` as a float array (eyes × FEATURES), without pandas' per-column
    costs: what a request for a few eyes spends most of its answer on otherwise."""
    return features_from_base(frame[list(BASE_FEATURES)].to_numpy(dtype=float))


def features_from_base(base: np.ndarray) -> np.ndarray:
    """Base features (eyes × BASE_FEATURES) with the derived ones after them (eyes × FEATURES)."""
    index = {name: i for i, name in enumerate(BASE_FEATURES)}
    derived = _derived(lambda name: base[:, index[name]])
    return np.column_stack([base, *(derived[name] for name in DERIVED_FEATURES)])
