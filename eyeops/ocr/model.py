"""Build, save and load TrOCR recognisers; one preprocessing function for training and serving."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    TrOCRConfig,
    TrOCRProcessor,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
)

from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.errors import CheckpointError
from eyeops.ocr.vocab import BOS, EOS, PAD, VOCAB_FILE, CharVocab

MAX_TOKENS = 24
METADATA_FILE = "eyeops_model.json"
# A checkpoint may carry a second recogniser in this sub-folder (see Recognizer.fallback).
FALLBACK_DIR = "fallback"
# Readings of the first recogniser below this confidence are read again by the fallback.
FALLBACK_BELOW = 0.999


@dataclass(frozen=True)
class ArchitectureSpec:
    """The shipped default: ViT encoder over full-height 32×4 strips, TrOCR decoder (DOMAIN.md §2)."""

    hidden: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 2
    heads: int = 4
    ffn: int = 512
    patch_width: int = 4


def build_model(vocab: CharVocab, arch: ArchitectureSpec = ArchitectureSpec()) -> VisionEncoderDecoderModel:
    """A fresh, randomly initialised VisionEncoderDecoderModel with a TrOCRForCausalLM decoder."""
    encoder = ViTConfig(
        image_size=(CROP_HEIGHT, CROP_WIDTH),
        patch_size=(CROP_HEIGHT, arch.patch_width),
        num_channels=1,
        hidden_size=arch.hidden,
        num_hidden_layers=arch.encoder_layers,
        num_attention_heads=arch.heads,
        intermediate_size=arch.ffn,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    decoder = TrOCRConfig(
        vocab_size=len(vocab),
        d_model=arch.hidden,
        decoder_layers=arch.decoder_layers,
        decoder_attention_heads=arch.heads,
        decoder_ffn_dim=arch.ffn,
        max_position_embeddings=MAX_TOKENS + 8,
        use_learned_position_embeddings=True,
        layernorm_embedding=True,
        dropout=0.0,
        attention_dropout=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    model = VisionEncoderDecoderModel(config=config)
    model.config.decoder_start_token_id = BOS
    model.config.pad_token_id = PAD
    model.config.eos_token_id = EOS
    return model


def pixels_from_crops(crops: np.ndarray) -> torch.Tensor:
    """(N, 32, 128) uint8 crops → (N, 1, 32, 128) float: ink inverted to high values, standardised
    per crop. A white background in raw [0, 1] pixels taught the decoder only the language prior."""
    x = torch.from_numpy(crops.astype(np.float32)).unsqueeze(1)
    x = (255.0 - x) / 255.0
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True)
    return (x - mean) / (std + 0.05)


class Recognizer:
    """A loaded checkpoint plus how to feed it: our char vocabulary, or a Hugging Face processor.

    `fallback`, when set, is a second recogniser trained on another look (other fonts, screens and
    damage): eyeops.ocr.decode.recognize reads again with it every crop this one reads at a confidence
    below `fallback_below`, and keeps the more confident of the two readings. One small model does
    not hold both our renderer's look and a broad one (measured: a fine-tune on the broad set lost two
    points in distribution); two experts in cascade do, at the cost of a second pass over the
    doubtful crops only."""

    def __init__(
        self,
        model: VisionEncoderDecoderModel,
        vocab: CharVocab | None,
        processor: Any | None,
        version: str,
        fallback: Recognizer | None = None,
        fallback_below: float = FALLBACK_BELOW,
    ) -> None:
        self.model = model
        model.eval()  # type: ignore[no-untyped-call]
        self.vocab = vocab
        self.processor = processor
        self.fallback: Recognizer | None = fallback
        self.fallback_below = fallback_below
        self.version: str = version if fallback is None else f"{version}+{fallback.version}"

    def pixels(self, crops: np.ndarray) -> torch.Tensor:
        if self.processor is None:
            return pixels_from_crops(crops)
        rgb = [np.repeat(c[..., None], 3, axis=2) for c in crops]
        return self.processor(images=rgb, return_tensors="pt").pixel_values  # type: ignore[no-any-return]

    def decode_ids(self, ids: list[int]) -> str:
        if self.vocab is not None:
            return self.vocab.decode(ids)
        assert self.processor is not None
        return str(self.processor.tokenizer.decode(ids, skip_special_tokens=True)).strip()


def save_checkpoint(
    model: VisionEncoderDecoderModel, vocab: CharVocab, directory: Path, metadata: dict[str, Any]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    vocab.save(directory)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")


def read_metadata(directory: Path) -> dict[str, Any]:
    """A checkpoint folder's eyeops_model.json ({} when it has none)."""
    path = directory / METADATA_FILE
    if not path.is_file():
        return {}
    metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return metadata


def fallback_below(directory: Path) -> float:
    """The confidence under which a checkpoint's fallback reads again (metadata, else the default)."""
    return float(read_metadata(directory).get("fallback_below", FALLBACK_BELOW))


def load_recognizer(directory: Path, fallback: bool = True) -> Recognizer:
    """Load any TrOCR checkpoint directory.

    Ours carries eyeops_vocab.json (character vocabulary, 32×128 grey input). Any other TrOCR
    checkpoint (for example microsoft/trocr-small-printed, mounted locally) is fed through its own
    TrOCRProcessor; decoding is then unconstrained, as its tokens are not characters. A `fallback/`
    sub-folder holding a checkpoint becomes the recogniser's fallback (unless `fallback` is False:
    training and averaging take only the first model's weights); `fallback_below` in the metadata
    overrides FALLBACK_BELOW.
    """
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory} is not a checkpoint directory: config.json is missing")
    try:
        model = VisionEncoderDecoderModel.from_pretrained(directory)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}: not a VisionEncoderDecoder checkpoint: {exc}") from exc
    version = str(read_metadata(directory).get("version", "unknown"))
    if (directory / VOCAB_FILE).is_file():
        second = None
        if fallback and (directory / FALLBACK_DIR / "config.json").is_file():
            second = load_recognizer(directory / FALLBACK_DIR, fallback=False)
        return Recognizer(model, CharVocab.load(directory), None, version, second, fallback_below(directory))
    try:
        processor = TrOCRProcessor.from_pretrained(directory)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{directory}: neither {VOCAB_FILE} nor a TrOCR processor (preprocessor_config.json "
            f"and tokenizer files) found: {exc}"
        ) from exc
    return Recognizer(model, None, processor, version)


def attach_fallback(primary: Path, fallback: Path, out: Path, below: float = FALLBACK_BELOW) -> Path:
    """A checkpoint folder `out`: `primary`'s files, `fallback` in its FALLBACK_DIR sub-folder, and
    `fallback_below` in the metadata. Both must be checkpoints of ours (character vocabulary)."""
    import shutil

    for directory in (primary, fallback):
        if not (directory / VOCAB_FILE).is_file():
            raise CheckpointError(
                f"{directory} is not an eyeops recogniser checkpoint ({VOCAB_FILE} missing)"
            )
    if not 0.0 < below <= 1.0:
        raise CheckpointError(f"fallback threshold {below} must lie in (0, 1]")
    if out.exists():
        raise CheckpointError(f"{out} exists; choose a new folder")
    shutil.copytree(primary, out, ignore=shutil.ignore_patterns(FALLBACK_DIR))
    shutil.copytree(fallback, out / FALLBACK_DIR, ignore=shutil.ignore_patterns(FALLBACK_DIR))
    meta = {**read_metadata(out), "fallback_below": below}
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return out
