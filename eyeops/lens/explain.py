"""Why the lens model predicts what it does, per eye: path-dependent TreeSHAP of the predicted vault
at every size (LightGBM pred_contrib) and the direct size-switch contrasts, which SHAP values of the
size feature are not. Only `:explain` asks for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from eyeops.lens.features import FEATURES, SIZE_FEATURE, feature_matrix
from eyeops.lens.sizes import SIZES_MM

if TYPE_CHECKING:
    from eyeops.lens.model import LensModel


def explain(model: LensModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per eye: path-dependent TreeSHAP of the predicted vault at every size (LightGBM
    pred_contrib; contributions plus the expected value sum to the prediction), and the direct
    size-switch contrasts f(x, s') − f(x, s) from the recommended size, which SHAP values of
    the size feature are not."""
    x = feature_matrix(frame)
    pred = model.predict(frame)
    columns = [*FEATURES, SIZE_FEATURE]
    per_size = {}
    for size in SIZES_MM:
        at_size = x.assign(**{SIZE_FEATURE: size})
        per_size[size] = np.asarray(model.vault.predict(at_size, pred_contrib=True), dtype=float)
    out = []
    for i in range(len(frame)):
        rec = float(pred.recommended_size_mm[i])
        rec_j = SIZES_MM.index(rec)
        out.append(
            {
                "recommended_size_mm": rec,
                "expected_value_um": float(per_size[SIZES_MM[0]][i, -1]),
                "contributions_um": {
                    f"{size:.1f}": {c: float(v) for c, v in zip(columns, per_size[size][i, :-1], strict=True)}
                    for size in SIZES_MM
                },
                "vault_um": {f"{s:.1f}": float(pred.vault_um[i, j]) for j, s in enumerate(SIZES_MM)},
                "size_switch_um": {
                    f"{s:.1f}": float(pred.vault_um[i, j] - pred.vault_um[i, rec_j])
                    for j, s in enumerate(SIZES_MM)
                },
            }
        )
    return out
