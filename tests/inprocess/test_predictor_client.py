"""PredictorClient, the one way both transformers call their predictor (KServe's public REST client),
against an httpx.MockTransport: what reaches the predictor, how its answers and failures come back,
readiness, and closing on shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse
from prometheus_client import CollectorRegistry

from eyeops.errors import PredictorUnavailable
from eyeops.lens.features import BASE_FEATURES
from inference.lens_transformer.model import LensTransformer
from inference.predictor import PredictorClient, PredictorError

KEY = {"x-eyeops-triton-key": "k-123"}
Handler = Callable[[httpx.Request], httpx.Response]


class Transport(httpx.MockTransport):
    """A MockTransport that records what it was sent and whether it was closed."""

    def __init__(self, handler: Handler) -> None:
        self.seen: list[httpx.Request] = []
        self.closed = False

        def record(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            return handler(request)

        super().__init__(record)

    async def aclose(self) -> None:
        self.closed = True


def answer(status: int, body: Any = None, **kwargs: Any) -> Handler:
    return lambda request: httpx.Response(status, json=body, **kwargs)


def triton(handler: Handler, headers: dict[str, str] | None = None) -> tuple[PredictorClient, Transport]:
    transport = Transport(handler)
    client = PredictorClient(
        "http://triton:8000",
        "trocr",
        protocol="v2",
        headers=KEY if headers is None else headers,
        transport=transport,
        retry_after_s=7,
        label="OCR predictor",
    )
    return client, transport


def lens(handler: Handler) -> tuple[PredictorClient, Transport]:
    transport = Transport(handler)
    client = PredictorClient(
        "http://predictor:8080",
        "lens",
        protocol="v1",
        headers={"authorization": "Bearer t"},
        transport=transport,
        label="lens predictor",
    )
    return client, transport


def crops_request() -> InferRequest:
    pixels = InferInput("CROPS", [2, 2, 3], "UINT8")
    pixels.set_data_from_numpy(np.arange(12, dtype=np.uint8).reshape(2, 2, 3), binary_data=True)
    return InferRequest("trocr", [pixels], request_id="req-1")


def recognised(request: httpx.Request) -> httpx.Response:
    """Triton's answer in the binary extension: a text and a confidence per crop."""
    text = InferOutput("TEXT", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"12.5", b"OD"], dtype=np.object_), binary_data=True)
    confidence = InferOutput("TOKEN_CONFIDENCE", [2, 3], "FP32")
    confidence.set_data_from_numpy(np.full((2, 3), 0.5, np.float32), binary_data=True)
    body, json_length = InferResponse("req-1", "trocr", [text, confidence], use_binary_outputs=True).to_rest()
    assert isinstance(body, bytes) and json_length
    return httpx.Response(
        200,
        content=body,
        headers={
            "inference-header-content-length": str(json_length),
            "content-type": "application/octet-stream",
        },
    )


def test_a_v2_binary_request_reaches_the_model_with_the_key_and_its_answer_is_parsed() -> None:
    client, transport = triton(recognised)
    response = asyncio.run(client.infer(crops_request()))

    sent = transport.seen[0]
    assert sent.method == "POST" and str(sent.url) == "http://triton:8000/v2/models/trocr/infer"
    assert sent.headers["x-eyeops-triton-key"] == "k-123"
    assert sent.headers["content-type"] == "application/octet-stream"
    json_length = int(sent.headers["inference-header-content-length"])
    received = InferRequest.from_bytes(sent.content, json_length, "trocr")
    assert received.id == "req-1"
    assert received.inputs[0].as_numpy().tolist() == np.arange(12).reshape(2, 2, 3).tolist()

    assert isinstance(response, InferResponse)
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert [t.decode() if isinstance(t, bytes) else t for t in outputs["TEXT"]] == ["12.5", "OD"]
    assert outputs["TOKEN_CONFIDENCE"].shape == (2, 3) and float(outputs["TOKEN_CONFIDENCE"][1, 2]) == 0.5


def test_a_v1_request_is_json_with_the_fixed_and_the_forwarded_headers() -> None:
    client, transport = lens(answer(200, {"predictions": [{"recommended_size_mm": 12.6}]}))
    result = asyncio.run(client.infer({"instances": [{"eye_id": "P1-OD"}]}, headers={"ce-id": "abc"}))
    assert result == {"predictions": [{"recommended_size_mm": 12.6}]}
    sent = transport.seen[0]
    assert str(sent.url) == "http://predictor:8080/v1/models/lens:predict"
    assert sent.headers["authorization"] == "Bearer t" and sent.headers["ce-id"] == "abc"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {"instances": [{"eye_id": "P1-OD"}]}


def test_no_call_changes_the_headers_of_the_next() -> None:
    """KServe's client writes the binary content type and length into the headers it is given: a
    JSON request after a binary one must not carry them, nor may the caller's dicts change."""
    fixed = dict(KEY)
    client, transport = triton(recognised, headers=fixed)
    extra = {"x-request-id": "r1"}
    asyncio.run(client.infer(crops_request(), headers=extra))
    as_json = InferRequest("trocr", [InferInput("GRAMMAR", [1], "BYTES", data=["digits"])], request_id="r2")
    asyncio.run(client.infer(as_json, headers=extra))

    assert fixed == KEY and extra == {"x-request-id": "r1"}
    binary, plain = transport.seen
    assert "inference-header-content-length" in binary.headers
    assert "inference-header-content-length" not in plain.headers
    assert plain.headers["content-type"] == "application/json"
    assert plain.headers["x-eyeops-triton-key"] == "k-123" and plain.headers["x-request-id"] == "r1"


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (answer(422, {"error": "field 'al_mm' out of range"}), "lens predictor: field 'al_mm' out of range"),
        (lambda r: httpx.Response(404, text="no such model"), "lens predictor: no such model"),
    ],
)
def test_a_4xx_is_a_predictor_error_with_its_status_and_message(handler: Handler, message: str) -> None:
    client, _ = lens(handler)
    with pytest.raises(PredictorError) as info:
        asyncio.run(client.infer({"instances": []}))
    assert info.value.message == message
    assert info.value.status_code in (404, 422) and info.value.retry_after_s is None


def test_a_5xx_is_predictor_unavailable_with_retry_after() -> None:
    client, _ = triton(answer(503, {"error": "model not ready"}))
    with pytest.raises(PredictorUnavailable) as info:
        asyncio.run(client.infer(crops_request()))
    assert info.value.status_code == 503 and info.value.retry_after_s == 7
    assert info.value.message == "OCR predictor unavailable (HTTP 503); retry later"


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_a_transport_error_is_predictor_unavailable_naming_the_error(error: type[httpx.HTTPError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)  # type: ignore[call-arg]

    client, transport = triton(fail)
    with pytest.raises(PredictorUnavailable) as info:
        asyncio.run(client.infer(crops_request()))
    assert info.value.message == f"OCR predictor unavailable ({error.__name__}); retry later"
    assert info.value.retry_after_s == 7 and len(transport.seen) == 1


def test_v2_readiness_is_the_models_ready_path_with_the_key() -> None:
    client, transport = triton(answer(200))
    assert asyncio.run(client.ready()) is True
    assert str(transport.seen[0].url) == "http://triton:8000/v2/models/trocr/ready"
    assert transport.seen[0].headers["x-eyeops-triton-key"] == "k-123"
    assert asyncio.run(triton(answer(503))[0].ready()) is False
    assert asyncio.run(triton(answer(400))[0].ready()) is False


@pytest.mark.parametrize(
    ("handler", "ready"),
    [
        (answer(200, {"name": "lens", "ready": True}), True),
        (answer(200, {"name": "lens", "ready": False}), False),
        (lambda r: httpx.Response(200, text="not json"), False),
        (answer(503, {"error": "loading"}), False),
        (answer(404, {"error": "no model"}), False),
    ],
)
def test_v1_readiness_is_the_models_own_answer(handler: Handler, ready: bool) -> None:
    client, transport = lens(handler)
    assert asyncio.run(client.ready()) is ready
    assert str(transport.seen[0].url) == "http://predictor:8080/v1/models/lens"
    assert transport.seen[0].headers["authorization"] == "Bearer t"


def test_an_unreachable_or_slow_predictor_is_not_ready() -> None:
    for error in (httpx.ConnectError, httpx.ReadTimeout):

        def fail(request: httpx.Request, error: type[httpx.HTTPError] = error) -> httpx.Response:
            raise error("down", request=request)  # type: ignore[call-arg]

        client, transport = triton(fail)
        assert asyncio.run(client.ready()) is False
        assert transport.seen  # it asked


def test_close_closes_the_connections_and_later_calls_answer_503() -> None:
    client, transport = triton(recognised)

    async def scenario() -> None:
        await client.infer(crops_request())
        await client.close()
        assert transport.closed and client.closed
        with pytest.raises(PredictorUnavailable, match="shutting down"):
            await client.infer(crops_request())
        assert await client.ready() is False

    asyncio.run(scenario())
    assert len(transport.seen) == 1  # nothing was sent after close


def test_close_soon_closes_on_the_running_loop_or_at_once_without_one() -> None:
    client, transport = triton(recognised)

    async def on_the_loop() -> None:
        client.close_soon()  # what KServe's synchronous stop() does while the server's loop runs
        assert client.closed and not transport.closed  # scheduled, not yet run
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert transport.closed

    asyncio.run(on_the_loop())
    other, other_transport = triton(recognised)
    other.close_soon()  # no loop runs
    assert other_transport.closed


def row(seconds: float) -> dict[str, float]:
    values = {f: 1.0 + n for n, f in enumerate(BASE_FEATURES)}
    return {**values, **{f + "__ts": seconds for f in BASE_FEATURES}}


class OneDayOld:
    """An online store whose every eye was measured a day before `now`."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def read(self, eye_ids: Sequence[str]) -> list[dict[str, float]]:
        return [row(self.now.timestamp() - 86400) for _ in eye_ids]


def lens_model(handler: Handler) -> tuple[LensTransformer, Transport]:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    client, transport = lens(handler)
    model = LensTransformer("lens", OneDayOld(now), client, lambda: now)
    model.load()
    return model, transport


def sizes(request: httpx.Request) -> httpx.Response:
    instances = json.loads(request.content)["instances"]
    return httpx.Response(200, json={"predictions": [{"recommended_size_mm": 12.1} for _ in instances]})


def test_the_lens_transformer_sends_each_eye_with_its_features_and_answers_in_the_callers_protocol() -> None:
    model, transport = lens_model(sizes)

    async def both() -> tuple[Any, Any]:
        v1 = model({"instances": [{"eye_id": "P1-OD"}, {"eye_id": "P1-OS"}]}, {"ce-id": "c-1"})
        eye = InferInput("eye_id", [1], "BYTES", data=["P2-OD"])
        v2 = model(InferRequest("lens", [eye], request_id="v2-id"), {})
        return await asyncio.gather(v1, v2)  # concurrent calls keep their own context

    (v1, _), (v2, _) = asyncio.run(both())
    assert [p["eye_id"] for p in v1["predictions"]] == ["P1-OD", "P1-OS"]
    assert v1["predictions"][0]["stale_feature_views"] == [] and v1["predictions"][0]["measured_at"]
    assert isinstance(v2, InferResponse) and v2.id == "v2-id"
    assert json.loads(v2.outputs[0].data[0])["eye_id"] == "P2-OD"
    bodies = {json.loads(r.content)["instances"][0]["eye_id"]: r for r in transport.seen}
    first = json.loads(bodies["P1-OD"].content)["instances"][0]
    assert set(first) == {"eye_id", *BASE_FEATURES}
    assert (
        bodies["P1-OD"].headers["ce-id"] == "c-1" and bodies["P1-OD"].headers["authorization"] == "Bearer t"
    )
    assert "ce-id" not in bodies["P2-OD"].headers


def test_the_lens_transformer_passes_a_4xx_on_and_answers_503_for_a_5xx() -> None:
    model, _ = lens_model(answer(422, {"error": "al_mm 40.0 is outside 18-35"}))
    with pytest.raises(PredictorError) as refused:
        asyncio.run(model({"instances": [{"eye_id": "P1-OD"}]}, {}))
    assert (
        refused.value.status_code == 422
        and refused.value.message == "lens predictor: al_mm 40.0 is outside 18-35"
    )
    model, _ = lens_model(answer(500, {"error": "boom"}))
    with pytest.raises(PredictorUnavailable) as down:
        asyncio.run(model({"instances": [{"eye_id": "P1-OD"}]}, {}))
    assert down.value.status_code == 503 and down.value.retry_after_s


def test_stopping_a_model_closes_its_predictor_client(layouts, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    from eyeops.db import ResultsStore
    from eyeops.metrics import OcrMetrics
    from eyeops.settings import Settings
    from inference.ocr_transformer.model import OcrTransformer

    lens_transformer, lens_transport = lens_model(sizes)
    lens_transformer.stop()  # KServe's ModelRepository.unload calls stop() synchronously
    assert lens_transformer.ready is False and lens_transport.closed

    client, transport = triton(recognised)
    ocr = OcrTransformer(
        "ocr", layouts, ResultsStore.from_url(sqlite_url), Settings(), OcrMetrics(CollectorRegistry()), client
    )
    ocr.load()

    async def stop_while_serving() -> None:
        ocr.stop()
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(stop_while_serving())
    assert ocr.ready is False and transport.closed and client.closed
