"""The `lens-training` pipeline: point-in-time features → validation → train → evaluate → gate →
register (→ roll out). Every component imports the shared code (eyeops.lens.*); none re-implements
it. See kfp_pipelines/common.py for images and local runs.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from kfp_pipelines.common import _component, register_step


@_component
def point_in_time_features(cohort_uri: str, feature_repo: str, features: Output[Dataset]) -> None:
    """Labels from the cohort file; features from Feast as they were when each surgery was planned.
    With no feature_repo, a repository is built from the cohort's own exams (local runs)."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from eyeops.lens import feature_store as fs
    from eyeops.lens.features import BASE_FEATURES

    cohort = pd.read_parquet(cohort_uri) if cohort_uri.endswith(".parquet") else pd.read_csv(cohort_uri)
    if feature_repo:
        repo = Path(feature_repo)
    else:
        repo = fs.prepare_repo(Path(tempfile.mkdtemp(prefix="lens-features-")) / "repo")
        fs.write_offline_data(cohort, repo)
        fs.open_store(repo).apply(fs.definitions(repo))
    store = fs.open_store(repo)
    # As of the surgery date (minus a day): what the surgeon could have known.
    stamps = pd.to_datetime(cohort["surgery_date"]) - pd.Timedelta(days=1)
    entities = pd.DataFrame({"eye_id": cohort["eye_id"], "event_timestamp": stamps.dt.tz_localize("UTC")})
    joined = fs.historical_features(store, entities).drop(columns=["event_timestamp"])
    labels = cohort.drop(columns=[c for c in (*BASE_FEATURES, "sex") if c in cohort.columns])
    out = labels.merge(joined, on="eye_id", how="left")
    out.to_parquet(features.path, index=False)


@_component
def validate_cohort_data(data: Input[Dataset], validated: Output[Dataset], report: Output[Markdown]) -> None:
    """Schema, ranges, missingness, duplicates. A failing cohort stops the run here; the report says why."""
    import pandas as pd

    from eyeops.lens.cohort import CohortError, validate_cohort

    frame = pd.read_parquet(data.path)
    missing = frame.isna().sum()
    gaps = ", ".join(f"{c} ({n})" for c, n in missing[missing > 0].items()) or "none"
    lines = [
        "# Cohort validation",
        "",
        f"- rows: {len(frame)}",
        f"- eyes: {frame['eye_id'].nunique()}",
        f"- columns with missing values: {gaps}",
    ]
    try:
        checked = validate_cohort(frame)
    except CohortError as exc:
        lines += ["", "**FAILED**", "", *(f"- {p.strip()}" for p in str(exc).split(";"))]
        with open(report.path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        raise
    lines += ["", "**passed**: every column in range, no duplicates, surgery after exam"]
    with open(report.path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    checked.to_parquet(validated.path, index=False)


@_component
def train_lens_model(
    data: Input[Dataset], version: str, delta: float, alpha: float, model: Output[Model]
) -> None:
    from pathlib import Path

    import pandas as pd

    from eyeops.lens.model import LensConfig, LensModel

    fitted = LensModel.fit(pd.read_parquet(data.path), LensConfig(delta=delta, alpha=alpha), version=version)
    fitted.save(Path(model.path))
    model.metadata.update(
        {"version": version, "training_data_sha256": fitted.manifest["training_data_sha256"]}
    )


@_component
def evaluate_lens_model(
    model: Input[Model], test_uri: str, metrics: Output[Metrics], report: Output[HTML]
) -> str:
    """Metrics on a held-out cohort (counterfactual coverage when it carries the true outcomes)."""
    import html
    import json
    from pathlib import Path

    from eyeops.lens.cohort import read_cohort
    from eyeops.lens.evaluate import evaluate, load_params
    from eyeops.lens.model import LensModel

    result = evaluate(
        LensModel.load(Path(model.path)), read_cohort(Path(test_uri)), load_params(Path(test_uri))
    )
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in result.items()
    )
    with open(report.path, "w") as handle:
        handle.write(f"<html><body><h1>Lens model evaluation</h1><table>{rows}</table></body></html>")
    return json.dumps(result)


@dsl.pipeline(
    name="lens-training", description="Feast features → validate → train → evaluate → gate → register"
)
def lens_training(
    cohort_uri: str,
    test_uri: str,
    registry_root: str,
    version: str,
    feature_repo: str = "",
    delta: float = 0.125,
    alpha: float = 0.1,
    registry_uri_prefix: str = "",
    inference_service: str = "",
    namespace: str = "",
    canary_percent: int = 100,
) -> None:
    features = point_in_time_features(cohort_uri=cohort_uri, feature_repo=feature_repo)
    checked = validate_cohort_data(data=features.outputs["features"])
    trained = train_lens_model(data=checked.outputs["validated"], version=version, delta=delta, alpha=alpha)
    evaluated = evaluate_lens_model(model=trained.outputs["model"], test_uri=test_uri)
    register_step(
        trained.outputs["model"],
        evaluated.outputs["Output"],
        "lens",
        registry_root,
        version,
        registry_uri_prefix,
        inference_service,
        namespace,
        canary_percent,
    )
