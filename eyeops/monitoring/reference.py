"""Reference data for the drift detectors: what the services saw and answered on training data.

The reference is one `.npz` file, the contract between this environment and the detectors'
(`detectors/`, numpy<2): plain arrays, no pickles.

- `feature_names` (k,), `features` (n, k): the lens predictor's inputs (its base features)
- `prediction_names` (4,), `predictions` (n, 4): predicted vault per ICL size, µm
- `recommended` (n,): recommended size, mm
- optional `training_mae_um` (scalar): the lens model's evaluation MAE
- optional `calibration_features` (m, k), `calibration_covered` (m,): the lens model's calibration
  eyes (base features) and whether their implanted size's interval covered the vault, out of sample
  (leave-one-out conformal radius); the monitor reweights them to each window's covariates for the
  expected coverage. Absent for a model saved without them.
- optional, from the results database: `ocr_device_kind` (m,), `ocr_confidence` (m,),
  `ocr_review` (m,) one row per field read (review = 1); and per device kind K
  `ocr_value_names__K` (f,) and `ocr_values__K` (e, f): the accepted numeric values of each exam
  that has all of them
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eyeops.lens.features import BASE_FEATURES
from eyeops.lens.model import LensModel
from eyeops.lens.sizes import SIZES_MM


def lens_reference(model: LensModel, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Features and the model's answers for every eye of `frame` (the training cohort), and the
    model's calibration eyes with their coverage flags where the model keeps them."""
    base = frame[list(BASE_FEATURES)].astype(float).dropna()  # eyes with every feature
    prediction = model.predict(base.reset_index(drop=True))
    arrays = {
        "feature_names": np.array(BASE_FEATURES),
        "features": base.to_numpy(dtype=np.float64),
        "prediction_names": np.array([f"vault_um_{s}" for s in SIZES_MM]),
        "predictions": np.asarray(prediction.vault_um, dtype=np.float64),
        "recommended": np.asarray(prediction.recommended_size_mm, dtype=np.float64),
    }
    if model.calibration_eyes is not None:
        arrays["calibration_features"] = np.asarray(model.calibration_eyes.features, dtype=np.float64)
        arrays["calibration_covered"] = np.asarray(model.calibration_eyes.covered, dtype=np.bool_)
    return arrays


def ocr_reference(database_url: str, limit: int = 200_000) -> dict[str, np.ndarray]:
    """Per field read: device kind, confidence, whether it went to review (newest `limit`)."""
    from sqlalchemy import create_engine

    from eyeops.db.queries import accepted_numbers, field_outcomes

    engine = create_engine(database_url, hide_parameters=True)
    try:
        rows = field_outcomes(engine, limit)
        values = accepted_numbers(engine, limit)
    finally:
        engine.dispose()
    arrays = {
        "ocr_device_kind": np.array([r[0] for r in rows], dtype=str),
        "ocr_confidence": np.array([r[1] for r in rows], dtype=np.float64),
        "ocr_review": np.array([r[2] == "review" for r in rows], dtype=np.int64),
    }
    frame = pd.DataFrame(values, columns=["exam_id", "device_kind", "name", "value"])
    for kind, part in frame.groupby("device_kind"):
        table = part.pivot_table(index="exam_id", columns="name", values="value", aggfunc="first")
        table = table.dropna(axis=1, thresh=max(1, len(table) // 2)).dropna()  # fields most exams have
        if len(table) and len(table.columns):
            arrays[f"ocr_value_names__{kind}"] = np.array(table.columns.astype(str))
            arrays[f"ocr_values__{kind}"] = table.to_numpy(dtype=np.float64)
    return arrays


def save_reference(arrays: dict[str, np.ndarray], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
    return path
