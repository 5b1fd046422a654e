"""The OCR wire contract has one home (eyeops.ocr.wire): what a client builds, the service parses
back to the same exam, in v1 and v2, and an answer reads the same in either shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from eyeops.errors import InvalidRequest
from eyeops.ocr.wire import (
    V2_EXAM,
    answer_body,
    exam_from_v1,
    exam_from_v2,
    exam_of_answer,
    v1_request,
    v2_request,
)

IMAGE = b"\x89PNG not really"
HINTS = {"device_id": "iolm-7", "patient_id": "P1234567", "laterality": "OD", "exam_date": "2026-12-07"}


@dataclass
class Tensor:  # what kserve's InferInput offers the parser: name, datatype, shape, data
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]

    def as_numpy(self) -> Any:
        raise AssertionError("JSON data is read as sent")


def test_what_a_client_sends_the_service_reads_back_in_v1_and_v2() -> None:
    v1 = exam_from_v1(json.loads(json.dumps(v1_request(IMAGE, "optical_biometer", HINTS))), "r1")
    body = json.loads(json.dumps(v2_request(IMAGE, "optical_biometer", HINTS)))
    inputs = [Tensor(i["name"], i["datatype"], i["shape"], i["data"]) for i in body["inputs"]]
    v2 = exam_from_v2(inputs, body["parameters"], "r1")
    assert v1 == v2
    assert (v1.image, v1.device_kind, v1.request_id) == (IMAGE, "optical_biometer", "r1")
    assert (v1.device_id, v1.patient_id, v1.laterality, v1.exam_date) == tuple(HINTS.values())
    # hints not given are not sent, and unknown ones never reach the body
    bare = v1_request(IMAGE, "autorefractor", {"patient_id": None, "shoe_size": "44"})
    assert set(bare["instances"][0]) == {"image_b64", "device_kind"}


def test_an_answer_reads_the_same_in_either_shape_and_a_bad_body_says_what_to_send() -> None:
    exam = {"exam_id": "ab" * 32, "status": "accepted", "fields": []}
    v2 = {"outputs": [{"name": V2_EXAM, "datatype": "BYTES", "shape": [1], "data": [json.dumps(exam)]}]}
    assert exam_of_answer(answer_body(exam)) == exam == exam_of_answer(v2)
    with pytest.raises(InvalidRequest, match="image_b64"):
        exam_from_v1({"instances": [{"device_kind": "autorefractor"}]}, None)
