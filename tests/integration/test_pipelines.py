"""The lens-training pipeline end to end with kfp.local (SubprocessRunner) through `eyeops pipelines
run`: artifacts, metrics, the gate refusing a degraded model (and the run saying so), a cohort file
changed at the same path read again, a failing cohort stopped at validation with its report."""

from __future__ import annotations

import json

import pytest
from kfp import local

from eyeops.lens.cohort import simulate_cohort, write_cohort
from eyeops.registry import ModelRegistry
from eyeops.settings import repo_root
from kfp_pipelines.detector_fitting import detector_fitting
from kfp_pipelines.lens_training import lens_training
from tests.helpers import newest_output

pytestmark = pytest.mark.slow


def test_lens_training_registers_promotes_and_gates_then_detectors_fit(tmp_path, monkeypatch, capsys):
    from eyeops.cli import main

    write_cohort(simulate_cohort(3000, 61), tmp_path / "train.parquet")
    write_cohort(simulate_cohort(800, 62), tmp_path / "test.parquet")
    outputs = tmp_path / "outputs"
    common = {
        "cohort_uri": str(tmp_path / "train.parquet"),
        "test_uri": str(tmp_path / "test.parquet"),
        "registry_root": str(tmp_path / "registry"),
    }

    def run(version: str, *extra: str) -> tuple[int, str]:
        argv = ["pipelines", "run", "lens-training", "--local", "--pipeline-root", str(outputs)]
        argv += [f"--arg={k}={v}" for k, v in {**common, "version": version}.items()]
        code = main([*argv, *extra])
        return code, capsys.readouterr().out

    code, said = run("1", "--fail-on-reject")
    assert code == 0 and "PROMOTED: lens-training version 1" in said and "decision report:" in said
    registry = ModelRegistry(tmp_path / "registry")
    champion = registry.champion("lens")
    assert champion is not None and champion.version == "1"
    assert (champion.path / "manifest.json").exists() and (champion.path / "vault.txt").exists()
    assert 0.85 < champion.metrics["coverage_factual"] < 0.95 and champion.metrics["mae_um"] < 140
    assert "coverage_counterfactual_unsupported" in champion.metrics
    decision = newest_output(outputs, "gate-and-register", "decision").read_text()
    assert "PROMOTED" in decision and "no champion yet" in decision
    assert "**passed**" in newest_output(outputs, "validate-cohort-file", "report").read_text()
    report = newest_output(outputs, "validate-cohort-data", "report").read_text()
    assert "**passed**" in report and "rows: 3000" in report

    # The cohort file overwritten at the same path: its steps read it again, none is served from a
    # cache keyed on the path alone (the new version's data hash is the new file's).
    write_cohort(simulate_cohort(3000, 71), tmp_path / "train.parquet")
    code, said = run("2")
    assert code == 0, said
    manifests = [json.loads((registry.get("lens", v).path / "manifest.json").read_text()) for v in "12"]
    assert manifests[0]["training_data_sha256"] != manifests[1]["training_data_sha256"]

    # A deliberately degraded model: 50 % intervals. Registered, refused by the gate, and said so.
    code, said = run("3-degraded", "--arg=alpha=0.5", "--fail-on-reject")
    assert code == 1 and "NOT PROMOTED: lens-training version 3-degraded" in said and "coverage" in said
    assert registry.champion("lens").version in ("1", "2")  # type: ignore[union-attr]
    degraded = registry.get("lens", "3-degraded")
    assert degraded.metrics["coverage_factual"] < 0.6 and degraded.metadata["gate_promoted"] is False
    assert any("coverage" in r for r in degraded.metadata["gate_reasons"])
    assert "NOT promoted" in newest_output(outputs, "gate-and-register", "decision").read_text()

    # The same version twice is refused.
    with pytest.raises(RuntimeError):
        lens_training(version="1", **common)

    # Detectors fitted on the champion's answers for the training cohort, in the detectors environment.
    monkeypatch.setenv("EYEOPS_DETECTORS_PYTHON", str(repo_root() / ".venv-detectors" / "bin" / "python"))
    detector_fitting(
        cohort_uri=common["cohort_uri"], registry_root=common["registry_root"], version="1", ert=300
    )
    fitted = registry.champion("detectors")
    assert fitted is not None and fitted.version == "1"
    manifest = json.loads((fitted.path / "manifest.json").read_text())
    assert manifest["detectors"]["lens_features"]["features"][1] == "wtw_mm"
    assert manifest["config"]["ert"] == 300
    assert fitted.metrics["reference_rows"] == 3000 and fitted.metrics["fit_rows"] == 2100
    assert fitted.metrics["heldout_false_alarm_rate"] <= fitted.metrics["false_alarm_budget"]
    assert fitted.metrics["shift_detected"] and fitted.metrics["shift_feature"] == "wtw_mm"


def test_a_bad_cohort_stops_at_validation_with_its_report(tmp_path):
    bad = simulate_cohort(400, 63)
    bad.loc[:9, "acd_mm"] = 7.0  # ten chambers no eye has
    write_cohort(bad, tmp_path / "bad.parquet")
    write_cohort(simulate_cohort(200, 64), tmp_path / "test.parquet")
    outputs = tmp_path / "outputs"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs))
    with pytest.raises(RuntimeError):
        lens_training(
            cohort_uri=str(tmp_path / "bad.parquet"),
            test_uri=str(tmp_path / "test.parquet"),
            registry_root=str(tmp_path / "registry"),
            version="1",
        )
    report = newest_output(outputs, "validate-cohort-file", "report").read_text()
    assert "**FAILED**" in report and "acd_mm: 10 values outside the plausible range" in report
    assert "over the 1 % a run may set aside" in report
    assert not (tmp_path / "registry").exists()
    json.dumps(report)  # the report is plain text a run page can show
