"""The device-token middleware in front of a small real ASGI app with KServe's paths."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from eyeops.auth import TokenRegistry, hash_token
from inference.ocr_transformer.auth import DeviceAuthMiddleware

pytestmark = pytest.mark.unit


def make_client(refused: list[int]) -> TestClient:
    app = FastAPI()

    @app.post("/v1/models/ocr:predict")
    @app.post("/v2/models/ocr/infer")
    async def infer(request: Request) -> dict[str, str | None]:
        return {"device": request.headers.get("x-eyeops-device-id")}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    registry = TokenRegistry({"iolm-2": hash_token("good-token")})
    app.add_middleware(DeviceAuthMiddleware, registry=registry, on_refused=lambda: refused.append(1))
    return TestClient(app)


def test_inference_needs_a_known_token_and_sees_the_authenticated_device(caplog):
    refused: list[int] = []
    client = make_client(refused)
    ok = client.post("/v2/models/ocr/infer", headers={"authorization": "Bearer good-token"})
    assert ok.status_code == 200 and ok.json() == {"device": "iolm-2"}
    spoofed = client.post(
        "/v1/models/ocr:predict",
        headers={"authorization": "Bearer good-token", "x-eyeops-device-id": "someone-else"},
    )
    assert spoofed.json() == {"device": "iolm-2"}
    with caplog.at_level(logging.WARNING, logger="eyeops.auth"):
        bad = client.post(
            "/v2/models/ocr/infer", headers={"authorization": "Bearer stolen", "x-eyeops-device-id": "tono-1"}
        )
    assert bad.status_code == 401 and bad.json() == {"error": "unknown device token"}
    assert bad.headers["www-authenticate"].startswith("Bearer")
    assert "tono-1" in caplog.text and "stolen" not in caplog.text
    assert client.post("/v1/models/ocr:predict").status_code == 401
    assert refused == [1, 1]


def test_probes_stay_open():
    assert make_client([]).get("/v2/health/ready").status_code == 200


def test_a_token_for_one_device_cannot_send_for_another():
    from eyeops.auth import Forbidden
    from eyeops.ocr.pipeline import ExamInput
    from inference.ocr_transformer.model import _bind_device

    named = ExamInput(b"img", "autorefractor", device_id="tono-1")
    with pytest.raises(Forbidden, match="belongs to device 'iolm-2'") as err:
        _bind_device(named, "iolm-2")
    assert err.value.status_code == 403
    assert _bind_device(ExamInput(b"img", "autorefractor"), "iolm-2").device_id == "iolm-2"
    assert _bind_device(named, None) is named
