"""Weight averaging of recogniser checkpoints (model soup) and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eyeops.errors import CheckpointError
from eyeops.ocr.average import average_checkpoints
from eyeops.ocr.model import METADATA_FILE, ArchitectureSpec, build_model, load_recognizer, save_checkpoint
from eyeops.ocr.vocab import CharVocab


def _checkpoint(
    path: Path, seed: int, arch: ArchitectureSpec | None = None, chars: str | None = None
) -> Path:
    torch.manual_seed(seed)
    arch = arch or ArchitectureSpec()
    vocab = CharVocab(chars) if chars else CharVocab()
    save_checkpoint(build_model(vocab, arch), vocab, path, {"version": f"v{seed}"})
    return path


def test_average_is_the_weighted_mean_of_every_float_parameter(tmp_path: Path):
    a, b = _checkpoint(tmp_path / "a", 1), _checkpoint(tmp_path / "b", 2)
    average_checkpoints([a, b], tmp_path / "soup", [0.25, 0.75])
    sa, sb = (load_recognizer(p).model.state_dict() for p in (a, b))
    soup = load_recognizer(tmp_path / "soup").model.state_dict()
    floats = [k for k, v in sa.items() if v.is_floating_point()]
    assert floats and any(not torch.equal(sa[k], sb[k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(soup[k], 0.25 * sa[k] + 0.75 * sb[k])
    meta = json.loads((tmp_path / "soup" / METADATA_FILE).read_text())
    assert [p["weight"] for p in meta["averaged_from"]] == [0.25, 0.75]
    assert [p["metadata"]["version"] for p in meta["averaged_from"]] == ["v1", "v2"]


def test_average_refuses_other_architectures_vocabularies_and_bad_weights(tmp_path: Path):
    a = _checkpoint(tmp_path / "a", 1)
    wide = _checkpoint(tmp_path / "wide", 2, ArchitectureSpec(ffn=256))
    with pytest.raises(CheckpointError, match="another architecture"):
        average_checkpoints([a, wide], tmp_path / "out")
    digits = _checkpoint(tmp_path / "digits", 3, chars="0123456789.")
    with pytest.raises(CheckpointError, match="vocabulary differs"):
        average_checkpoints([a, digits], tmp_path / "out")
    with pytest.raises(ValueError, match="summing to 1"):
        average_checkpoints([a, a], tmp_path / "out", [0.7, 0.7])
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([a], tmp_path / "out")
    assert not (tmp_path / "out").exists()
