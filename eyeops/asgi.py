"""ASGI pieces every eyeops web server shares, below the frameworks that use them: an error answer
written straight to the client, and a body limit checked before any route reads a byte."""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
Respond = Callable[[Send, int, str], Awaitable[None]]


async def send_error(
    send: Send, status: int, body: bytes, content_type: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def json_error(send: Send, status: int, message: str) -> None:
    await send_error(send, status, json.dumps({"error": message}).encode(), b"application/json")


async def html_error(send: Send, status: int, message: str) -> None:
    page = f"<!doctype html><title>{status}</title><p>{html.escape(message)}</p>\n".encode()
    await send_error(send, status, page, b"text/html; charset=utf-8", [(b"cache-control", b"no-store")])


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`, declared or streamed, before the app reads it whole:
    a server-wide ceiling under whatever each route allows itself. `respond` writes the answer
    (JSON for the model servers, HTML for the console)."""

    def __init__(self, app: Any, max_bytes: int, respond: Respond = json_error) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.respond = respond

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        message = f"the request body is over the limit of {self.max_bytes} bytes; send a smaller one"
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self.respond(send, 413, message)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return event

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self.respond(send, 413, message)


class _TooLarge(Exception):
    pass
