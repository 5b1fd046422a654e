"""PredictorClient, the one way both transformers call their predictor, against a real HTTP server on
a local port: what reaches the predictor, how its answers and failures come back, readiness, and
closing on shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse
from prometheus_client import CollectorRegistry

from eyeops.errors import PredictorUnavailable
from eyeops.lens.features import BASE_FEATURES
from eyeops.stack.process import free_port
from inference.lens_transformer.model import LensTransformer
from inference.predictor import PredictorClient, PredictorError
from tests.inprocess.http_predictor import Handler, Predictor, Reply, Seen, answer, predictor

KEY = {"x-eyeops-triton-key": "k-123"}


@contextmanager
def triton(
    handler: Handler, headers: dict[str, str] | None = None, **kwargs: Any
) -> Iterator[tuple[PredictorClient, Predictor]]:
    with predictor(handler) as server:
        client = PredictorClient(
            server.url,
            "trocr",
            protocol="v2",
            headers=KEY if headers is None else headers,
            retry_after_s=7,
            label="OCR predictor",
            **kwargs,
        )
        yield client, server


@contextmanager
def lens(handler: Handler) -> Iterator[tuple[PredictorClient, Predictor]]:
    with predictor(handler) as server:
        client = PredictorClient(
            server.url,
            "lens",
            protocol="v1",
            headers={"authorization": "Bearer t"},
            label="lens predictor",
        )
        yield client, server


def crops_request() -> InferRequest:
    pixels = InferInput("CROPS", [2, 2, 3], "UINT8")
    pixels.set_data_from_numpy(np.arange(12, dtype=np.uint8).reshape(2, 2, 3), binary_data=True)
    return InferRequest("trocr", [pixels], request_id="req-1")


def recognised(request: Seen) -> Reply:
    """Triton's answer in the binary extension: a text and a confidence per crop."""
    text = InferOutput("TEXT", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"12.5", b"OD"], dtype=np.object_), binary_data=True)
    confidence = InferOutput("TOKEN_CONFIDENCE", [2, 3], "FP32")
    confidence.set_data_from_numpy(np.full((2, 3), 0.5, np.float32), binary_data=True)
    body, json_length = InferResponse("req-1", "trocr", [text, confidence], use_binary_outputs=True).to_rest()
    assert isinstance(body, bytes) and json_length
    return Reply(
        200,
        body,
        {"inference-header-content-length": str(json_length), "content-type": "application/octet-stream"},
    )


def test_a_v2_binary_request_reaches_the_model_with_the_key_and_its_answer_is_parsed() -> None:
    with triton(recognised) as (client, server):
        response = asyncio.run(client.infer(crops_request()))

    sent = server.seen[0]
    assert sent.method == "POST" and sent.path == "/v2/models/trocr/infer"
    assert sent.headers["x-eyeops-triton-key"] == "k-123"
    assert sent.headers["content-type"] == "application/octet-stream"
    assert sent.headers["accept-encoding"] == "identity"  # small answers are not worth compressing
    json_length = int(sent.headers["inference-header-content-length"])
    received = InferRequest.from_bytes(sent.body, json_length, "trocr")
    assert received.id == "req-1"
    assert received.inputs[0].as_numpy().tolist() == np.arange(12).reshape(2, 2, 3).tolist()

    assert isinstance(response, InferResponse)
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert [t.decode() if isinstance(t, bytes) else t for t in outputs["TEXT"]] == ["12.5", "OD"]
    assert outputs["TOKEN_CONFIDENCE"].shape == (2, 3) and float(outputs["TOKEN_CONFIDENCE"][1, 2]) == 0.5


def test_a_v1_request_is_json_with_the_fixed_and_the_forwarded_headers() -> None:
    with lens(answer(200, {"predictions": [{"recommended_size_mm": 12.6}]})) as (client, server):
        result = asyncio.run(client.infer({"instances": [{"eye_id": "P1-OD"}]}, headers={"ce-id": "abc"}))
    assert result == {"predictions": [{"recommended_size_mm": 12.6}]}
    sent = server.seen[0]
    assert sent.path == "/v1/models/lens:predict"
    assert sent.headers["authorization"] == "Bearer t" and sent.headers["ce-id"] == "abc"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {"instances": [{"eye_id": "P1-OD"}]}


def test_calls_share_kept_alive_connections_up_to_the_cap() -> None:
    """Issue 32: concurrent calls beyond `max_in_flight` wait for a connection, and the calls after
    the first ones ride on connections already open."""

    def slow(request: Seen) -> Reply:
        return Reply(200, b'{"predictions": []}', {"content-type": "application/json"}, delay_s=0.02)

    with predictor(slow) as server:
        client = PredictorClient(server.url, "lens", protocol="v1", max_in_flight=2)

        async def many() -> None:
            await asyncio.gather(*(client.infer({"instances": []}) for _ in range(12)))
            await client.close()

        asyncio.run(many())
    assert len(server.seen) == 12
    assert len({seen.peer_port for seen in server.seen}) == 2  # two connections, each kept alive


def test_no_call_changes_the_headers_of_the_next() -> None:
    """A JSON request after a binary one must not carry the binary content type and length, nor may
    the caller's dicts change."""
    fixed = dict(KEY)
    extra = {"x-request-id": "r1"}
    with triton(recognised, headers=fixed) as (client, server):

        async def two() -> None:
            await client.infer(crops_request(), headers=extra)
            as_json = InferRequest(
                "trocr", [InferInput("GRAMMAR", [1], "BYTES", data=["digits"])], request_id="r2"
            )
            await client.infer(as_json, headers=extra)

        asyncio.run(two())

    assert fixed == KEY and extra == {"x-request-id": "r1"}
    binary, plain = server.seen
    assert "inference-header-content-length" in binary.headers
    assert "inference-header-content-length" not in plain.headers
    assert plain.headers["content-type"] == "application/json"
    assert plain.headers["x-eyeops-triton-key"] == "k-123" and plain.headers["x-request-id"] == "r1"


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (answer(422, {"error": "field 'al_mm' out of range"}), "lens predictor: field 'al_mm' out of range"),
        (lambda r: Reply(404, b"no such model"), "lens predictor: no such model"),
    ],
)
def test_a_4xx_is_a_predictor_error_with_its_status_and_message(handler: Handler, message: str) -> None:
    with lens(handler) as (client, _), pytest.raises(PredictorError) as info:
        asyncio.run(client.infer({"instances": []}))
    assert info.value.message == message
    assert info.value.status_code in (404, 422) and info.value.retry_after_s is None


def test_a_5xx_is_predictor_unavailable_with_retry_after() -> None:
    unavailable = triton(answer(503, {"error": "model not ready"}))
    with unavailable as (client, _), pytest.raises(PredictorUnavailable) as info:
        asyncio.run(client.infer(crops_request()))
    assert info.value.status_code == 503 and info.value.retry_after_s == 7
    assert info.value.message == "OCR predictor unavailable (HTTP 503); retry later"


def test_an_answer_that_is_not_json_is_predictor_unavailable() -> None:
    not_json = lens(lambda r: Reply(200, b"<html>proxy error</html>"))
    with not_json as (client, _), pytest.raises(PredictorUnavailable, match="not JSON"):
        asyncio.run(client.infer({"instances": []}))


def test_a_v2_answer_that_cannot_be_read_is_predictor_unavailable() -> None:
    header = {"inference-header-content-length": "9"}
    garbled = triton(lambda r: Reply(200, b"\x00\x01 not a v2 answer", header))
    with garbled as (client, _), pytest.raises(PredictorUnavailable, match="not a v2 response"):
        asyncio.run(client.infer(crops_request()))


@pytest.mark.parametrize("failure", ["refused", "hang-up", "slow"])
def test_a_transport_error_is_predictor_unavailable_naming_the_error(failure: str) -> None:
    def fail(request: Seen) -> Reply:
        return Reply(200, b"{}", hang_up=failure == "hang-up", delay_s=2.0 if failure == "slow" else 0.0)

    with predictor(fail) as server:
        url = f"http://127.0.0.1:{free_port()}" if failure == "refused" else server.url
        client = PredictorClient(
            url, "trocr", protocol="v2", retry_after_s=7, label="OCR predictor", timeout_s=0.5
        )
        with pytest.raises(PredictorUnavailable) as info:
            asyncio.run(client.infer(crops_request()))
    named = {"refused": "ClientConnectorError", "hang-up": "ServerDisconnectedError", "slow": "TimeoutError"}
    assert info.value.message == f"OCR predictor unavailable ({named[failure]}); retry later"
    assert info.value.retry_after_s == 7
    assert len(server.seen) == (0 if failure == "refused" else 1)


def test_v2_readiness_is_the_models_ready_path_with_the_key() -> None:
    with triton(answer(200)) as (client, server):
        assert asyncio.run(client.ready()) is True
    assert server.seen[0].method == "GET" and server.seen[0].path == "/v2/models/trocr/ready"
    assert server.seen[0].headers["x-eyeops-triton-key"] == "k-123"
    for status in (503, 400):
        with triton(answer(status)) as (client, _):
            assert asyncio.run(client.ready()) is False


@pytest.mark.parametrize(
    ("handler", "ready"),
    [
        (answer(200, {"name": "lens", "ready": True}), True),
        (answer(200, {"name": "lens", "ready": False}), False),
        (lambda r: Reply(200, b"not json"), False),
        (answer(503, {"error": "loading"}), False),
        (answer(404, {"error": "no model"}), False),
    ],
)
def test_v1_readiness_is_the_models_own_answer(handler: Handler, ready: bool) -> None:
    with lens(handler) as (client, server):
        assert asyncio.run(client.ready()) is ready
    assert server.seen[0].path == "/v1/models/lens"
    assert server.seen[0].headers["authorization"] == "Bearer t"


def test_an_unreachable_or_slow_predictor_is_not_ready() -> None:
    client = PredictorClient(f"http://127.0.0.1:{free_port()}", "trocr", protocol="v2")
    assert asyncio.run(client.ready()) is False
    with triton(lambda r: Reply(200, delay_s=1.0), ready_timeout_s=0.2) as (slow, server):
        assert asyncio.run(slow.ready()) is False
        assert server.seen  # it asked


def test_close_closes_the_connections_and_later_calls_answer_503() -> None:
    with triton(recognised) as (client, server):

        async def scenario() -> None:
            await client.infer(crops_request())
            session = client._http()
            await client.close()
            assert session.closed and client.closed
            with pytest.raises(PredictorUnavailable, match="shutting down"):
                await client.infer(crops_request())
            assert await client.ready() is False

        asyncio.run(scenario())
    assert len(server.seen) == 1  # nothing was sent after close


def test_close_soon_closes_on_the_running_loop_or_at_once_without_one() -> None:
    with triton(recognised) as (client, _):

        async def on_the_loop() -> None:
            await client.infer(crops_request())
            session = client._http()
            client.close_soon()  # what KServe's synchronous stop() does while the server's loop runs
            assert client.closed and not session.closed  # scheduled, not yet run
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert session.closed

        asyncio.run(on_the_loop())
    other = PredictorClient("http://127.0.0.1:9", "trocr")
    other.close_soon()  # no loop runs, nothing was opened
    assert other.closed


def row(seconds: float) -> dict[str, float]:
    values = {f: 1.0 + n for n, f in enumerate(BASE_FEATURES)}
    return {**values, **{f + "__ts": seconds for f in BASE_FEATURES}}


class OneDayOld:
    """An online store whose every eye was measured a day before `now`."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def read(self, eye_ids: Sequence[str]) -> list[dict[str, float]]:
        return [row(self.now.timestamp() - 86400) for _ in eye_ids]


@contextmanager
def lens_model(handler: Handler) -> Iterator[tuple[LensTransformer, Predictor]]:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    with lens(handler) as (client, server):
        model = LensTransformer("lens", OneDayOld(now), client, lambda: now)
        model.load()
        yield model, server


def sizes(request: Seen) -> Reply:
    instances = request.json()["instances"]
    body = {"predictions": [{"recommended_size_mm": 12.1} for _ in instances]}
    return Reply(200, json.dumps(body).encode(), {"content-type": "application/json"})


def test_the_lens_transformer_sends_each_eye_with_its_features_and_answers_in_the_callers_protocol() -> None:
    with lens_model(sizes) as (model, server):

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
    bodies = {r.json()["instances"][0]["eye_id"]: r for r in server.seen}
    first = bodies["P1-OD"].json()["instances"][0]
    assert set(first) == {"eye_id", *BASE_FEATURES}
    assert (
        bodies["P1-OD"].headers["ce-id"] == "c-1" and bodies["P1-OD"].headers["authorization"] == "Bearer t"
    )
    assert "ce-id" not in bodies["P2-OD"].headers


def test_the_lens_transformer_passes_a_4xx_on_and_answers_503_for_a_5xx() -> None:
    refusing = lens_model(answer(422, {"error": "al_mm 40.0 is outside 18-35"}))
    with refusing as (model, _), pytest.raises(PredictorError) as refused:
        asyncio.run(model({"instances": [{"eye_id": "P1-OD"}]}, {}))
    assert (
        refused.value.status_code == 422
        and refused.value.message == "lens predictor: al_mm 40.0 is outside 18-35"
    )
    failing = lens_model(answer(500, {"error": "boom"}))
    with failing as (model, _), pytest.raises(PredictorUnavailable) as down:
        asyncio.run(model({"instances": [{"eye_id": "P1-OD"}]}, {}))
    assert down.value.status_code == 503 and down.value.retry_after_s


def test_stopping_a_model_closes_its_predictor_client(layouts, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    from eyeops.db import ResultsStore
    from eyeops.metrics import OcrMetrics
    from eyeops.settings import Settings
    from inference.ocr_transformer.model import OcrTransformer

    with lens_model(sizes) as (lens_transformer, _):
        lens_transformer.stop()  # KServe's ModelRepository.unload calls stop() synchronously
        assert lens_transformer.ready is False and lens_transformer.predictor.closed

    with triton(recognised) as (client, _):
        ocr = OcrTransformer(
            "ocr",
            layouts,
            ResultsStore.from_url(sqlite_url),
            Settings(),
            OcrMetrics(CollectorRegistry()),
            client,
        )
        ocr.load()

        async def stop_while_serving() -> None:
            await client.infer(crops_request())
            session = client._http()
            ocr.stop()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert session.closed

        asyncio.run(stop_while_serving())
    assert ocr.ready is False and client.closed
