"""The `lens-training` pipeline: point-in-time features → validation → train → evaluate → gate →
register (→ roll out). Every component imports the shared code (eyeops.lens.*); none re-implements
it. See kfp_pipelines/common.py for images and local runs.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from kfp_pipelines.common import MODELS_PVC, _component, on_models_volume, register_step, restricted


@_component
def validate_cohort_file(
    cohort_uri: str,
    date_format: str,
    max_quarantined: float,
    inputs_sha256: str,
    validated: Output[Dataset],
    report: Output[Markdown],
) -> None:
    """The cohort file, checked before anything else reads it (eyeops.lens.cohort.check_cohort):
    schema problems stop the run, implausible rows are set aside up to max_quarantined; the report
    lists both with row numbers and eye ids. `inputs_sha256` (filled by `eyeops pipelines run`) keys
    this step's cache on the file's content, and a file changed since the run started is refused."""
    import hashlib
    import json
    from pathlib import Path

    from eyeops.lens.cohort import CohortError, check_cohort, load_cohort_file, validation_report

    path = Path(cohort_uri)
    expected = json.loads(inputs_sha256 or "{}").get("cohort_uri")
    if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise CohortError(f"{cohort_uri} changed since this run was started; start it again")
    title, facts = "Cohort validation", [f"file: {cohort_uri}"]
    try:
        check = check_cohort(load_cohort_file(path), date_format or None, max_quarantined)
    except CohortError as exc:
        Path(report.path).write_text(validation_report(title, facts, None, exc))
        raise
    Path(report.path).write_text(validation_report(title, facts, check))
    validated.metadata.update(check.summary())
    check.frame.to_parquet(validated.path, index=False)


@_component
def point_in_time_features(cohort: Input[Dataset], feature_repo: str, features: Output[Dataset]) -> None:
    """Labels from the validated cohort; features from Feast as they were when each surgery was
    planned. With no feature_repo, a repository is built from the cohort's own exams (local runs)."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from eyeops.features import repository as fs
    from eyeops.lens.features import BASE_FEATURES

    labelled = pd.read_parquet(cohort.path)
    if feature_repo:
        repo = Path(feature_repo)
    else:
        repo = fs.prepare_repo(Path(tempfile.mkdtemp(prefix="lens-features-")) / "repo")
        fs.write_offline_data(labelled, repo)
        fs.open_store(repo).apply(fs.definitions(repo))
    store = fs.open_store(repo)
    # As of the surgery date (minus a day): what the surgeon could have known.
    stamps = pd.to_datetime(labelled["surgery_date"]) - pd.Timedelta(days=1)
    entities = pd.DataFrame({"eye_id": labelled["eye_id"], "event_timestamp": stamps.dt.tz_localize("UTC")})
    joined = fs.historical_features(store, entities).drop(columns=["event_timestamp"])
    labels = labelled.drop(columns=[c for c in (*BASE_FEATURES, "sex") if c in labelled.columns])
    out = labels.merge(joined, on="eye_id", how="left")
    out.to_parquet(features.path, index=False)


@_component
def validate_cohort_data(
    data: Input[Dataset], max_quarantined: float, validated: Output[Dataset], report: Output[Markdown]
) -> None:
    """The features as Feast served them, checked again (a value missing or implausible in the store
    is set aside like one in the file). A failing cohort stops the run here; the report says why."""
    from pathlib import Path

    import pandas as pd

    from eyeops.lens.cohort import CohortError, check_cohort, validation_report

    frame = pd.read_parquet(data.path)
    title, facts = "Point-in-time features: validation", [f"rows: {len(frame)}"]
    try:
        check = check_cohort(frame, None, max_quarantined)
    except CohortError as exc:
        Path(report.path).write_text(validation_report(title, facts, None, exc))
        raise
    Path(report.path).write_text(validation_report(title, facts, check))
    check.frame.to_parquet(validated.path, index=False)


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
    model: Input[Model],
    test_uri: str,
    date_format: str,
    inputs_sha256: str,
    registry_root: str,
    metrics: Output[Metrics],
    report: Output[HTML],
) -> str:
    """Metrics on a held-out cohort (counterfactual coverage when it carries the true outcomes), and
    the champion's on the same cohort, so that the gate compares the two on the same eyes; an HTML
    report with plots. `inputs_sha256` keys the cache on the test file's content."""
    import json
    from pathlib import Path

    from eyeops.lens.cohort import read_cohort
    from eyeops.lens.evaluate import evaluate, load_params
    from eyeops.lens.features import feature_matrix
    from eyeops.lens.model import LensModel
    from eyeops.lens.report import evaluation_page
    from eyeops.registry import ModelRegistry

    test = read_cohort(Path(test_uri), date_format or None).frame
    params = load_params(Path(test_uri))
    candidate = LensModel.load(Path(model.path))
    result = evaluate(candidate, test, params)
    champion = ModelRegistry(Path(registry_root)).champion("lens") if registry_root else None
    if champion is not None:
        result["champion_on_same_data"] = evaluate(LensModel.load(champion.path), test, params)
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
    page = evaluation_page(
        result, result.get("champion_on_same_data"), candidate.propensities(feature_matrix(test))
    )
    Path(report.path).write_text(page)
    return json.dumps(result)


@dsl.pipeline(
    name="lens-training",
    description="validate the file → Feast features → validate → train → evaluate → gate → register",
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
    date_format: str = "",
    max_quarantined: float = 0.01,
    inputs_sha256: str = "",
    models_pvc: str = MODELS_PVC,
) -> None:
    """`inputs_sha256`: {"cohort_uri": sha256, "test_uri": sha256} of the files (`eyeops pipelines
    run` fills it), so that a step's cache follows the content of its file, not only its path.
    `models_pvc`: the claim mounted at /mnt/eyeops in the steps that read files or the registry."""
    cohort = validate_cohort_file(
        cohort_uri=cohort_uri,
        date_format=date_format,
        max_quarantined=max_quarantined,
        inputs_sha256=inputs_sha256,
    )
    on_models_volume(cohort, models_pvc)
    features = point_in_time_features(cohort=cohort.outputs["validated"], feature_repo=feature_repo)
    on_models_volume(features, models_pvc)
    checked = validate_cohort_data(data=features.outputs["features"], max_quarantined=max_quarantined)
    restricted(checked)
    trained = train_lens_model(data=checked.outputs["validated"], version=version, delta=delta, alpha=alpha)
    restricted(trained)
    # Measured (bench/lens_training_curve.py, docs/measured/cost-curves.md): 230 MB plus about 1.6 KB
    # per eye at its peak, 144 s for 10⁶ eyes on two cores. 4 GiB holds about 2 million eyes.
    trained.set_cpu_request("1").set_cpu_limit("2").set_memory_request("1Gi").set_memory_limit("4Gi")
    evaluated = evaluate_lens_model(
        model=trained.outputs["model"],
        test_uri=test_uri,
        date_format=date_format,
        inputs_sha256=inputs_sha256,
        registry_root=registry_root,
    )
    evaluated.set_caching_options(False)  # it reads the champion, which changes between runs
    on_models_volume(evaluated, models_pvc)
    register_step(
        trained.outputs["model"],
        evaluated.outputs["Output"],
        "lens",
        registry_root,
        version,
        registry_uri_prefix,
        models_pvc,
        inference_service,
        namespace,
        canary_percent,
    )
