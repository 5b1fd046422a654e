"""PredictorClient over gRPC (KServe's grpc-v2 predictor protocol, what the OCR transformer speaks to
Triton where it can), against a real grpc.aio server on loopback that implements KServe's v2
inference service: the request reaches the named model with the key in the metadata Triton reads,
texts come back, statuses map to the same errors as over HTTP, readiness, closing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from eyeops.auth import TRITON_GRPC_KEY_HEADER
from eyeops.errors import PredictorUnavailable
from inference.ocr_transformer.__main__ import build_parser, build_predictor
from inference.predictor import PredictorClient, PredictorError

KEY = "k-123"


class Triton(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Answers ModelInfer and ModelReady as Triton does, after `fail` had its say."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.fail: Callable[[], tuple[grpc.StatusCode, str] | None] = lambda: None

    async def _check(self, context: Any, what: str) -> None:
        metadata = {k: v for k, v in context.invocation_metadata()}
        self.seen.append((what, metadata))
        if metadata.get(TRITON_GRPC_KEY_HEADER) != KEY:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "This protocol is restricted")
        failure = self.fail()
        if failure:
            await context.abort(*failure)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (the protocol's name)
        await self._check(context, f"infer {request.model_name} {request.id}")
        n = InferRequest.from_grpc(request).inputs[0].as_numpy().shape[0]
        text = InferOutput("TEXT", [n], "BYTES")
        text.set_data_from_numpy(np.array([b"12.5"] * n, dtype=np.object_))
        confidence = InferOutput("TOKEN_CONFIDENCE", [n, 3], "FP32")
        confidence.set_data_from_numpy(np.full((n, 3), 0.5, np.float32))
        return InferResponse(request.id, request.model_name, [text, confidence], model_version="3").to_grpc()

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._check(context, f"ready {request.name}")
        return pb.ModelReadyResponse(ready=request.name in ("trocr", "ppocr"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def triton() -> AsyncIterator[tuple[Triton, int]]:
    server, servicer, port = grpc.aio.server(), Triton(), free_port()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(None)


def client(port: int, key: str = KEY) -> PredictorClient:
    return PredictorClient(
        f"grpc://127.0.0.1:{port}", "trocr", protocol="grpc-v2",
        headers={TRITON_GRPC_KEY_HEADER: key}, retry_after_s=7, label="OCR predictor", timeout_s=5,
    )  # fmt: skip


def crops_request() -> InferRequest:
    pixels = InferInput("CROPS", [2, 2, 3], "UINT8")
    pixels.set_data_from_numpy(np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    return InferRequest("trocr", [pixels], request_id="req-1")


def test_a_request_reaches_the_named_model_with_the_key_and_its_texts_come_back() -> None:
    async def scenario() -> None:
        async with triton() as (server, port):
            c = client(port)
            response = await c.infer(crops_request())
            assert server.seen[-1] == ("infer trocr req-1", server.seen[-1][1])
            assert server.seen[-1][1][TRITON_GRPC_KEY_HEADER] == KEY
            outputs = {o.name: o.as_numpy() for o in response.outputs}
            assert [t.decode() if isinstance(t, bytes) else t for t in outputs["TEXT"]] == ["12.5", "12.5"]
            assert outputs["TOKEN_CONFIDENCE"].shape == (2, 3) and response.model_version == "3"
            await c.infer(crops_request(), model="ppocr")  # another model on the same Triton
            assert server.seen[-1][0] == "infer ppocr req-1"
            await c.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("status", "http"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.NOT_FOUND, 404),
    ],
)
def test_a_refusal_is_a_predictor_error_with_the_http_status_it_means(
    status: grpc.StatusCode, http: int
) -> None:
    async def scenario() -> None:
        async with triton() as (server, port):
            server.fail = lambda: (status, "unexpected shape for input 'CROPS'")
            c = client(port)
            with pytest.raises(PredictorError) as info:
                await c.infer(crops_request())
            assert info.value.status_code == http
            assert info.value.message == "OCR predictor: unexpected shape for input 'CROPS'"
            await c.close()

    asyncio.run(scenario())


def test_an_unavailable_or_failing_triton_is_a_503_naming_the_status() -> None:
    async def scenario() -> None:
        async with triton() as (server, port):
            server.fail = lambda: (grpc.StatusCode.INTERNAL, "stub crashed")
            c = client(port)
            with pytest.raises(PredictorUnavailable) as info:
                await c.infer(crops_request())
            assert info.value.message == "OCR predictor unavailable (gRPC INTERNAL); retry later"
            assert info.value.retry_after_s == 7
            wrong = client(port, key="nope")  # Triton answers a missing key with UNAVAILABLE
            with pytest.raises(PredictorUnavailable, match="gRPC UNAVAILABLE"):
                await wrong.infer(crops_request())
            await c.close()
            await wrong.close()
        gone = client(port)  # nobody listens any more
        with pytest.raises(PredictorUnavailable, match="gRPC UNAVAILABLE"):
            await gone.infer(crops_request())
        await gone.close()

    asyncio.run(scenario())


def test_readiness_is_the_models_with_the_key_and_false_on_any_error() -> None:
    async def scenario() -> None:
        async with triton() as (server, port):
            c = client(port)
            assert await c.ready() is True and await c.ready("ppocr") is True
            assert await c.ready("other") is False
            assert server.seen[0] == ("ready trocr", server.seen[0][1])
            assert await client(port, key="nope").ready() is False
            await c.close()
            assert await c.ready() is False
            with pytest.raises(PredictorUnavailable, match="shutting down"):
                await c.infer(crops_request())
        assert await client(port).ready() is False

    asyncio.run(scenario())


def test_the_transformer_speaks_grpc_when_kserve_says_grpc_v2(tmp_path: Path) -> None:
    key = tmp_path / "triton.key"
    key.write_text(KEY + "\n")

    async def scenario() -> None:
        async with triton() as (server, port):
            argv = ["--predictor_model", "trocr", "--predictor_protocol", "grpc-v2"]
            argv += ["--predictor_key_file", str(key), "--predictor_host", f"127.0.0.1:{port}"]
            own, _ = build_parser().parse_known_args(argv)
            c = build_predictor(own, argv)
            assert c.protocol == "grpc-v2" and c.base_url == f"grpc://127.0.0.1:{port}"
            assert await c.ready() and server.seen[-1][1][TRITON_GRPC_KEY_HEADER] == KEY
            await c.close()

    asyncio.run(scenario())
    argv = ["--predictor_model", "trocr", "--predictor_protocol", "v1", "--predictor_host", "t:1"]
    with pytest.raises(SystemExit, match="v2 \\(HTTP\\) or grpc-v2"):
        build_predictor(build_parser().parse_known_args(argv)[0], argv)
    with pytest.raises(ValueError, match="grpc\\(s\\)://"):
        PredictorClient("http://t:1", "trocr", protocol="grpc-v2")


def test_a_client_made_before_the_servers_loop_runs_calls_from_inside_it() -> None:
    """The transformer makes its client in main(), before KServe starts its event loop: the gRPC
    channel must belong to the loop that uses it (a channel made outside answered every call with
    "attached to a different loop", a 500)."""
    port = free_port()
    c = client(port)  # no loop runs here

    async def scenario() -> None:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Triton(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            response = await c.infer(crops_request())
            assert [o.name for o in response.outputs] == ["TEXT", "TOKEN_CONFIDENCE"]
            assert await c.ready()
        finally:
            await c.close()
            await server.stop(None)

    asyncio.run(scenario())
