"""What the monitor's tests send: KServe logger events (CloudEvents in binary mode) for lens
predictor calls, their bodies and answers, and how to read one metric back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from eyeops_detectors.monitor import REQUEST, RESPONSE


def headers(
    ce_id: str, ce_type: str = REQUEST, service: str = "lens", component: str = "predictor"
) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-type": ce_type,
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": service,
        "ce-component": component,
        "ce-namespace": "eyeops",
        "ce-endpoint": "default",
        "content-type": "application/json",
    }


def features_body(rng: np.random.Generator, wtw_shift: float = 0.0) -> dict[str, Any]:
    return {
        "instances": [
            {
                "age_years": rng.normal(35, 8),
                "wtw_mm": rng.normal(11.7 + wtw_shift, 0.4),
                "acd_mm": rng.normal(3.2, 0.3),
            }
        ]
    }


def answer(eye_id: str | None = None) -> dict[str, Any]:
    sizes = [
        {"size_mm": s, "vault_um": v, "lower_um": v - 200, "upper_um": v + 200}
        for s, v in zip((12.1, 12.6, 13.2, 13.7), (300.0, 450.0, 600.0, 750.0), strict=True)
    ]
    out: dict[str, Any] = {"sizes": sizes, "recommended_size_mm": 12.6}
    if eye_id:
        out["eye_id"] = eye_id
    return out


def predicted(post: Any, ce_id: str, body: dict[str, Any] | str, status: int = 200) -> int:
    """A lens predictor call as KServe's logger reports it: the request, and on HTTP 200 the
    response with the same Ce-Id (one answer per eye). Returns the request event's status."""
    text = body if isinstance(body, str) else json.dumps(body)
    first = post("/", headers=headers(ce_id), content=text)
    if status == 200:
        eyes = len(json.loads(text)["instances"])
        reply = post(
            "/", headers=headers(ce_id, RESPONSE), content=json.dumps({"predictions": [answer()] * eyes})
        )
        assert reply.status_code in (200, 202), reply.text
    return int(first.status_code)


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if (
            line.startswith(name + " ")
            or line.startswith(name + "{")
            and line.split(" ")[0] == name.split(" ")[0]
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")
