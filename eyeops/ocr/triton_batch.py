"""The request side of both Triton Python-backend recognisers (`trocr`, `ppocr`): the requests of a
dynamic batch gathered into one pixel array with one text row per item (a grammar, a character
set), and the results split back into one response per request. Also the one home of TrOCR's
tensor contract, which the model and its callers (the OCR transformer, the console's re-read)
share: its tensors' names, and how a field's confidence is read from its tokens'.

Triton's `triton_python_backend_utils` exists only inside the backend's stub, so the models pass it
in. numpy only: this runs in the Triton model's environment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

R = TypeVar("R")

# TrOCR's tensors (inference/triton/trocr/config.pbtxt): crops and one grammar per crop in; the text
# and the probability of each emitted token (end token included) out, padded with PAD.
CROPS, GRAMMAR = "CROPS", "GRAMMAR"
TEXT, TOKEN_CONFIDENCE = "TEXT", "TOKEN_CONFIDENCE"
PAD = -1.0


def token_confidence_rows(token_confidences: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """The model's TOKEN_CONFIDENCE output: one row per reading, `width` wide, padded with PAD."""
    rows = np.full((len(token_confidences), width), PAD, dtype=np.float32)
    for i, values in enumerate(token_confidences):
        kept = list(values)[:width]
        rows[i, : len(kept)] = kept
    return rows


def field_confidence(row: np.ndarray) -> float:
    """A field's confidence: its least probable emitted token (0 when it emitted none)."""
    emitted = np.asarray(row, dtype=np.float64)
    emitted = emitted[emitted > PAD]
    return float(emitted.min()) if emitted.size else 0.0


@dataclass
class GatheredBatch:
    """Every accepted request's items in order; `responses` holds an error response for each
    request refused while gathering, None for the rest."""

    pixels: np.ndarray | None
    rows: list[str | None]
    sizes: list[int]
    responses: list[Any]


def gather(requests: Sequence[Any], pb_utils: Any, pixels_name: str, rows_name: str) -> GatheredBatch:
    """The requests' `pixels_name` tensors concatenated, with their optional `rows_name` text rows
    (an absent tensor or an empty row: None); a request whose rows do not match its items is
    answered with an error and left out."""
    arrays: list[np.ndarray] = []
    rows: list[str | None] = []
    sizes: list[int] = []
    responses: list[Any] = [None] * len(requests)
    for i, request in enumerate(requests):
        batch = pb_utils.get_input_tensor_by_name(request, pixels_name).as_numpy()
        tensor = pb_utils.get_input_tensor_by_name(request, rows_name)
        if tensor is None:
            items: list[str | None] = [None] * len(batch)
        else:
            raw = tensor.as_numpy().reshape(-1)
            if len(raw) != len(batch):
                error = f"{rows_name} has {len(raw)} rows for {len(batch)} items of {pixels_name}"
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
                sizes.append(0)
                continue
            items = [(r.decode("utf-8") if isinstance(r, bytes) else str(r)) or None for r in raw]
        arrays.append(batch)
        rows.extend(items)
        sizes.append(len(batch))
    return GatheredBatch(np.concatenate(arrays) if arrays else None, rows, sizes, responses)


def respond(
    batch: GatheredBatch, results: Sequence[R], pb_utils: Any, tensors: Callable[[Sequence[R]], list[Any]]
) -> list[Any]:
    """One response per request: its slice of `results` as `tensors(slice)`, or its error."""
    out = list(batch.responses)
    offset = 0
    for i, size in enumerate(batch.sizes):
        if out[i] is not None:
            continue
        chunk = results[offset : offset + size]
        offset += size
        out[i] = pb_utils.InferenceResponse(output_tensors=tensors(chunk))
    return out


def parameter(config: dict[str, Any], key: str) -> str:
    """A string parameter of a Triton model's config (`parameters { key: … }`), "" when unset."""
    return str(config.get("parameters", {}).get(key, {}).get("string_value", ""))
