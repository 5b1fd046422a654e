"""Promotion beyond the registry: the storageUri a cluster loads, the InferenceService patch in the
way its KServe deployment mode allows (a canary share only in Knative mode), and the OCR and
detector gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eyeops.ocr.gate import gate as ocr_gate
from eyeops.pipelines.gates import gate_for
from eyeops.registry import ModelRegistry, RegistryError
from eyeops.registry.deploy import (
    MODE_ANNOTATION,
    RolloutRefused,
    check_rollout,
    deployment_mode,
    promote_inference_service,
)


class FakeCustomObjects:
    """The InferenceService as the API server would return it, and the patches sent to it."""

    def __init__(self, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None):
        self.isvc = {"metadata": {"name": "lens", "annotations": annotations or {}}, "status": status or {}}
        self.calls: list[tuple[Any, ...]] = []

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any:
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        return self.isvc

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any:
        self.calls.append((group, version, namespace, plural, name, body))
        return body


def knative() -> FakeCustomObjects:
    return FakeCustomObjects({MODE_ANNOTATION: "Knative"})


def standard() -> FakeCustomObjects:
    return FakeCustomObjects({MODE_ANNOTATION: "Standard"})


def test_storage_uri_uses_the_cluster_prefix(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.bin").write_bytes(b"x")
    local = ModelRegistry(tmp_path / "reg").register("lens", "3", artifact, {})
    assert local.storage_uri.startswith("file://") and local.storage_uri.endswith("/reg/lens/3")
    pvc = ModelRegistry(tmp_path / "reg", uri_prefix="pvc://eyeops-models/registry/").get("lens", "3")
    assert pvc.storage_uri == "pvc://eyeops-models/registry/lens/3"


def test_knative_mode_promotes_as_a_canary() -> None:
    api = knative()
    promote_inference_service(api, "lens", "eyeops", "s3://models/lens/4", canary_percent=10)
    group, version, namespace, plural, name, body = api.calls[0]
    assert (group, version, namespace, plural, name) == (
        "serving.kserve.io",
        "v1beta1",
        "eyeops",
        "inferenceservices",
        "lens",
    )
    assert body == {
        "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "s3://models/lens/4"}}}
    }
    # 100 ends a canary: the new revision gets all the traffic.
    promote_inference_service(api, "lens", "eyeops", "s3://models/lens/5")
    assert api.calls[1][-1]["spec"]["predictor"]["canaryTrafficPercent"] == 100


def test_standard_mode_rolls_out_fully_and_refuses_a_canary_share() -> None:
    api = standard()
    patch = promote_inference_service(api, "lens", "eyeops", "s3://models/lens/4", canary_percent=100)
    # canaryTrafficPercent means nothing to KServe's Standard reconcilers: not sent.
    assert patch == {"spec": {"predictor": {"model": {"storageUri": "s3://models/lens/4"}}}}
    with pytest.raises(RolloutRefused) as refused:
        promote_inference_service(api, "lens", "eyeops", "s3://models/lens/5", canary_percent=10)
    message = str(refused.value)
    assert "Standard mode" in message and "10% of its traffic" in message
    assert "canary_percent=100" in message and "kserve.deploymentMode=Knative" in message
    assert len(api.calls) == 1  # the refused one patched nothing


def test_the_mode_is_the_one_kserve_recorded_then_the_annotation() -> None:
    assert deployment_mode({"metadata": {"annotations": {MODE_ANNOTATION: "Serverless"}}}) == "Knative"
    assert deployment_mode({"metadata": {"annotations": {MODE_ANNOTATION: "RawDeployment"}}}) == "Standard"
    recorded = {
        "metadata": {"annotations": {MODE_ANNOTATION: "Knative"}},
        "status": {"deploymentMode": "Standard"},
    }
    assert deployment_mode(recorded) == "Standard"
    assert deployment_mode({"metadata": {}}) is None
    # Unstated: the cluster's default, which promotion cannot see; a full rollout is still fine.
    with pytest.raises(RolloutRefused, match="does not state its deployment mode"):
        check_rollout("ocr", "eyeops", None, 10)
    assert check_rollout("ocr", "eyeops", None, 100).describe().endswith("all traffic, as a rolling update")
    assert "canary, 10% of traffic" in check_rollout("ocr", "eyeops", "Knative", 10).describe()
    with pytest.raises(RolloutRefused, match="ModelMesh"):
        check_rollout("ocr", "eyeops", "ModelMesh", 10)


@pytest.mark.parametrize(("uri", "percent"), [("s3://m/1", 0), ("s3://m/1", 101), ("/plain/path", 50)])
def test_bad_promotion_arguments_are_refused(uri: str, percent: int) -> None:
    with pytest.raises(RegistryError):
        promote_inference_service(knative(), "lens", "eyeops", uri, percent)


def test_the_register_step_refuses_a_canary_standard_mode_cannot_honour_before_registering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kfp.dsl import Markdown, Model

    from eyeops.registry import deploy
    from kfp_pipelines.common import gate_and_register

    artifact = tmp_path / "candidate"
    artifact.mkdir()
    (artifact / "model.bin").write_bytes(b"x")
    quiet = {"heldout_false_alarm_rate": 0.01, "false_alarm_budget": 0.02, "shift_detected": True}
    api = standard()
    monkeypatch.setattr(deploy, "in_cluster_api", lambda: api)

    def run(version: str, percent: int) -> bool:
        decision = Markdown(uri=str(tmp_path / f"decision-{version}"))
        return bool(
            gate_and_register.python_func(
                model=Model(uri=str(artifact)),
                evaluation=json.dumps(quiet),
                registry_root=str(tmp_path / "registry"),
                version=version,
                model_name="detectors",
                decision=decision,
                registry_uri_prefix="pvc://eyeops-models/registry",
                inference_service="lens",
                namespace="eyeops",
                canary_percent=percent,
            )
        )

    with pytest.raises(RolloutRefused):
        run("1", 10)
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.versions("detectors") == [] and api.calls == []  # nothing changed
    assert run("1", 100)
    assert registry.champion("detectors") is not None
    assert api.calls[0][-1] == {
        "spec": {"predictor": {"model": {"storageUri": "pvc://eyeops-models/registry/detectors/1"}}}
    }
    assert "Standard mode): all traffic" in (tmp_path / "decision-1").read_text()


def _ocr(field: float, exam: float, tesseract: float = 0.8) -> dict[str, Any]:
    return {"field_accuracy": field, "exam_accuracy": exam, "tesseract_field_accuracy": tesseract}


def test_ocr_gate() -> None:
    assert ocr_gate(_ocr(0.99, 0.9), None).promote
    assert not ocr_gate(_ocr(0.70, 0.1, tesseract=0.75), None).promote  # below floor and Tesseract
    champion = _ocr(0.995, 0.97)
    assert ocr_gate(_ocr(0.9945, 0.965), champion).promote  # within tolerances
    worse = ocr_gate(_ocr(0.990, 0.97), champion)
    assert not worse.promote and "field accuracy 0.9900 below the champion's 0.9950" in worse.reasons[0]
    # The champion read on the same exams wins over its stored figures.
    same_set = {**_ocr(0.99, 0.95), "champion_same_set": _ocr(0.99, 0.95)}
    assert ocr_gate(same_set, champion).promote


def test_ocr_gate_refuses_more_silent_errors_at_the_same_threshold() -> None:
    champion = {**_ocr(0.995, 0.97), "silent_error_rate": 0.0002, "confidence_threshold": 0.97}
    riskier = {**_ocr(0.996, 0.98), "silent_error_rate": 0.0011, "confidence_threshold": 0.97}
    decision = ocr_gate(riskier, champion)
    assert not decision.promote
    assert decision.reasons == ["silent error rate 0.00110 above the champion's 0.00020 + 0.0005"]
    assert ocr_gate({**riskier, "silent_error_rate": 0.0006}, champion).promote  # within 0.0005
    # Rates at different thresholds are not comparable; a champion scored before statuses were is
    # judged on accuracy alone.
    assert ocr_gate({**riskier, "confidence_threshold": 0.9}, champion).promote
    assert ocr_gate(riskier, _ocr(0.995, 0.97)).promote


def test_detectors_gate_and_unknown_model() -> None:
    quiet = {"heldout_false_alarm_rate": 0.01, "false_alarm_budget": 0.02, "shift_detected": True}
    assert gate_for("detectors")(quiet, None).promote
    noisy = gate_for("detectors")({**quiet, "heldout_false_alarm_rate": 0.2}, None)
    assert not noisy.promote and "above the budget" in noisy.reasons[0]
    assert not gate_for("detectors")({**quiet, "shift_detected": False}, None).promote
    with pytest.raises(RegistryError):
        gate_for("tokenizer")


def canary_isvc(mode: str, previous: str | None = "ocr-predictor-00001") -> FakeCustomObjects:
    """An InferenceService halfway through a 10 % canary, as KServe reports one in Knative mode."""
    api = FakeCustomObjects({MODE_ANNOTATION: mode})
    api.isvc["spec"] = {
        "predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "pvc://m/registry/ocr/4"}}
    }
    traffic = [{"revisionName": "ocr-predictor-00002", "percent": 10, "latestRevision": True}]
    if previous:
        traffic.append({"revisionName": previous, "percent": 90, "tag": "prev"})
    api.isvc["status"] = {
        "components": {
            "predictor": {
                "latestRolledoutRevision": previous,
                "previousRolledoutRevision": previous,
                "latestCreatedRevision": "ocr-predictor-00002",
                "traffic": traffic,
            }
        }
    }
    return api


@pytest.mark.parametrize(("action", "percent"), [("finish", 100), ("undo", 0)])
def test_a_knative_canary_is_finished_or_undone(action: str, percent: int) -> None:
    from eyeops.registry.deploy import canary_state, set_canary_traffic

    api = canary_isvc("Knative")
    before = canary_state(api, "ocr", "eyeops")
    assert before.canary_percent == 10 and before.traffic[0] == ("ocr-predictor-00002", 10)
    assert "10% -> ocr-predictor-00002" in before.describe()
    set_canary_traffic(api, "ocr", "eyeops", percent)
    assert [c[-1] for c in api.calls] == [{"spec": {"predictor": {"canaryTrafficPercent": percent}}}]
    assert api.calls[0][2:5] == ("eyeops", "inferenceservices", "ocr")


def test_a_canary_is_not_moved_where_there_is_none_to_move() -> None:
    from eyeops.registry.deploy import set_canary_traffic

    standard = canary_isvc("Standard")
    with pytest.raises(RolloutRefused, match=r"no canary to finish or undo.*eyeops registry rollback"):
        set_canary_traffic(standard, "ocr", "eyeops", 100)
    first = canary_isvc("Knative", previous=None)
    with pytest.raises(RolloutRefused, match="no previously rolled-out revision"):
        set_canary_traffic(first, "ocr", "eyeops", 0)
    with pytest.raises(RegistryError, match="finished \\(100\\) or undone \\(0\\)"):
        set_canary_traffic(canary_isvc("Knative"), "ocr", "eyeops", 50)
    assert standard.calls == first.calls == []


def test_the_canary_command_prints_the_state_and_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eyeops.cli import main

    knative, standard = canary_isvc("Knative"), canary_isvc("Standard")
    monkeypatch.setattr("eyeops.registry.deploy.kube_api", lambda: knative)
    assert main(["registry", "canary", "finish", "ocr", "-n", "eyeops"]) == 0
    assert "InferenceService eyeops/ocr (Knative mode)" in capsys.readouterr().out
    assert knative.calls[-1][-1] == {"spec": {"predictor": {"canaryTrafficPercent": 100}}}
    monkeypatch.setattr("eyeops.registry.deploy.kube_api", lambda: standard)
    assert main(["registry", "canary", "undo", "ocr", "-n", "eyeops"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Standard mode" in err and "Traceback" not in err
    assert standard.calls == []


def test_ocr_gate_refuses_a_model_that_reads_any_device_kind_worse():
    def with_kinds(lens: float, bio: float, silent: float = 0.0) -> dict[str, Any]:
        return {
            **_ocr(0.995, 0.97),
            "per_device": {
                "lensmeter": {"field_accuracy": lens, "silent_error_rate": silent},
                "biometer": {"field_accuracy": bio, "silent_error_rate": 0.0},
            },
        }

    champion = with_kinds(0.90, 0.999)
    better_new_kind = {**with_kinds(0.99, 0.997), "champion_same_set": champion}
    assert ocr_gate(better_new_kind, None).promote  # within 0.005 on the biometer
    forgot = {**with_kinds(0.99, 0.990), "champion_same_set": champion}
    decision = ocr_gate(forgot, None)
    assert not decision.promote
    assert decision.reasons == ["biometer: field accuracy 0.9900 below the champion's 0.9990 − 0.005"]
    riskier = ocr_gate({**with_kinds(0.99, 0.999, silent=0.01), "champion_same_set": champion}, None)
    assert riskier.reasons == ["lensmeter: silent error rate 0.01000 above the champion's 0.00000"]
    # held-out reviewed crops, per kind, judged the same way
    crops = {
        **with_kinds(0.99, 0.999),
        "heldout_crops": {"lensmeter": {"crops": 120, "exact_match": 0.95}},
        "champion_same_set": {
            **champion,
            "heldout_crops": {"lensmeter": {"crops": 120, "exact_match": 0.97}},
        },
    }
    refused = ocr_gate(crops, None)
    assert not refused.promote and "held-out reviewed crops read 0.9500" in refused.reasons[0]


def test_on_a_small_set_one_field_either_way_is_noise_two_are_not():
    champion = {**_ocr(0.99, 0.9), "per_device": {"tonometer": {"field_accuracy": 1.0, "fields": 48}}}
    one = {**_ocr(0.99, 0.9), "per_device": {"tonometer": {"field_accuracy": 47 / 48, "fields": 48}}}
    assert ocr_gate({**one, "champion_same_set": champion}, None).promote
    two = {**_ocr(0.99, 0.9), "per_device": {"tonometer": {"field_accuracy": 46 / 48, "fields": 48}}}
    refused = ocr_gate({**two, "champion_same_set": champion}, None)
    assert refused.reasons == ["tonometer: field accuracy 0.9583 below the champion's 1.0000 − 0.03125"]
    # overall too: 300 fields, one lost is within noise, not four
    base = {**_ocr(0.99, 0.9), "fields": 300, "exams": 40}
    assert ocr_gate({**base, "field_accuracy": 0.99 - 1 / 300, "champion_same_set": base}, None).promote
    assert not ocr_gate({**base, "field_accuracy": 0.99 - 4 / 300, "champion_same_set": base}, None).promote


def test_a_model_that_sends_more_of_a_kinds_exams_to_reviewers_is_refused():
    def kind(accepted: float) -> dict[str, Any]:
        return {"field_accuracy": 0.99, "accepted_exam_rate": accepted, "exams": 40}

    champion = {**_ocr(0.99, 0.9), "per_device": {"as_oct": kind(0.80)}}
    more_work = {**_ocr(0.99, 0.9), "per_device": {"as_oct": kind(0.55)}, "champion_same_set": champion}
    decision = ocr_gate(more_work, None)
    assert decision.reasons == [
        "as_oct: exams accepted with no person 0.550, below the champion's 0.800 − 0.05 (more of its exams"
        " to reviewers)"
    ]
    within = {**_ocr(0.99, 0.9), "per_device": {"as_oct": kind(0.775)}, "champion_same_set": champion}
    assert ocr_gate(within, None).promote  # one exam of 40
