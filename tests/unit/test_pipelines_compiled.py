import pytest

from eyeops.cli import main

pytestmark = pytest.mark.unit


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
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
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
