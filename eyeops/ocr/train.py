"""Train the shipped recogniser from scratch on synthetic crops (CPU is enough).

With a state folder, training resumes exactly where it stopped: the weights, AdamW's moments, the
learning-rate schedule's step, the data cursor (the generator that draws batches and jitter) and
torch's random state are saved every `state_every` steps and when a run stops, each save written
whole and then renamed over the last (a run killed mid-save leaves the previous state). A run
resumed from its state draws the same batches and ends with the same weights, bit for bit, as one
that never stopped; so training can run for hours across sessions in the background, in pieces
of `--max-minutes`. A state that is not one, from another configuration or another training set
is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eyeops.errors import EyeopsError
from eyeops.ocr.dataset import CropSet
from eyeops.ocr.decode import recognize
from eyeops.ocr.model import (
    FALLBACK_DIR,
    ArchitectureSpec,
    Recognizer,
    build_model,
    fallback_below,
    load_recognizer,
    pixels_from_crops,
    save_checkpoint,
)
from eyeops.ocr.vocab import CharVocab


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 12000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 300
    seed: int = 0
    max_minutes: float = 60.0
    eval_every: int = 1000
    threads: int = 2
    shift_px: int = 2
    init: str | None = None  # continue from this checkpoint folder instead of from scratch
    stop_at: int | None = None  # stop after this step; the LR schedule still spans `steps`
    state_every: int = 200  # steps between saves of the training state (with a state folder)


STATE_FILE = "training_state.pt"
# What a resumed run may change: how long it runs, how often it reports, how many threads it uses.
RUN_ONLY = ("max_minutes", "eval_every", "threads", "stop_at", "state_every")


class TrainingStateInvalid(EyeopsError):
    """A training state that cannot be resumed: unreadable, partial, or from another run."""


def data_fingerprint(data: CropSet) -> str:
    """sha256 of a training set's crops and texts: a state resumes only on the set it drew from."""
    digest = hashlib.sha256(np.ascontiguousarray(data.crops).tobytes())
    digest.update("\n".join(data.texts).encode("utf-8"))
    return digest.hexdigest()


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Write the state whole, then rename it over the last one."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (STATE_FILE + ".partial")
    torch.save(state, partial)
    os.replace(partial, folder / STATE_FILE)


def load_state(folder: Path, config: TrainConfig, fingerprint: str) -> dict[str, Any] | None:
    """The saved state in `folder` (None when there is none yet), checked against this run."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for a damaged file
        raise TrainingStateInvalid(
            f"{path} is not a readable training state ({type(exc).__name__}); delete it to start over"
        ) from exc
    keys = {"step", "model", "optimizer", "scheduler", "numpy_rng", "torch_rng", "config", "data"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise TrainingStateInvalid(f"{path} is a partial training state; delete it to start over")
    saved = {k: v for k, v in state["config"].items() if k not in RUN_ONLY}
    wanted = {k: v for k, v in asdict(config).items() if k not in RUN_ONLY}
    changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
    if changed:
        raise TrainingStateInvalid(
            f"{path} was saved by a run with other settings ({', '.join(changed)}); resume with the"
            " same ones or use another state folder"
        )
    if state["data"] != fingerprint:
        raise TrainingStateInvalid(
            f"{path} was saved while training on another crop set; resume on the same one"
        )
    return state


def _batch_labels(vocab: CharVocab, texts: list[str]) -> torch.Tensor:
    encoded = [vocab.encode(t) for t in texts]
    width = max(len(e) for e in encoded)
    labels = torch.full((len(texts), width), -100, dtype=torch.long)
    for i, e in enumerate(encoded):
        labels[i, : len(e)] = torch.tensor(e)
    return labels


def _jitter(crops: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Shift each crop by a few pixels: the residual of alignment on fonts training never saw."""
    if shift <= 0:
        return crops
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        dx, dy = rng.integers(-shift, shift + 1, size=2)
        out[i] = np.roll(np.roll(crop, int(dy), axis=0), int(dx), axis=1)
    return out


def exact_match(recognizer: Recognizer, data: CropSet, batch: int = 256) -> float:
    """Share of crops read exactly, with grammar-constrained decoding as served."""
    hits = 0
    for start in range(0, len(data), batch):
        chunk = slice(start, start + batch)
        results = recognize(recognizer, data.crops[chunk], data.grammars[chunk])
        hits += sum(r.text == t for r, t in zip(results, data.texts[chunk], strict=True))
    return hits / max(len(data), 1)


def train(
    train_set: CropSet,
    eval_set: CropSet | None,
    config: TrainConfig,
    out: Path,
    log: bool = True,
    state_dir: Path | None = None,
) -> dict[str, float]:
    """Train, evaluate every eval_every steps, save the checkpoint and its metrics to `out`; with
    `state_dir`, resume from the state saved there (if any) and keep it up to date."""
    fingerprint = data_fingerprint(train_set) if state_dir is not None else ""
    resumed = load_state(state_dir, config, fingerprint) if state_dir is not None else None
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    if config.init:
        start = load_recognizer(Path(config.init), fallback=False)
        if start.vocab is None:
            raise ValueError(f"{config.init} is not an eyeops character-vocabulary checkpoint")
        vocab, model = start.vocab, start.model
    else:
        vocab = CharVocab()
        model = build_model(vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    started = time.monotonic()
    history: list[dict[str, float]] = []
    first_loss = last_loss = float("nan")
    start_step, earlier_minutes = 0, 0.0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        rng.bit_generator.state = resumed["numpy_rng"]
        torch.set_rng_state(resumed["torch_rng"])
        start_step = int(resumed["step"])
        history = list(resumed.get("history", []))
        first_loss = float(resumed.get("first_loss", float("nan")))
        last_loss = float(resumed.get("last_loss", float("nan")))
        earlier_minutes = float(resumed.get("minutes", 0.0))
        if log:
            print(json.dumps({"resumed_at_step": start_step, "minutes_before": round(earlier_minutes, 2)}))

    def keep_state(done: int) -> None:
        if state_dir is None:
            return
        save_state(
            state_dir,
            {
                "step": done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "config": asdict(config),
                "data": fingerprint,
                "history": history,
                "first_loss": first_loss,
                "last_loss": last_loss,
                "minutes": earlier_minutes + (time.monotonic() - started) / 60,
            },
        )

    step = start_step - 1
    for step in range(start_step, config.steps):
        idx = rng.integers(0, len(train_set), size=config.batch_size)
        crops = _jitter(train_set.crops[idx], rng, config.shift_px)
        labels = _batch_labels(vocab, [train_set.texts[i] for i in idx])
        model.train()
        loss = model(pixel_values=pixels_from_crops(crops), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        last_loss = float(loss.detach())
        if step == 0:
            first_loss = last_loss
        minutes = (time.monotonic() - started) / 60
        if eval_set is not None and (step + 1) % config.eval_every == 0:
            acc = exact_match(Recognizer(model, vocab, None, "training"), eval_set)
            history.append({"step": step + 1, "loss": last_loss, "eval_exact_match": acc, "minutes": minutes})
            if log:
                print(json.dumps(history[-1]), flush=True)
        elif log and step % 100 == 0:
            print(
                json.dumps({"step": step, "loss": round(last_loss, 4), "minutes": round(minutes, 2)}),
                flush=True,
            )
        stopping = minutes > config.max_minutes or (config.stop_at is not None and step + 1 >= config.stop_at)
        if stopping or (step + 1) % config.state_every == 0 or step + 1 == config.steps:
            keep_state(step + 1)
        if stopping:
            break
    model.eval()  # type: ignore[no-untyped-call]
    metrics: dict[str, float] = {
        "steps": step + 1,
        "first_loss": first_loss,
        "final_loss": last_loss,
        "minutes": earlier_minutes + (time.monotonic() - started) / 60,
        "train_crops": len(train_set),
    }
    if eval_set is not None:
        metrics["eval_exact_match"] = exact_match(Recognizer(model, vocab, None, "final"), eval_set)
        metrics["eval_crops"] = len(eval_set)
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    meta: dict[str, object] = {
        "version": version,
        "metrics": metrics,
        "config": asdict(config),
        "arch": asdict(ArchitectureSpec()),
        "history": history,
    }
    carried = Path(config.init) / FALLBACK_DIR if config.init else None
    if carried is not None and (carried / "config.json").is_file():
        # Fine-tuning a recogniser that has a fallback fine-tunes its first stage: the second stays.
        meta["fallback_below"] = fallback_below(carried.parent)
    save_checkpoint(model, vocab, out, meta)
    if "fallback_below" in meta and carried is not None:
        shutil.copytree(carried, out / FALLBACK_DIR, dirs_exist_ok=True)
    return metrics
