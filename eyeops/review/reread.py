"""Read an exam again from the crops of marked corners: one KServe v2 request to the same Triton
recogniser the OCR service calls, then the service's own validation (eyeops.fields.read_fields)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import httpx
import numpy as np

from eyeops.auth import TRITON_KEY_HEADER
from eyeops.devices.layout import DeviceLayout
from eyeops.errors import PredictorUnavailable
from eyeops.fields import FieldReading, read_fields
from eyeops.ocr.triton_batch import CROPS, GRAMMAR, TEXT, TOKEN_CONFIDENCE, field_confidence


class Recognizer(Protocol):
    def read(self, crops: np.ndarray, grammars: Sequence[str]) -> list[tuple[str, float]]: ...


class TritonRecognizer:
    """The recogniser behind Triton's v2 HTTP API (JSON tensors: a re-read is a handful of crops)."""

    def __init__(
        self, url: str, model: str = "trocr", key: str | None = None, timeout_s: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.headers = {TRITON_KEY_HEADER: key} if key else {}
        self.timeout_s = timeout_s

    def read(self, crops: np.ndarray, grammars: Sequence[str]) -> list[tuple[str, float]]:
        body = {
            "inputs": [
                {
                    "name": CROPS,
                    "shape": list(crops.shape),
                    "datatype": "UINT8",
                    "data": crops.astype(np.uint8).reshape(-1).tolist(),
                },
                {"name": GRAMMAR, "shape": [len(grammars), 1], "datatype": "BYTES", "data": list(grammars)},
            ]
        }
        try:
            response = httpx.post(
                f"{self.url}/v2/models/{self.model}/infer",
                json=body,
                headers=self.headers,
                timeout=self.timeout_s,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise PredictorUnavailable(
                f"the OCR recogniser did not answer ({type(exc).__name__}); try again later", retry_after_s=10
            ) from exc
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        texts = [str(t) for t in outputs[TEXT]["data"]]
        rows = np.asarray(outputs[TOKEN_CONFIDENCE]["data"], dtype=np.float64).reshape(len(texts), -1)
        return [(text, field_confidence(row)) for text, row in zip(texts, rows, strict=True)]


def reread(
    layout: DeviceLayout, crops: dict[str, np.ndarray], recognizer: Recognizer, threshold: float
) -> list[FieldReading]:
    specs = list(layout.all_fields())
    stack = np.stack([crops[s.name] for s in specs])
    recognitions = recognizer.read(stack, [s.grammar for s in specs])
    texts = {s.name: rec for s, rec in zip(specs, recognitions, strict=True)}
    return read_fields(layout, texts, threshold)
