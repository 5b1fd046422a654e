"""Peers read the same aligned field regions as our recogniser, so a comparison measures the reader.

PP-OCRv4's text recogniser ships as an ONNX file inside the `rapidocr-onnxruntime` wheel (its
character table in the model's metadata), so it runs offline with onnxruntime alone. The wheel's
Python side pulls in opencv-python, which would shadow our opencv-python-headless, so set-up
installs it without dependencies and only its model file is used here; the pre- and
post-processing below follow PaddleOCR's recogniser (height 48, width by aspect up to 320,
pixels scaled to [-1, 1]; CTC greedy decoding with index 0 as the blank).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from eyeops.devices.layout import FieldSpec
from eyeops.errors import EyeopsError

REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
HEIGHT, MAX_WIDTH = 48, 320


class PeerMissing(EyeopsError):
    """A peer recogniser's model is not installed."""


def ppocr_model_path() -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")  # located, not imported
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "models" / REC_MODEL if locations else None
    if path is None or not path.is_file():
        raise PeerMissing(
            "the PP-OCRv4 recogniser is not installed: pip install --no-deps rapidocr-onnxruntime==1.4.4"
            " onnxruntime (scripts/setup.sh does)"
        )
    return path


class PPOCRv4:
    """PP-OCRv4's recogniser on one field region at a time, its output restricted to the characters
    the field can hold (as Tesseract gets a whitelist)."""

    def __init__(self, session: Any, characters: list[str]) -> None:
        self.session = session
        self.characters = characters  # index 0: the CTC blank; last: a space
        self.input_name = session.get_inputs()[0].name

    @classmethod
    def load(cls, path: Path | None = None) -> PPOCRv4:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(
            str(path or ppocr_model_path()), options, providers=["CPUExecutionProvider"]
        )
        table = session.get_modelmeta().custom_metadata_map["character"].splitlines()
        return cls(session, ["<blank>", *table, " "])

    def _allowed(self, chars: str) -> np.ndarray:
        allowed = np.zeros(len(self.characters), dtype=bool)
        allowed[0] = True
        for i, c in enumerate(self.characters):
            if c in chars:
                allowed[i] = True
        return allowed

    def read(self, region: np.ndarray, allowed_chars: str | None = None) -> str:
        """The text of a grey field region."""
        h, w = region.shape[:2]
        width = min(MAX_WIDTH, max(8, math.ceil(HEIGHT * w / max(h, 1))))
        resized = cv2.resize(region, (width, HEIGHT), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        pixels = np.zeros((1, 3, HEIGHT, MAX_WIDTH), dtype=np.float32)
        pixels[0, :, :, :width] = (resized / 255.0 - 0.5) / 0.5
        probs = self.session.run(None, {self.input_name: pixels})[0][0]  # (time, classes)
        if allowed_chars is not None:
            probs = np.where(self._allowed(allowed_chars), probs, -1.0)
        best = probs.argmax(axis=1)
        text, previous = [], -1
        for index in best:
            if index != previous and index != 0:
                text.append(self.characters[int(index)])
            previous = int(index)
        return "".join(text).strip().replace(" ", "")


def read_fields(reader: PPOCRv4, aligned: np.ndarray, specs: list[FieldSpec]) -> list[str]:
    """PP-OCRv4 on every field region of an aligned exam image, in the order of `specs`."""
    from eyeops.ocr.tesseract import whitelist

    texts = []
    for spec in specs:
        x, y, w, h = spec.box
        texts.append(reader.read(aligned[y : y + h, x : x + w], whitelist(spec)))
    return texts
