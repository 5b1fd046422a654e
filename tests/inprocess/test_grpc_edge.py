"""The gRPC edge interceptor on a real grpc.aio server: a streaming method fails closed (issue 28,
item 8; before, any non-unary handler passed through with no token checked)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc import aio

from inference.auth import grpc_interceptor


class Nobody:
    def authenticate(self, header: str | None) -> str:
        from eyeops.auth import Unauthorized

        raise Unauthorized("send a device token")


def same(b: bytes) -> bytes:
    return b


async def serve_and_call(registry: Any) -> dict[str, grpc.StatusCode]:
    async def answers(_request: bytes, _context: Any) -> Any:
        for part in (b"one", b"two"):
            yield part

    async def gathers(requests: Any, _context: Any) -> bytes:
        return b"".join([r async for r in requests])

    handler = grpc.method_handlers_generic_handler(
        "test.Stream",
        {
            "Out": grpc.unary_stream_rpc_method_handler(answers, same, same),
            "In": grpc.stream_unary_rpc_method_handler(gathers, same, same),
            "Both": grpc.stream_stream_rpc_method_handler(answers, same, same),
        },
    )
    server = aio.server(interceptors=[grpc_interceptor(registry)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes: dict[str, grpc.StatusCode] = {}

    async def requests() -> Any:
        yield b"x"

    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            calls = {
                "Out": lambda: channel.unary_stream("/test.Stream/Out", same, same)(b"x"),
                "In": lambda: channel.stream_unary("/test.Stream/In", same, same)(requests()),
                "Both": lambda: channel.stream_stream("/test.Stream/Both", same, same)(requests()),
            }
            for name, call in calls.items():
                try:
                    made = call()
                    if name == "In":
                        await made
                    else:
                        _ = [part async for part in made]
                    codes[name] = grpc.StatusCode.OK
                except aio.AioRpcError as exc:
                    codes[name] = exc.code()
    finally:
        await server.stop(None)
    return codes


@pytest.mark.parametrize("registry", [Nobody(), None], ids=["tokens", "insecure"])
def test_every_streaming_method_is_refused(registry: Any) -> None:
    codes = asyncio.run(serve_and_call(registry))
    assert codes == dict.fromkeys(("Out", "In", "Both"), grpc.StatusCode.PERMISSION_DENIED)
