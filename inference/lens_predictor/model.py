"""Lens predictor (kserve.Model): base features → vault per size, intervals or bounds, support,
P(in range), recommendation; `:explain` → TreeSHAP and size-switch contrasts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from eyeops.errors import InvalidRequest
from eyeops.lens.features import BASE_FEATURES, frame_from_instances
from eyeops.lens.model import LensModel

V1_HINT = 'send {"instances": [{"wtw_mm": ..., "acd_mm": ..., ...}]} with every base feature'


def instances_from_v2(request: InferRequest) -> list[dict[str, Any]]:
    """v2: one FP64/FP32/INT64 input per base feature, shape [n]."""
    inputs = {i.name: i for i in request.inputs}
    missing = [f for f in BASE_FEATURES if f not in inputs]
    if missing:
        raise InvalidRequest(f"v2 request lacks inputs {', '.join(missing)}; send one input per base feature")
    columns = {name: np.asarray(inputs[name].as_numpy(), dtype=float).reshape(-1) for name in BASE_FEATURES}
    n = {len(v) for v in columns.values()}
    if len(n) != 1:
        raise InvalidRequest(f"v2 inputs have different lengths {sorted(n)}; send one value per eye in each")
    size = n.pop()
    return [{name: float(columns[name][i]) for name in BASE_FEATURES} for i in range(size)]


def instances_from_v1(payload: dict[str, Any]) -> list[dict[str, Any]]:
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise InvalidRequest(f"missing instances; {V1_HINT}")
    return instances


class LensPredictor(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.model: LensModel | None = None

    def load(self) -> bool:
        self.model = LensModel.load(self.model_dir)
        self.ready = True
        return True

    def _frame(self, payload: dict[str, Any] | InferRequest) -> Any:
        if isinstance(payload, InferRequest):
            return frame_from_instances(instances_from_v2(payload)), "v2"
        return frame_from_instances(instances_from_v1(payload)), "v1"

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        assert self.model is not None
        frame, protocol = self._frame(payload)
        pred = await asyncio.to_thread(self.model.predict, frame)
        answers = [pred.eye(i, self.model.version) for i in range(len(frame))]
        if protocol == "v1":
            return {"predictions": answers}
        n = len(frame)
        outputs = [
            InferOutput("vault_um", [n, 4], "FP64", data=pred.vault_um.ravel().tolist()),
            InferOutput("lower_um", [n, 4], "FP64", data=pred.lower_um.ravel().tolist()),
            InferOutput("upper_um", [n, 4], "FP64", data=pred.upper_um.ravel().tolist()),
            InferOutput("propensity", [n, 4], "FP64", data=pred.propensity.ravel().tolist()),
            InferOutput("supported", [n, 4], "BOOL", data=pred.supported.ravel().tolist()),
            InferOutput("recommended_size_mm", [n], "FP64", data=pred.recommended_size_mm.tolist()),
            InferOutput("prediction", [n], "BYTES", data=[json.dumps(a) for a in answers]),
        ]
        request_id = payload.id if isinstance(payload, InferRequest) else None
        return InferResponse(request_id or "", self.name, outputs, model_version=self.model.version)

    async def explain(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        assert self.model is not None
        frame, _ = self._frame(payload)
        return {"explanations": await asyncio.to_thread(self.model.explain, frame)}
