"""The bearer-token middleware in front of a small real ASGI app with KServe's paths: default-deny,
probes open, the authenticated name replacing whatever the client claimed."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from eyeops.auth import TokenRegistry, hash_token
from inference.auth import DEVICE_HEADER, BearerAuthMiddleware


def make_client(refused: list[int]) -> TestClient:
    app = FastAPI()

    @app.post("/v1/models/ocr:predict")
    @app.post("/v2/models/ocr/infer")
    async def infer(request: Request) -> dict[str, str | None]:
        return {"device": request.headers.get("x-eyeops-device-id")}

    @app.get("/v2/health/ready")
    @app.get("/v2/models/ocr/ready")
    @app.get("/metrics")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/models/ocr")
    @app.get("/v2/repository/index")
    @app.get("/a-route-added-later")
    async def metadata() -> dict[str, str]:
        return {"name": "ocr"}

    registry = TokenRegistry({"iolm-2": hash_token("good-token")})
    app.add_middleware(
        BearerAuthMiddleware,
        registry=registry,
        principal_header=DEVICE_HEADER,
        on_refused=lambda: refused.append(1),
    )
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
    assert "tono-1" in caplog.text and "stolen" not in caplog.text and "/v2/models" not in caplog.text
    assert client.post("/v1/models/ocr:predict").status_code == 401
    assert refused == [1, 1]


def test_probes_and_metrics_stay_open_and_every_other_route_is_guarded():
    client = make_client([])
    for path in ("/v2/health/ready", "/v2/models/ocr/ready", "/metrics"):
        assert client.get(path).status_code == 200, path
    good = {"authorization": "Bearer good-token"}
    for path in ("/v2/models/ocr", "/v2/repository/index", "/a-route-added-later"):
        assert client.get(path).status_code == 401, path
    for path in ("/v2/models/ocr", "/a-route-added-later"):
        assert client.get(path, headers=good).status_code == 200
    # KServe's model repository (load/unload) is refused even to a known caller.
    assert client.get("/v2/repository/index", headers=good).status_code == 403


def test_a_token_for_one_device_cannot_send_for_another():
    from eyeops.auth import Forbidden
    from eyeops.ocr.wire import ExamInput
    from inference.ocr_transformer.model import _bind_device

    named = ExamInput(b"img", "autorefractor", device_id="tono-1")
    with pytest.raises(Forbidden, match="belongs to device 'iolm-2'") as err:
        _bind_device(named, "iolm-2")
    assert err.value.status_code == 403
    assert _bind_device(ExamInput(b"img", "autorefractor"), "iolm-2").device_id == "iolm-2"
    assert _bind_device(named, None) is named
