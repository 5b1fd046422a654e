"""The request side both Triton recognisers share: a dynamic batch gathered and answered per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from eyeops.ocr.triton_batch import gather, respond


@dataclass
class Tensor:
    data: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.data


@dataclass
class Response:
    output_tensors: list[Any] | None = None
    error: str | None = None


class PbUtils:
    """The few names of triton_python_backend_utils the helper uses, as plain objects."""

    InferenceResponse = Response

    @staticmethod
    def TritonError(message: str) -> str:  # noqa: N802 (Triton's name)
        return message

    @staticmethod
    def get_input_tensor_by_name(request: dict[str, np.ndarray], name: str) -> Tensor | None:
        return Tensor(request[name]) if name in request else None


def rows(*values: str) -> np.ndarray:
    return np.array([[v.encode()] for v in values], dtype=np.object_)


def test_each_request_gets_its_own_slice_and_a_bad_one_only_its_own_error() -> None:
    requests = [
        {"PIX": np.full((2, 3), 1, np.uint8), "ROWS": rows("a", "")},
        {"PIX": np.full((1, 3), 2, np.uint8), "ROWS": rows("x", "y")},  # 2 rows for 1 item
        {"PIX": np.full((3, 3), 3, np.uint8)},  # no rows: every item unconstrained
    ]
    batch = gather(requests, PbUtils, "PIX", "ROWS")
    assert batch.pixels is not None and batch.pixels[:, 0].tolist() == [1, 1, 3, 3, 3]
    assert batch.rows == ["a", None, None, None, None] and batch.sizes == [2, 0, 3]
    answers = respond(batch, [10, 11, 30, 31, 32], PbUtils, lambda chunk: list(chunk))
    assert answers[0].output_tensors == [10, 11] and answers[2].output_tensors == [30, 31, 32]
    assert answers[1].error == "ROWS has 2 rows for 1 items of PIX" and answers[1].output_tensors is None


def test_a_batch_of_refused_requests_runs_no_model() -> None:
    batch = gather([{"PIX": np.zeros((1, 3), np.uint8), "ROWS": rows()}], PbUtils, "PIX", "ROWS")
    assert batch.pixels is None and respond(batch, [], PbUtils, list)[0].error is not None


def test_a_fields_confidence_is_its_weakest_emitted_token_whatever_the_padding() -> None:
    """TrOCR's TOKEN_CONFIDENCE contract, one home for the model and both of its callers."""
    from eyeops.ocr.triton_batch import PAD, field_confidence, token_confidence_rows

    rows = token_confidence_rows([[0.99, 0.42, 0.97], [], [1.0] * 40], width=6)
    assert rows.shape == (3, 6) and rows.dtype == np.float32
    assert rows[0].tolist()[3:] == [PAD] * 3 and rows[1].tolist() == [PAD] * 6
    assert field_confidence(rows[0]) == pytest.approx(0.42)
    assert field_confidence(rows[1]) == 0.0  # nothing emitted: no confidence
    assert field_confidence(rows[2]) == 1.0  # longer than the tensor: cut, never an error
    assert field_confidence(np.array([0.0, 0.5, PAD])) == 0.0  # a zero-probability token is emitted
