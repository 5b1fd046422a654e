"""What KServe's agent does for `spec.<component>.logger` on a cluster, for the local stack: every
inference request (and, on HTTP 200, its response) is sent to a sink as a binary CloudEvent with
the agent's headers (`Ce-Id` shared by request and response, taken from the client's `Ce-Id` or
`X-Request-Id` when given; `Ce-Type` org.kubeflow.serving.inference.request|response;
`Ce-Inferenceservicename`, `Ce-Component`, `Ce-Namespace`, `Ce-Endpoint`).

Switched on by EYEOPS_LOGGER_URL (never on a cluster, where the agent logs). Sending is
asynchronous from a bounded queue, so a slow sink never slows inference; what the queue cannot
hold is counted in `eyeops_payload_logger_dropped_total`, as the agent's own logger drops too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import Counter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INFERENCE_PATH = re.compile(r"^/(v1/models/[^/]+:predict|v2/models/[^/]+(/versions/[^/]+)?/infer)$")
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")

_SENT = Counter("eyeops_payload_logger_events", "Logger events sent to the sink", ["outcome"])
_DROPPED = Counter("eyeops_payload_logger_dropped", "Logger events dropped: queue full")


@dataclass(frozen=True)
class LoggerConfig:
    url: str
    service: str
    component: str
    mode: str = "all"
    namespace: str = "default"
    endpoint: str = "default"
    queue_size: int = 10_000
    token: str | None = None  # sent as a bearer token when the sink asks for one (the local monitor)

    @classmethod
    def from_env(cls, component: str, service: str) -> LoggerConfig | None:
        url = os.environ.get("EYEOPS_LOGGER_URL", "")
        if not url:
            return None
        mode = os.environ.get("EYEOPS_LOGGER_MODE", "all")
        if mode not in MODES:
            raise ValueError(f"EYEOPS_LOGGER_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        token_file = os.environ.get("EYEOPS_LOGGER_TOKEN_FILE")
        token = Path(token_file).read_text(encoding="utf-8").strip() if token_file else None
        return cls(url, os.environ.get("EYEOPS_LOGGER_SERVICE", service), component, mode, token=token)


class PayloadLogger:
    """ASGI middleware around a kserve.ModelServer app."""

    def __init__(
        self, app: ASGIApp, config: LoggerConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.transport = transport  # tests inject one; None is the network
        self._queue: asyncio.Queue[tuple[dict[str, str], bytes]] | None = None
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not INFERENCE_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        answer: list[bytes] = []
        status: dict[str, Any] = {}

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["type"] = _header(message.get("headers", []), b"content-type")
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_and_keep, send_and_keep)
        headers = scope.get("headers", [])
        ce_id = _header(headers, b"ce-id") or _header(headers, b"x-request-id") or str(uuid.uuid4())
        if self.config.mode in ("all", "request"):
            self._enqueue(ce_id, REQUEST, b"".join(body), _header(headers, b"content-type"))
        if self.config.mode in ("all", "response") and status.get("code") == 200:
            self._enqueue(ce_id, RESPONSE, b"".join(answer), status.get("type"))

    def _enqueue(self, ce_id: str, ce_type: str, data: bytes, content_type: str | None) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self.config.queue_size)
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())
        c = self.config
        headers = {
            "ce-specversion": "1.0",
            "ce-id": ce_id,
            "ce-type": ce_type,
            "ce-source": f"http://localhost:9081/{c.component}",
            "ce-inferenceservicename": c.service,
            "ce-component": c.component,
            "ce-namespace": c.namespace,
            "ce-endpoint": c.endpoint,
            "content-type": content_type or "application/json",
        }
        if c.token:
            headers["authorization"] = f"Bearer {c.token}"
        try:
            self._queue.put_nowait((headers, data))
        except asyncio.QueueFull:
            _DROPPED.inc()

    async def _send_forever(self) -> None:
        assert self._queue is not None
        async with httpx.AsyncClient(timeout=10, transport=self.transport) as client:
            while True:
                headers, data = await self._queue.get()
                try:
                    reply = await client.post(self.config.url, headers=headers, content=data)
                    _SENT.labels("accepted" if reply.status_code < 300 else f"http_{reply.status_code}").inc()
                except httpx.HTTPError as exc:
                    _SENT.labels("unreachable").inc()
                    logging.debug("payload logger: %s unreachable: %s", self.config.url, exc)


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def install_payload_logger(app: Any, component: str, service: str) -> LoggerConfig | None:
    """Add the middleware to a kserve.ModelServer app when EYEOPS_LOGGER_URL is set."""
    config = LoggerConfig.from_env(component, service)
    if config is not None:
        app.add_middleware(PayloadLogger, config=config)
        logging.info("payload logger on: %s %s → %s (%s)", service, component, config.url, config.mode)
    return config
