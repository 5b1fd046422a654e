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
