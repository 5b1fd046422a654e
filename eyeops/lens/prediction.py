"""What the lens model answers for a batch of eyes (arrays over eyes × the four sizes), and one
eye's answer in the lens service's contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eyeops.lens.sizes import SIZES_MM


@dataclass
class LensPrediction:
    """Arrays over eyes (rows) × sizes (columns, SIZES_MM order)."""

    vault_um: np.ndarray
    propensity: np.ndarray
    supported: np.ndarray
    lower_um: np.ndarray
    upper_um: np.ndarray
    p_in_range: np.ndarray  # NaN where the size is not supported
    recommended_size_mm: np.ndarray
    nomogram_size_mm: np.ndarray
    assumes: str = "monotone treatment response"
    # E|vault − vault_um| from the direct loss estimator; None for a model saved without one
    expected_abs_error_um: np.ndarray | None = None
    assumes_by_size: list[str] | None = None  # what each size's bounds assume, and why not more
    # Where an unsupported size's bounds hold a band from data (eyeops.lens.unsupported); None for
    # models without one. A weighted band reaches some eyes only: the others' assumption per size.
    band: np.ndarray | None = None
    assumes_without_band: list[str] | None = None

    def assumption(self, i: int, j: int) -> str:
        """What eye i's bounds at size j assume."""
        if self.assumes_without_band is not None and self.band is not None and not self.band[i, j]:
            return self.assumes_without_band[j]
        return (self.assumes_by_size or [self.assumes] * len(SIZES_MM))[j]

    def eye(self, i: int, model_version: str) -> dict[str, Any]:
        """One eye's answer in the lens service's contract."""
        sizes = []
        for j, size in enumerate(SIZES_MM):
            supported = bool(self.supported[i, j])
            sizes.append(
                {
                    "size_mm": size,
                    "vault_um": round(float(self.vault_um[i, j]), 1),
                    "supported": supported,
                    "propensity": round(float(self.propensity[i, j]), 4),
                    "kind": "interval" if supported else "bounds",
                    **({} if supported else {"assumes": self.assumption(i, j)}),
                    "lower_um": round(float(self.lower_um[i, j]), 1),
                    "upper_um": round(float(self.upper_um[i, j]), 1),
                    "p_in_range": round(float(self.p_in_range[i, j]), 4) if supported else None,
                    **(
                        {}
                        if self.expected_abs_error_um is None
                        else {
                            "expected_abs_error_um": round(float(self.expected_abs_error_um[i, j]), 1)
                            if supported
                            else None
                        }
                    ),
                }
            )
        return {
            "sizes": sizes,
            "recommended_size_mm": float(self.recommended_size_mm[i]),
            "nomogram_size_mm": float(self.nomogram_size_mm[i]),
            "model_version": model_version,
        }
