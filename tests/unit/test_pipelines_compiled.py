import pytest

from eyeops.cli import main


def test_committed_pipeline_yaml_is_not_stale(capsys):
    assert main(["pipelines", "compile", "--check"]) == 0, capsys.readouterr().out


def test_run_arguments_are_typed_by_the_pipeline_inputs():
    from eyeops.pipelines.cli import _arguments, pipelines

    lens = pipelines()["lens-training"]
    args = _arguments(["version=1", "delta=0.2", "cohort_uri=a.parquet"], lens)
    assert args == {"version": "1", "delta": 0.2, "cohort_uri": "a.parquet"}
    with pytest.raises(SystemExit, match="no input 'versoin'"):
        _arguments(["versoin=1"], lens)


@pytest.mark.parametrize("name", ["lens-training", "ocr-training", "detector-fitting"])
def test_compiled_yaml_loads_back_with_its_images(name):
    import yaml
    from kfp import components

    from eyeops.settings import repo_root

    path = repo_root() / "kfp_pipelines" / "compiled" / f"{name}.yaml"
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == name and "registry_root" in loaded.component_spec.inputs
    executors = next(yaml.safe_load_all(path.read_text()))["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    expected = {"eyeops/pipelines:0.1.0"} | (
        {"eyeops/detectors:0.1.0"} if name == "detector-fitting" else set()
    )
    assert images == expected


def test_declared_recurring_runs_fit_the_pipelines(tmp_path):
    from eyeops.pipelines.cli import SCHEDULES, load_schedules
    from eyeops.settings import repo_root

    spec = load_schedules(repo_root() / SCHEDULES)
    assert {r["pipeline"] for r in spec["runs"]} == {"lens-training", "ocr-training", "detector-fitting"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "runs:\n  - {name: x, pipeline: lens-training, cron: '0 0 2 * * 1',"
        " arguments: {registry_root: /r, version: v, cohort_uri: c, test_uri: t, canary: 5}}\n"
    )
    with pytest.raises(SystemExit, match="passes canary, not inputs of lens-training"):
        load_schedules(bad)
    bad.write_text("runs:\n  - {name: x, pipeline: lens-training, cron: '0 2 * * 1', arguments: {}}\n")
    with pytest.raises(SystemExit, match="lacks required cohort_uri"):
        load_schedules(bad)


def test_staleness_ignores_the_sdk_stamp_but_not_the_pipeline():
    from eyeops.pipelines.cli import pipeline_body

    compiled = "pipelineInfo:\n  name: lens-training\nsdkVersion: kfp-2.17.0\n"
    assert pipeline_body(compiled) == pipeline_body(compiled.replace("2.17.0", "2.17.3"))
    assert pipeline_body(compiled) != pipeline_body(compiled.replace("lens-training", "lens-trainin"))


PATH_INPUTS = {"registry_root", "cohort_uri", "test_uri", "feature_repo", "crops_uri"}


@pytest.mark.parametrize("name", ["lens-training", "ocr-training", "detector-fitting"])
def test_steps_that_read_files_mount_the_models_volume_and_every_step_runs_restricted(name):
    """On a cluster /mnt/eyeops is the models PVC (the pipeline's models_pvc) in every step given a
    registry, cohort, test set, feature repository or crop set, and every step runs as the images'
    uid 10001 (the chart's pods too), so all write the shared volume as one user."""
    import yaml

    from eyeops.settings import repo_root

    text = (repo_root() / "kfp_pipelines" / "compiled" / f"{name}.yaml").read_text()
    spec, platforms = yaml.safe_load_all(text)  # the pipeline, then its Kubernetes settings
    assert spec["root"]["inputDefinitions"]["parameters"]["models_pvc"]["defaultValue"] == "eyeops-models"
    platform = platforms["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task_name, task in spec["root"]["dag"]["tasks"].items():
        executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        config = platform.get(executor, {})
        context = config.get("securityContext", {})
        assert context == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}, task_name
        reads_files = bool(PATH_INPUTS & set(task["inputs"].get("parameters", {})))
        mounts = config.get("pvcMount", [])
        if reads_files:
            assert [(m["mountPath"], m["pvcNameParameter"]) for m in mounts] == [
                ("/mnt/eyeops", {"componentInputParameter": "models_pvc"})
            ], task_name
        else:
            assert not mounts, task_name  # only what needs the volume mounts it


def test_component_images_follow_the_image_registry(tmp_path):
    import yaml

    from eyeops.pipelines.cli import with_image_registry

    assert (
        main(["pipelines", "compile", "--image-registry", "registry.example/clinic/", "--out", str(tmp_path)])
        == 0
    )
    for name in ("lens-training", "ocr-training", "detector-fitting"):
        spec = next(yaml.safe_load_all((tmp_path / f"{name}.yaml").read_text()))
        executors = spec["deploymentSpec"]["executors"]
        images = {e["container"]["image"] for e in executors.values()}
        assert images and all(i.startswith("registry.example/clinic/eyeops/") for i in images), images
    assert (
        with_image_registry("        image: eyeops/pipelines:0.1.0\n", "")
        == "        image: eyeops/pipelines:0.1.0\n"
    )
    with pytest.raises(SystemExit, match="no scheme"):
        with_image_registry("        image: eyeops/pipelines:0.1.0\n", "https://registry.example")
    with pytest.raises(SystemExit, match="needs --out"):
        main(["pipelines", "compile", "--image-registry", "registry.example"])
