"""`eyeops registry seed` and `eyeops registry register`: a first install's models, registered once,
promoted only where there is no champion, in the layout the pipelines and the chart's defaults use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eyeops.cli import main
from eyeops.ocr.offline import MODEL_NAME
from eyeops.registry import ModelRegistry


def test_seed_registers_the_shipped_checkpoint_and_a_simulated_lens_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    reference = tmp_path / "reference.npz"
    args = ["registry", "seed", "--root", str(root), "--lens-eyes", "1000", "--reference", str(reference)]
    assert main([*args, "--uri-prefix", "pvc://eyeops-models/registry"]) == 0
    out = capsys.readouterr().out
    assert "ocr champion: seed (pvc://eyeops-models/registry/ocr/seed)" in out
    registry = ModelRegistry(root)
    ocr, lens = registry.champion("ocr"), registry.champion("lens")
    assert ocr is not None and lens is not None and ocr.version == lens.version == "seed"
    # ocr/seed is a Triton model repository (what the OCR InferenceService's storageUri loads).
    assert (ocr.path / MODEL_NAME / "config.pbtxt").is_file()
    assert (ocr.path / MODEL_NAME / "1" / "checkpoint" / "config.json").is_file()
    assert lens.metadata["synthetic"] is True and lens.metadata["simulated_eyes"] == 1000
    with np.load(reference) as arrays:
        assert arrays["features"].shape[0] > 0 and "prediction_names" in arrays
    # Again: nothing changes.
    assert main(args) == 0
    assert "already registered, left as it is" in capsys.readouterr().out
    assert registry.versions("ocr") == ["seed"] and len(registry.history("ocr")) == 1


def test_seed_never_displaces_a_champion_and_register_adds_the_detector_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps({"detectors": []}))
    registry = ModelRegistry(root)
    registry.register("ocr", "7", artifact, {})
    registry.promote("ocr", "7", "a fine-tune a pipeline promoted")
    assert main(["registry", "seed", "--root", str(root)]) == 0
    champion = registry.champion("ocr")
    assert champion is not None and champion.version == "7"
    assert "ocr champion: 7, kept" in capsys.readouterr().out
    assert registry.versions("lens") == []  # no --lens-eyes: the OCR model only
    register = ["registry", "--root", str(root), "register", "detectors", "seed", str(artifact)]
    assert main([*register, "--promote", "--exist-ok"]) == 0
    detectors = registry.champion("detectors")
    assert detectors is not None and detectors.path == root / "detectors" / "seed"
    assert (detectors.path / "manifest.json").is_file()  # what the monitor loads
    assert main([*register, "--promote", "--exist-ok"]) == 0  # the seed Job run again
    with pytest.raises(SystemExit, match="at least 2"):
        main(["registry", "seed", "--root", str(root), "--lens-eyes", "1"])
