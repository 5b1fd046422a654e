"""Average the weights of recognisers fine-tuned from one another ("model soup").

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time" (ICML 2022, arXiv:2203.05482): checkpoints that share a
pre-trained ancestor lie in one low-loss basin, and their weight average is often more accurate on
shifted data than either. Here the shift is fonts training never saw. Serving cost does not change:
the result has the same architecture as its parents.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from eyeops.errors import CheckpointError
from eyeops.ocr.model import load_recognizer, read_metadata, save_checkpoint


def average_checkpoints(parents: Sequence[Path], out: Path, weights: Sequence[float] | None = None) -> None:
    """Write the weighted average of `parents` (our character-vocabulary checkpoints) to `out`.

    Refuses parents that differ in vocabulary, parameter names or shapes: averaging is only
    meaningful between fine-tunes of one model.
    """
    if len(parents) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    if weights is None:
        weights = [1.0 / len(parents)] * len(parents)
    if len(weights) != len(parents) or any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(
            f"weights must be {len(parents)} non-negative numbers summing to 1, got {list(weights)}"
        )
    loaded = [load_recognizer(p, fallback=False) for p in parents]
    first = loaded[0]
    if first.vocab is None:
        raise CheckpointError(f"{parents[0]} is not an eyeops character-vocabulary checkpoint")
    states = [r.model.state_dict() for r in loaded]
    for path, recognizer, state in zip(parents[1:], loaded[1:], states[1:], strict=True):
        if recognizer.vocab is None or recognizer.vocab.chars != first.vocab.chars:
            raise CheckpointError(f"{path}: vocabulary differs from {parents[0]}")
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise CheckpointError(f"{path}: parameters differ from {parents[0]} (another architecture)")
    averaged: dict[str, torch.Tensor] = {}
    for name, tensor in states[0].items():
        if not tensor.is_floating_point():  # integer buffers (position ids) must agree, not average
            if any(not torch.equal(s[name], tensor) for s in states[1:]):
                raise CheckpointError(f"buffer {name} differs between the checkpoints")
            averaged[name] = tensor
            continue
        total = torch.zeros_like(tensor, dtype=torch.float64)
        for weight, state in zip(weights, states, strict=True):
            total += weight * state[name].double()
        averaged[name] = total.to(tensor.dtype)
    first.model.load_state_dict(averaged)
    save_checkpoint(
        first.model,
        first.vocab,
        out,
        {
            "version": time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
            "averaged_from": [
                {"path": str(p), "weight": w, "metadata": read_metadata(p)}
                for p, w in zip(parents, weights, strict=True)
            ],
        },
    )
