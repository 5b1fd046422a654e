"""The `detector-fitting` pipeline: point-in-time features of the training cohort → the champion lens
model's answers on them (and, given a results database, the OCR's confidences and review flags) as
reference data → fit the drift detectors in the detectors image → gate (quiet on held-out reference
windows, catches a known shift) → register. The monitoring service loads what this registers.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfp_pipelines.common import (
    DETECTORS_IMAGE,
    MODELS_PVC,
    _component,
    on_models_volume,
    register_step,
    restricted,
)
from kfp_pipelines.lens_training import point_in_time_features, validate_cohort_file


@_component
def build_reference(
    data: Input[Dataset], registry_root: str, results_db_url: str, reference: Output[Dataset]
) -> None:
    """Lens features and the champion's predictions on them; OCR field confidences if a database
    is given. Written as one .npz (the contract with the detectors environment)."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from eyeops.lens.model import LensModel
    from eyeops.monitoring.reference import lens_reference, ocr_reference, save_reference
    from eyeops.registry import ModelRegistry

    champion = ModelRegistry(Path(registry_root)).champion("lens")
    if champion is None:
        raise RuntimeError("no lens champion in the registry: run lens-training first")
    arrays = lens_reference(LensModel.load(champion.path), pd.read_parquet(data.path))
    if "mae_um" in champion.metrics:
        arrays["training_mae_um"] = np.asarray(champion.metrics["mae_um"], dtype=np.float64)
    if results_db_url:
        arrays.update(ocr_reference(results_db_url))
    save_reference(arrays, Path(reference.path))
    reference.metadata.update({"lens_version": champion.version, "rows": len(arrays["features"])})


@dsl.component(base_image=DETECTORS_IMAGE, install_kfp_package=False)
def fit_detectors(
    reference: Input[Dataset],
    window: int,
    p_val: float,
    ert: int,
    seed: int,
    detectors: Output[Model],
    metrics: Output[Metrics],
) -> str:
    """Runs `python -m eyeops_detectors fit` (the detectors image's own CLI). Locally
    EYEOPS_DETECTORS_PYTHON names the detectors environment's interpreter."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    python = os.environ.get("EYEOPS_DETECTORS_PYTHON") or sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "summary.json")
        subprocess.run(
            [
                python, "-m", "eyeops_detectors", "fit",
                "--reference", reference.path,
                "--out", detectors.path,
                "--window", str(window),
                "--p-val", str(p_val),
                "--ert", str(ert),
                "--seed", str(seed),
                "--summary", summary,
            ],
            check=True,
        )  # fmt: skip
        with open(summary) as handle:
            result = json.load(handle)
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
    return json.dumps(result)


@dsl.pipeline(
    name="detector-fitting",
    description="training features + champion answers → reference → fit drift detectors → gate → register",
)
def detector_fitting(
    cohort_uri: str,
    registry_root: str,
    version: str,
    feature_repo: str = "",
    results_db_url: str = "",
    window: int = 200,
    p_val: float = 0.005,
    ert: int = 10000,
    seed: int = 0,
    registry_uri_prefix: str = "",
    date_format: str = "",
    max_quarantined: float = 0.01,
    inputs_sha256: str = "",
    models_pvc: str = MODELS_PVC,
) -> None:
    cohort = validate_cohort_file(
        cohort_uri=cohort_uri,
        date_format=date_format,
        max_quarantined=max_quarantined,
        inputs_sha256=inputs_sha256,
    )
    on_models_volume(cohort, models_pvc)
    features = point_in_time_features(cohort=cohort.outputs["validated"], feature_repo=feature_repo)
    on_models_volume(features, models_pvc)
    reference = build_reference(
        data=features.outputs["features"], registry_root=registry_root, results_db_url=results_db_url
    )
    reference.set_caching_options(False)  # the champion changes between runs
    on_models_volume(reference, models_pvc)
    fitted = fit_detectors(
        reference=reference.outputs["reference"], window=window, p_val=p_val, ert=ert, seed=seed
    )
    restricted(fitted)
    register_step(
        fitted.outputs["detectors"],
        fitted.outputs["Output"],
        "detectors",
        registry_root,
        version,
        registry_uri_prefix,
        models_pvc,
    )
