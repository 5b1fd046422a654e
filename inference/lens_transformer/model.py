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
from kserve.protocol.infer_type import InferRequest

from eyeops.errors import EyeopsError, InvalidRequest, PredictorUnavailable
from eyeops.lens.serving import EyeFeatures, eye_features

OnlineRows = Callable[[Sequence[str]], list[dict[str, Any]]]
HINT = 'send {"instances": [{"eye_id": "P0001234-OD"}]} (v1) or a BYTES input "eye_id" (v2)'
RETRY_AFTER_S = 5


class PredictorError(EyeopsError):
    """The lens predictor refused the features (its status and message are passed on)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def eye_ids_from(payload: dict[str, Any] | InferRequest) -> list[str]:
    if isinstance(payload, InferRequest):
        inputs = [i for i in payload.inputs if i.name == "eye_id"]
        if len(inputs) != 1:
            raise InvalidRequest(f"expected one input named eye_id; {HINT}")
        values = inputs[0].data if inputs[0].data is not None else list(inputs[0].as_numpy().reshape(-1))
        ids = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    else:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidRequest(f"missing instances; {HINT}")
        ids = []
        for instance in instances:
            if not isinstance(instance, dict) or not isinstance(instance.get("eye_id"), str):
                raise InvalidRequest(f"every instance needs an eye_id string; {HINT}")
            ids.append(instance["eye_id"])
    if not ids:
        raise InvalidRequest(f"no eye ids; {HINT}")
    return ids


class LensTransformer(Model):  # type: ignore[misc]
    def __init__(
        self,
        name: str,
        online_rows: OnlineRows,
        predictor_url: str,
        predictor_model: str = "lens",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name)
        self.online_rows = online_rows
        self.predictor_url = predictor_url.rstrip("/")
        self.predictor_model = predictor_model
        self.clock = clock
        self.timeout_s = timeout_s
        self._contexts: dict[str, list[EyeFeatures]] = {}
        self._client: httpx.AsyncClient | None = None

    def load(self) -> bool:
        self.ready = True
        return True

    async def preprocess(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        ids = eye_ids_from(payload)
        rows = await asyncio.to_thread(self.online_rows, ids)
        eyes = eye_features(rows, ids, self.clock())
        key = uuid.uuid4().hex
        self._contexts[key] = eyes
        # The eye id travels with its features so the predictor's logged request says whose eye it is
        # (the monitor counts one eye per patient; the predictor reads only the features).
        return {"instances": [{"eye_id": e.eye_id, **e.features} for e in eyes], "_context": key}

    async def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        key = payload.pop("_context")
        eyes = self._contexts.pop(key)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        forward = {k: v for k, v in (headers or {}).items() if k.lower() in ("ce-id", "x-request-id")}
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
        return {"predictions": predictions}
