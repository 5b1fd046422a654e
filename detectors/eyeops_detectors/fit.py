"""Fit, check and save the detector set: what the `detector-fitting` pipeline runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eyeops_detectors.detectors import DetectorConfig, DetectorSet, Reference, evaluate_heldout, split


def fit_and_save(
    reference_path: Path, out: Path, config: DetectorConfig, heldout_fraction: float = 0.3
) -> dict[str, Any]:
    """Fit on most of the reference, check on the rest, save to `out`; returns the summary."""
    reference = Reference.load(reference_path)
    if len(reference.features) < 100:
        raise ValueError(f"reference has {len(reference.features)} rows; at least 100 are needed")
    fit_part, heldout = split(reference, heldout_fraction, config.seed)
    started = time.perf_counter()
    detectors = DetectorSet.fit(fit_part, config)
    fit_s = time.perf_counter() - started
    summary: dict[str, Any] = {
        "reference_rows": len(reference.features),
        "fit_rows": len(fit_part.features),
        "fit_seconds": round(fit_s, 2),
        "window": config.window,
        "p_val": config.p_val,
        "ert": config.ert,
        "ocr_device_kinds": len(detectors.ocr_confidence),
        **evaluate_heldout(detectors, heldout),
    }
    detectors.save(out)
    return summary
