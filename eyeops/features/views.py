"""Which cohort columns live in which Feast feature view, and from which device kind they come.

Shared by the feature repository's definitions, the code that builds offline data, the OCR
service's push after an accepted exam, and the lens transformer's online lookups.
"""

from __future__ import annotations

from typing import Literal

FeastType = Literal["float", "int", "string"]

# view name → (device kind that measures it, {column: type})
VIEWS: dict[str, tuple[str, dict[str, FeastType]]] = {
    "biometry": (
        "optical_biometer",
        {
            "wtw_mm": "float",
            "acd_mm": "float",
            "al_mm": "float",
            "lt_mm": "float",
            "k1_d": "float",
            "k2_d": "float",
            "cct_um": "int",
        },
    ),
    "anterior_segment": ("anterior_segment_oct", {"ata_mm": "float", "clr_um": "int", "sts_mm": "float"}),
    "refraction": ("autorefractor", {"sphere_d": "float", "cyl_d": "float"}),
    "demographics": ("registry", {"age_years": "int", "sex": "string"}),
}
ON_DEMAND_VIEW = "derived"
FEATURE_SERVICE = "lens_v1"
ENTITY = "eye"
JOIN_KEY = "eye_id"
TTL_DAYS = 730  # biometry older than two years is flagged as stale by the lens service


def push_source_name(view: str) -> str:
    return f"{view}_push"


def view_of_column(column: str) -> str:
    for view, (_, columns) in VIEWS.items():
        if column in columns:
            return view
    raise KeyError(column)
