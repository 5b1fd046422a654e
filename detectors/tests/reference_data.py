"""A small reference file like the one eyeops.monitoring.reference writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ["age_years", "wtw_mm", "acd_mm"]


def covered_probability(wtw_mm: np.ndarray) -> np.ndarray:
    """The synthetic calibration eyes' coverage: good for small eyes, poor above 12 mm WTW."""
    return np.where(wtw_mm > 12.0, 0.65, 0.95)


def write_reference(path: Path, n: int = 600, ocr: bool = True, seed: int = 0, calibration: int = 0) -> Path:
    """`calibration`: that many calibration eyes with covered flags (none: an older reference)."""
    rng = np.random.default_rng(seed)
    features = np.column_stack([rng.normal(35, 8, n), rng.normal(11.7, 0.4, n), rng.normal(3.2, 0.3, n)])
    arrays = {
        "feature_names": np.array(NAMES),
        "features": features,
        "prediction_names": np.array(["vault_um_12.1", "vault_um_12.6", "vault_um_13.2", "vault_um_13.7"]),
        "predictions": rng.normal(500, 150, (n, 4)),
        "recommended": rng.choice([12.1, 12.6, 13.2, 13.7], n, p=[0.2, 0.4, 0.3, 0.1]),
    }
    if ocr:
        arrays |= {
            "ocr_device_kind": np.array(["optical_biometer"] * 200 + ["autorefractor"] * 10),
            "ocr_confidence": rng.beta(20, 1, 210),
            "ocr_review": (rng.random(210) < 0.05).astype(np.int64),
            "ocr_value_names__optical_biometer": np.array(["al_mm", "acd_mm"]),
            "ocr_values__optical_biometer": np.column_stack(
                [rng.normal(24, 1.2, 300), rng.normal(3.2, 0.3, 300)]
            ),
        }
    if calibration:
        eyes = np.column_stack(
            [
                rng.normal(35, 8, calibration),
                rng.normal(11.7, 0.4, calibration),
                rng.normal(3.2, 0.3, calibration),
            ]
        )
        arrays |= {
            "calibration_features": eyes,
            "calibration_covered": rng.random(calibration) < covered_probability(eyes[:, 1]),
        }
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path
