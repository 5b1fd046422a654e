"""The OCR service's wire contract, one home for both ends: the v1 (JSON instances) and v2 (Open
Inference Protocol) request bodies a client builds (`v1_request`, `v2_request`), the parsers the
service reads them with (`exam_from_v1`, `exam_from_v2`; every refusal says what to send instead),
and the answer in either shape (`answer_body`, `exam_of_answer`). eyeops.ocr.client and the gateway
send with it; inference.ocr_transformer answers with it."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from eyeops.errors import InvalidRequest

MODEL = "ocr"  # the served model's name: /v1/models/ocr:predict, /v2/models/ocr/infer
V1_IMAGE = "image_b64"  # a v1 instance's image, base64
V2_IMAGE = "image"  # the v2 BYTES input holding the image
V2_EXAM = "exam"  # the v2 BYTES output holding the answer's JSON
HINTS = ("device_id", "patient_id", "laterality", "exam_date")  # optional identity hints


@dataclass(frozen=True)
class ExamInput:
    """One exam as a gateway sends it. Identity fields are optional cross-check hints."""

    image: bytes
    device_kind: str
    device_id: str | None = None
    patient_id: str | None = None
    laterality: str | None = None
    exam_date: str | None = None  # ISO YYYY-MM-DD
    request_id: str | None = None

    @cached_property
    def exam_id(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


V1_HINT = (
    'send {"instances": [{"image_b64": "<base64 PNG/JPEG/TIFF>", "device_kind": "<kind>", '
    '"device_id": "<optional>"}]} (optional identity hints: "patient_id", "laterality", '
    '"exam_date" as YYYY-MM-DD)'
)
V2_HINT = (
    'send one BYTES input named "image" (base64 in JSON, or raw with the binary extension) and '
    'parameters {"device_kind": "<kind>"}'
)


def _b64(value: object, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{where} is not valid base64 ({exc})") from exc


# Identity hints and ids are short; a longer one is refused before it reaches a log or a column.
MAX_CHARS = {"patient_id": 64, "laterality": 8, "exam_date": 10, "device_id": 128, "request_id": 128}


def _opt_str(source: Mapping[str, Any], key: str) -> str | None:
    value = source.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int):
        raise InvalidRequest(f"{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_CHARS[key]:
        raise InvalidRequest(f"{key} is longer than {MAX_CHARS[key]} characters; send the short identifier")
    return text


def _opt_date(source: Mapping[str, Any], key: str) -> str | None:
    """An ISO date (YYYY-MM-DD), as the gateway sends it; anything else is refused, not ignored."""
    value = _opt_str(source, key)
    if value is None:
        return None
    try:
        if len(value) == 10:  # fromisoformat also takes 20260314; the contract is the extended form
            return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise InvalidRequest(f"{key} must be an ISO date YYYY-MM-DD")


def exam_from_v1(body: object, request_id: str | None) -> ExamInput:
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"the body must be a JSON object; {V1_HINT}")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise InvalidRequest(f"expected exactly one exam per request; {V1_HINT}")
    inst = instances[0]
    if V1_IMAGE not in inst:
        raise InvalidRequest(f"missing image_b64; {V1_HINT}")
    if not isinstance(inst.get("device_kind"), str) or len(inst["device_kind"]) > 64:
        raise InvalidRequest(f"missing device_kind; {V1_HINT}")
    return ExamInput(
        image=_b64(inst[V1_IMAGE], V1_IMAGE),
        device_kind=inst["device_kind"],
        device_id=_opt_str(inst, "device_id"),
        patient_id=_opt_str(inst, "patient_id"),
        laterality=_opt_str(inst, "laterality"),
        exam_date=_opt_date(inst, "exam_date"),
        request_id=request_id,
    )


def exam_from_v2(
    inputs: list[Any], parameters: Mapping[str, Any] | None, request_id: str | None
) -> ExamInput:
    """`inputs` are kserve InferInput objects; only their name, datatype, shape and data (JSON, or
    raw bytes through `as_numpy()`) are read."""
    params = dict(parameters or {})
    images = [i for i in inputs if i.name == V2_IMAGE]
    if len(images) != 1:
        raise InvalidRequest(f"expected one input named 'image', got {len(images)}; {V2_HINT}")
    image = images[0]
    if image.datatype != "BYTES":
        raise InvalidRequest(f"input 'image' must be BYTES; {V2_HINT}")
    data = image.data
    if data is None or len(data) == 0:  # raw bytes (the binary extension): as_numpy decodes them
        try:
            data = list(image.as_numpy().reshape(-1))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"input 'image' cannot be read ({type(exc).__name__}); {V2_HINT}") from exc
    if len(data) != 1 or list(image.shape or [1]) not in ([1], [1, 1]):
        raise InvalidRequest(f"input 'image' must have shape [1] and hold one image; {V2_HINT}")
    kind = params.get("device_kind")
    if not isinstance(kind, str) or len(kind) > 64:
        raise InvalidRequest(f"missing parameter device_kind; {V2_HINT}")
    return ExamInput(
        image=_b64(data[0], "input 'image'"),
        device_kind=kind,
        device_id=_opt_str(params, "device_id"),
        patient_id=_opt_str(params, "patient_id"),
        laterality=_opt_str(params, "laterality"),
        exam_date=_opt_date(params, "exam_date"),
        request_id=request_id,
    )


def v1_request(image: bytes, device_kind: str, hints: Mapping[str, str | None]) -> dict[str, Any]:
    """A v1 body for one exam: {"instances": [{image_b64, device_kind, hints given}]}."""
    given = {k: v for k, v in hints.items() if k in HINTS and v}
    instance = {V1_IMAGE: base64.b64encode(image).decode("ascii"), "device_kind": device_kind, **given}
    return {"instances": [instance]}


def v2_request(image: bytes, device_kind: str, hints: Mapping[str, str | None]) -> dict[str, Any]:
    """A v2 JSON body for one exam: one BYTES input (base64) and the kind and hints as parameters."""
    given = {k: v for k, v in hints.items() if k in HINTS and v}
    encoded = base64.b64encode(image).decode("ascii")
    return {
        "inputs": [{"name": V2_IMAGE, "shape": [1], "datatype": "BYTES", "data": [encoded]}],
        "parameters": {"device_kind": device_kind, **given},
    }


def answer_body(exam: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 answer for one exam (the v2 answer carries the same JSON in its `exam` output)."""
    return {"predictions": [dict(exam)]}


def exam_of_answer(body: Mapping[str, Any]) -> dict[str, Any]:
    """The exam of a 200 answer, v1 or v2 (JSON)."""
    if "predictions" in body:
        return dict(body["predictions"][0])
    outputs = {o["name"]: o for o in body.get("outputs", [])}
    return dict(json.loads(outputs[V2_EXAM]["data"][0]))
