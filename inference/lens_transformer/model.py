"""Lens transformer (kserve.Model): {"eye_id": ...} → Feast online features → the lens predictor.

Missing features are a 422 naming them (never imputed); an unknown eye is a 404; features older
than their view's TTL are used but flagged in the answer (`stale_feature_views`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from eyeops.errors import InvalidRequest, PayloadTooLarge
from eyeops.features.online import OnlineReader
from eyeops.lens.serving import EyeFeatures, eye_features
from inference.errors import check_request_id
from inference.predictor import PredictorClient, PredictorTransformer

HINT = 'send {"instances": [{"eye_id": "<patient id>-OD"}]} (v1) or a BYTES input "eye_id" of shape [n] (v2)'
RETRY_AFTER_S = 5
MAX_EYES = 64  # per request: a clinic asks about one patient's eyes, not a cohort (413 beyond)
MAX_EYE_ID_CHARS = 64


@dataclass(frozen=True)
class LensCall:
    """What preprocess hands to predict: the eyes' features, the v2 request's id (None: answer in
    v1) and the v1 body for the predictor."""

    eyes: list[EyeFeatures]
    v2_id: str | None
    body: dict[str, Any]


def _v2_eye_ids(payload: InferRequest) -> list[object]:
    inputs = [i for i in payload.inputs if i.name == "eye_id"]
    if len(inputs) != 1:
        raise InvalidRequest(f"expected one input named eye_id; {HINT}")
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        raise InvalidRequest(f"input eye_id must be BYTES; {HINT}")
    try:
        values = list(tensor.data) if tensor.data is not None else list(tensor.as_numpy().reshape(-1))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"input eye_id cannot be read ({type(exc).__name__}); {HINT}") from exc
    expected = 1
    for dim in tensor.shape or [len(values)]:
        expected *= int(dim)
    if expected != len(values):
        raise InvalidRequest(f"input eye_id has shape {tensor.shape} but {len(values)} values; {HINT}")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]


def eye_ids_from(payload: object) -> list[str]:
    if isinstance(payload, InferRequest):
        values = _v2_eye_ids(payload)
    else:
        if not isinstance(payload, dict):
            raise InvalidRequest(f"the body must be a JSON object; {HINT}")
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidRequest(f"missing instances; {HINT}")
        values = [i.get("eye_id") if isinstance(i, dict) else None for i in instances]
    if not values:
        raise InvalidRequest(f"no eye ids; {HINT}")
    if len(values) > MAX_EYES:
        raise PayloadTooLarge(f"{len(values)} eyes in one request; send at most {MAX_EYES}")
    for n, value in enumerate(values):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_EYE_ID_CHARS or not value.isprintable():
            raise InvalidRequest(
                f"eye {n}: every eye_id must be a printable string of 1-{MAX_EYE_ID_CHARS} characters; {HINT}"
            )
    return [str(v) for v in values]


class LensTransformer(PredictorTransformer):
    call_type = LensCall

    def __init__(
        self,
        name: str,
        features: OnlineReader,
        predictor: PredictorClient,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """`features`: the online store the eyes' features are read from; `predictor`: the v1 client
        of the lens predictor (its model, this service's token)."""
        super().__init__(name, predictor)
        self.features = features
        self.clock = clock

    def load(self) -> bool:
        self.ready = True
        return True

    async def preprocess(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> LensCall:
        check_request_id(headers)
        ids = eye_ids_from(payload)
        rows = await asyncio.to_thread(self.features.read, ids)
        eyes = eye_features(rows, ids, self.clock())
        # A v2 request is answered in v2 (its id kept); v1 in v1.
        v2_id = (payload.id or "") if isinstance(payload, InferRequest) else None
        # The eye id travels with its features so the predictor's logged request says whose eye it is
        # (the monitor counts one eye per patient; the predictor reads only the features).
        body = {"instances": [{"eye_id": e.eye_id, **e.features} for e in eyes]}
        return LensCall(eyes, v2_id, body)

    async def predict(
        self, call: LensCall, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        forward = {k: v for k, v in (headers or {}).items() if k.lower() in ("ce-id", "x-request-id")}
        # Unreachable or 5xx: 503 with Retry-After; a 4xx is passed on with the predictor's message.
        response = await self.predictor.infer(call.body, headers=forward)
        eyes, v2_id = call.eyes, call.v2_id
        predictions = response["predictions"]
        for eye, prediction in zip(eyes, predictions, strict=True):
            prediction["eye_id"] = eye.eye_id
            prediction["stale_feature_views"] = eye.stale
            prediction["measured_at"] = eye.measured_at
        if v2_id is None:
            return {"predictions": predictions}
        n = len(predictions)
        outputs = [
            InferOutput("prediction", [n], "BYTES", data=[json.dumps(p) for p in predictions]),
            InferOutput(
                "recommended_size_mm",
                [n],
                "FP64",
                data=[float(p["recommended_size_mm"]) for p in predictions],
            ),
        ]
        return InferResponse(v2_id, self.name, outputs)
