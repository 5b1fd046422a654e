"""Promotion beyond the registry: the storageUri a cluster loads, the InferenceService patch with a
canary share, and the OCR and detector gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eyeops.ocr.gate import gate as ocr_gate
from eyeops.pipelines.gates import gate_for
from eyeops.registry import ModelRegistry, RegistryError
from eyeops.registry.deploy import promote_inference_service, storage_uri_patch

pytestmark = pytest.mark.unit


class FakeCustomObjects:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any:
        self.calls.append((group, version, namespace, plural, name, body))
        return body


def test_storage_uri_uses_the_cluster_prefix(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.bin").write_bytes(b"x")
    local = ModelRegistry(tmp_path / "reg").register("lens", "3", artifact, {})
    assert local.storage_uri.startswith("file://") and local.storage_uri.endswith("/reg/lens/3")
    pvc = ModelRegistry(tmp_path / "reg", uri_prefix="pvc://eyeops-models/registry/").get("lens", "3")
    assert pvc.storage_uri == "pvc://eyeops-models/registry/lens/3"


def test_promotion_patches_the_inference_service_as_a_canary() -> None:
    api = FakeCustomObjects()
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


@pytest.mark.parametrize(("uri", "percent"), [("s3://m/1", 0), ("s3://m/1", 101), ("/plain/path", 50)])
def test_bad_promotion_arguments_are_refused(uri: str, percent: int) -> None:
    with pytest.raises(RegistryError):
        storage_uri_patch(uri, percent)


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
