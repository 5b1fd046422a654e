"""The ocr-training pipeline end to end with kfp.local: it fine-tunes the shipped recogniser, beats
Tesseract on held-out exams, exports a Triton model repository that the real tritonserver serves,
the gate refuses a recogniser trained for a handful of steps from scratch, and a fine-tune on the
traffic sets (`eyeops ocr harvest`'s labels and held-out reviewed crops) is judged per device kind
on those held-out crops too."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from kfp import local

from eyeops.ocr.dataset import build_crop_set
from eyeops.ocr.offline import MODEL_NAME, SECOND_MODEL_NAME
from eyeops.registry import ModelRegistry
from eyeops.settings import Settings
from eyeops.stack.process import free_port
from eyeops.stack.triton import triton_process
from kfp_pipelines.ocr_training import ocr_training
from tests.helpers import newest_output

pytestmark = pytest.mark.slow


def test_ocr_training_exports_a_servable_repository_and_gates(tmp_path, layouts):
    outputs = tmp_path / "outputs"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs))
    common = {"registry_root": str(tmp_path / "registry"), "train_exams": 12, "batch_size": 16}
    common |= {"eval_exams": 12, "eval_seed": 1000, "max_minutes": 5.0}
    ocr_training(version="1", steps=15, lr=1e-5, **common)  # fine-tunes the shipped checkpoint

    registry = ModelRegistry(tmp_path / "registry")
    champion = registry.champion("ocr")
    assert champion is not None and champion.version == "1"
    m = champion.metrics
    assert m["field_accuracy"] > 0.97 and m["field_accuracy"] > m["tesseract_field_accuracy"]
    assert m["eval_exams"] == 12 and set(m["per_device"]) == {layout.kind for layout in layouts}
    repo = champion.path
    assert (repo / MODEL_NAME / "config.pbtxt").is_file()
    assert (repo / MODEL_NAME / "1" / "model.py").is_file()
    assert (repo / MODEL_NAME / "1" / "checkpoint" / "model.safetensors").is_file()
    assert (repo / SECOND_MODEL_NAME / "1" / "model.onnx").is_file()  # both recognisers, one repository
    report = newest_output(outputs, "evaluate-recognizer", "report").read_text()
    assert "Tesseract field acc." in report and "data:image/png;base64," in report
    assert "PROMOTED" in newest_output(outputs, "gate-and-register", "decision").read_text()

    # A recogniser trained for five steps from scratch: registered, refused, champion unchanged.
    ocr_training(version="2-untrained", steps=5, lr=1e-3, init_checkpoint="scratch", **common)
    assert registry.champion("ocr").version == "1"  # type: ignore[union-attr]
    refused = registry.get("ocr", "2-untrained")
    assert refused.metrics["champion_same_set"]["field_accuracy"] == pytest.approx(m["field_accuracy"])
    assert any("Tesseract" in r or "floor" in r for r in refused.metadata["gate_reasons"])
    assert "NOT promoted" in newest_output(outputs, "gate-and-register", "decision").read_text()

    # The traffic loop's sets: labels to train on, held-out reviewed crops the gate reads per kind.
    labels, heldout = tmp_path / "traffic.npz", tmp_path / "traffic-heldout.npz"
    build_crop_set(layouts, 6, 11, "train", workers=1).save(labels)
    build_crop_set(layouts, 6, 12, "eval", workers=1).save(heldout)
    traffic = {"crops_uri": str(labels), "heldout_crops_uri": str(heldout), "mix_classic": 6}
    ocr_training(version="3-traffic", steps=10, lr=1e-5, **traffic, **common)
    judged = registry.get("ocr", "3-traffic").metrics
    kinds = {layout.kind for layout in layouts}
    assert set(judged["heldout_crops"]) == kinds == set(judged["champion_same_set"]["heldout_crops"])
    assert all(0.0 <= v["exact_match"] <= 1.0 and v["crops"] > 0 for v in judged["heldout_crops"].values())

    # The registered repository is what Triton loads from a storageUri: serve it and read a crop.
    crops = build_crop_set(layouts, 1, 7, "eval", workers=1)
    port = free_port()
    with triton_process(Settings(), port, tmp_path / "triton.log", repository=repo) as triton:
        triton.wait_ready(timeout_s=180)
        body = {
            "inputs": [
                {
                    "name": "CROPS",
                    "shape": [2, 32, 128],
                    "datatype": "UINT8",
                    "data": np.asarray(crops.crops[:2]).ravel().tolist(),
                },
                {"name": "GRAMMAR", "shape": [2, 1], "datatype": "BYTES", "data": crops.grammars[:2]},
            ]
        }
        reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    texts = next(o for o in reply.json()["outputs"] if o["name"] == "TEXT")["data"]
    assert texts == crops.texts[:2]
