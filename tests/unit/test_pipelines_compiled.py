import pytest

from eyeops.cli import main

pytestmark = pytest.mark.unit


def test_committed_pipeline_yaml_is_not_stale(capsys):
    assert main(["pipelines", "compile", "--check"]) == 0, capsys.readouterr().out
