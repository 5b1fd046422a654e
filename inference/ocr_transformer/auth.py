"""ASGI middleware that admits inference requests only with a known device token.

The authenticated device id replaces any client-sent ``x-eyeops-device-id`` header, so the model
sees who called it; health, readiness, metadata and metrics stay open for probes and scrapers.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from eyeops.auth import TokenRegistry, Unauthorized

log = logging.getLogger("eyeops.auth")
DEVICE_HEADER = b"x-eyeops-device-id"
_GUARDED = re.compile(r"^/(v1/models/[^/]+:(predict|explain)|v2/models/[^/]+(/versions/[^/]+)?/infer)$")

Scope = dict[str, Any]


class DeviceAuthMiddleware:
    def __init__(
        self, app: Any, registry: TokenRegistry, on_refused: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.registry = registry
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _GUARDED.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != DEVICE_HEADER]
        claimed = dict(scope["headers"]).get(DEVICE_HEADER, b"").decode("latin-1")[:128] or "unknown"
        authorization = dict(headers).get(b"authorization", b"").decode("latin-1")
        try:
            device = self.registry.authenticate(authorization or None)
        except Unauthorized as exc:
            # Never log the token itself: only who claimed to call and why it was refused.
            log.warning("refused %s for device %r: %s", scope.get("path"), claimed, exc.message)
            if self.on_refused is not None:
                self.on_refused()
            body = json.dumps({"error": exc.message}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="eyeops"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        headers.append((DEVICE_HEADER, device.encode()))
        await self.app({**scope, "headers": headers}, receive, send)
