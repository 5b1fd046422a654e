"""The local stand-in for KServe's logger agent: the same CloudEvent headers, request and response
under one Ce-Id, responses only on HTTP 200, other paths untouched."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from inference.payload_logger import LoggerConfig, PayloadLogger


def app_with_logger(mode: str, sink: list[httpx.Request]) -> PayloadLogger:
    app = FastAPI()

    @app.post("/v1/models/lens:predict")
    async def predict(body: dict[str, object]) -> JSONResponse:
        if body.get("bad"):
            return JSONResponse({"error": "no"}, status_code=422)
        return JSONResponse({"predictions": [{"ok": True}]})

    @app.post("/v2/models/lens/infer")
    async def infer(body: dict[str, object]) -> dict[str, object]:
        return {"outputs": []}

    @app.get("/metrics")
    async def metrics() -> str:
        return "x"

    def record(request: httpx.Request) -> httpx.Response:
        sink.append(request)
        return httpx.Response(202)

    config = LoggerConfig("http://monitor/", "lens", "predictor", mode=mode)
    return PayloadLogger(app, config, transport=httpx.MockTransport(record))


async def drive(logger: PayloadLogger, sink: list[httpx.Request], expected: int) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=logger), base_url="http://lens") as c:
        ok = await c.post("/v1/models/lens:predict", json={"instances": [1]}, headers={"ce-id": "abc"})
        assert ok.status_code == 200 and ok.json() == {"predictions": [{"ok": True}]}
        assert (await c.post("/v1/models/lens:predict", json={"bad": 1})).status_code == 422
        await c.post("/v2/models/lens/infer", json={"inputs": []}, headers={"x-request-id": "r-2"})
        assert (await c.get("/metrics")).status_code == 200
    for _ in range(100):
        if len(sink) >= expected:
            break
        await asyncio.sleep(0.01)


def test_mode_all_logs_requests_and_successful_responses_with_kserve_headers() -> None:
    sink: list[httpx.Request] = []
    asyncio.run(drive(app_with_logger("all", sink), sink, 5))
    events = [(r.headers["ce-id"], r.headers["ce-type"].rsplit(".", 1)[1]) for r in sink]
    assert events[:2] == [("abc", "request"), ("abc", "response")]
    assert events[3][0] == events[4][0] == "r-2" and len(events) == 5  # the 422 has no response event
    first = sink[0]
    assert first.headers["ce-inferenceservicename"] == "lens" and first.headers["ce-component"] == "predictor"
    assert first.headers["ce-specversion"] == "1.0" and first.headers["ce-namespace"] == "default"
    assert json.loads(first.content) == {"instances": [1]}
    assert json.loads(sink[1].content) == {"predictions": [{"ok": True}]}


def test_mode_response_logs_only_successful_responses() -> None:
    sink: list[httpx.Request] = []
    asyncio.run(drive(app_with_logger("response", sink), sink, 2))
    assert [r.headers["ce-type"] for r in sink] == ["org.kubeflow.serving.inference.response"] * 2


def test_mode_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EYEOPS_LOGGER_URL", "http://monitor/")
    monkeypatch.setenv("EYEOPS_LOGGER_MODE", "everything")
    with pytest.raises(ValueError, match="EYEOPS_LOGGER_MODE must be one of all, request, response"):
        LoggerConfig.from_env("predictor", "lens")
    monkeypatch.delenv("EYEOPS_LOGGER_URL")
    assert LoggerConfig.from_env("predictor", "lens") is None
