"""Lens transformer (kserve.Model): {"eye_id": ...} → Feast online features → the lens predictor.

Missing features are a 422 naming them (never imputed); an unknown eye is a 404; features older
than their view's TTL are used but flagged in the answer (`stale_feature_views`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from eyeops.errors import EyeopsError, InvalidRequest, PayloadTooLarge, PredictorUnavailable
from eyeops.lens.serving import EyeFeatures, eye_features
from inference.errors import check_request_id

OnlineRows = Callable[[Sequence[str]], list[dict[str, Any]]]
HINT = 'send {"instances": [{"eye_id": "<patient id>-OD"}]} (v1) or a BYTES input "eye_id" of shape [n] (v2)'
RETRY_AFTER_S = 5
MAX_EYES = 64  # per request: a clinic asks about one patient's eyes, not a cohort (413 beyond)
MAX_EYE_ID_CHARS = 64


class PredictorError(EyeopsError):
    """The lens predictor refused the features (its status and message are passed on)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


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


class LensTransformer(Model):  # type: ignore[misc]
    def __init__(
        self,
        name: str,
        online_rows: OnlineRows,
        predictor_url: str,
        predictor_model: str = "lens",
        predictor_token: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name)
        self.online_rows = online_rows
        self.predictor_url = predictor_url.rstrip("/")
        self.predictor_model = predictor_model
        self._auth = {"authorization": f"Bearer {predictor_token}"} if predictor_token else {}
        self.clock = clock
        self.timeout_s = timeout_s
        self._contexts: dict[str, tuple[list[EyeFeatures], str | None]] = {}
        self._client: httpx.AsyncClient | None = None

    def load(self) -> bool:
        self.ready = True
        return True

    async def predictor_ready(self, transport: Any = None) -> bool:
        """The lens predictor's readiness of its model: part of this server's readiness probe,
        never of a request."""
        from inference.server import answers_ready

        url = f"{self.predictor_url}/v1/models/{self.predictor_model}"
        return await answers_ready(url, self._auth, transport=transport)

    async def preprocess(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        check_request_id(headers)
        ids = eye_ids_from(payload)
        rows = await asyncio.to_thread(self.online_rows, ids)
        eyes = eye_features(rows, ids, self.clock())
        key = uuid.uuid4().hex
        # A v2 request is answered in v2 (its id kept); v1 in v1.
        self._contexts[key] = (eyes, payload.id or "" if isinstance(payload, InferRequest) else None)
        # The eye id travels with its features so the predictor's logged request says whose eye it is
        # (the monitor counts one eye per patient; the predictor reads only the features).
        return {"instances": [{"eye_id": e.eye_id, **e.features} for e in eyes], "_context": key}

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        key = payload.pop("_context")
        eyes, v2_id = self._contexts.pop(key)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        forward = {k: v for k, v in (headers or {}).items() if k.lower() in ("ce-id", "x-request-id")}
        forward.update(self._auth)
        try:
            response = await self._client.post(
                f"{self.predictor_url}/v1/models/{self.predictor_model}:predict",
                json=payload,
                headers=forward,
            )
        except httpx.TransportError as exc:
            raise PredictorUnavailable(
                f"lens predictor unavailable ({type(exc).__name__}); retry later", retry_after_s=RETRY_AFTER_S
            ) from exc
        if response.status_code != 200:
            try:
                message = str(response.json().get("error") or response.text)
            except (ValueError, json.JSONDecodeError):
                message = response.text
            raise PredictorError(f"lens predictor: {message}", response.status_code)
        predictions = response.json()["predictions"]
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
