"""Bearer-token authentication in front of every model server of ours (HTTP and gRPC).

Default-deny: every route needs a token of the server's registry except the few that probes and
scrapers call (liveness, readiness, metrics), so a route KServe adds in a later version is guarded
without anyone listing it. The authenticated name (a device id for the OCR transformer, a client or
service name elsewhere) replaces any client-sent principal header, so the model sees who called it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from eyeops.asgi import send_error
from eyeops.auth import Authenticates, Unauthorized

log = logging.getLogger("eyeops.auth")
PRINCIPAL_HEADER = "x-eyeops-principal"
DEVICE_HEADER = "x-eyeops-device-id"
# Probes and scrapers: KServe's liveness (`/`, `/v2/health/live`), readiness (`/v2/health/ready`, a
# model's `/v2/models/m/ready` and v1 `/v1/models/m`), Prometheus (`/metrics`), the monitor's
# `/healthz`. Nothing here returns data about a patient or a model's internals.
OPEN_PATHS = re.compile(
    r"^/(|metrics|healthz|v2/health/(live|ready)|v1/models/[^/:]+|v2/models/[^/]+(/versions/[^/]+)?/ready)$"
)
# KServe's model repository extension (load/unload a model): no eyeops server needs it, and a caller
# with a token must not unload the model it calls. Refused to everyone (403) after authentication.
DISABLED_PATHS = re.compile(r"^/v2/repository(/|$)")
# gRPC methods of the v2 protocol that are probes; every other method needs a token.
OPEN_GRPC_METHODS = frozenset(
    "/inference.GRPCInferenceService/" + m for m in ("ServerLive", "ServerReady", "ModelReady")
)

Scope = dict[str, Any]


def is_open(path: str, open_paths: re.Pattern[str] = OPEN_PATHS) -> bool:
    return bool(open_paths.match(path))


class BearerAuthMiddleware:
    """ASGI middleware: 401 with a JSON error unless the request's bearer token is in `registry`."""

    def __init__(
        self,
        app: Any,
        registry: Authenticates,
        principal_header: str = PRINCIPAL_HEADER,
        on_refused: Callable[[], None] | None = None,
        open_paths: re.Pattern[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.registry = registry
        self.header = principal_header.lower().encode()
        self.on_refused = on_refused
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_open(scope.get("path", ""), self.open_paths):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != self.header]
        claimed = dict(scope["headers"]).get(self.header, b"").decode("latin-1")[:64] or "unknown"
        authorization = dict(headers).get(b"authorization", b"").decode("latin-1")
        try:
            principal = self.registry.authenticate(authorization or None)
        except Unauthorized as exc:
            # Never log the token itself, nor the path (it may carry an id): who claimed to call, why.
            log.warning("refused a %s request claimed by %r: %s", scope.get("method"), claimed, exc.message)
            if self.on_refused is not None:
                self.on_refused()
            await _json_error(send, 401, exc.message, [(b"www-authenticate", b'Bearer realm="eyeops"')])
            return
        if DISABLED_PATHS.match(scope.get("path", "")):
            await _json_error(send, 403, "the model repository API is disabled on eyeops servers")
            return
        headers.append((self.header, principal.encode()))
        await self.app({**scope, "headers": headers}, receive, send)


async def _json_error(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    message: str,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await send_error(send, status, json.dumps({"error": message}).encode(), b"application/json", extra)


class _Metadatum(NamedTuple):
    key: str
    value: str


class _AuthenticatedContext:
    """A gRPC servicer context whose invocation metadata carries the authenticated principal in place
    of whatever the client claimed (KServe's servicer turns that metadata into the model's headers)."""

    def __init__(self, context: Any, header: str, principal: str) -> None:
        self._context = context
        kept = [_Metadatum(m.key, m.value) for m in context.invocation_metadata() or () if m.key != header]
        self._metadata = (*kept, _Metadatum(header, principal))

    def invocation_metadata(self) -> tuple[_Metadatum, ...]:
        return self._metadata

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _refused_stream(handler: Any, method: str) -> Any:
    """A handler of the same streaming kind that refuses the call: the interceptor checks unary
    calls only, and a streaming method KServe may add must fail closed, not open."""
    import grpc

    message = f"eyeops serves unary gRPC calls only; {method.rsplit('/', 1)[-1]} is refused"

    async def refuse(_request: Any, context: Any) -> Any:
        log.warning("refused streaming gRPC %s", method)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    async def refuse_stream(_request: Any, context: Any) -> Any:
        await refuse(_request, context)
        yield  # never reached: makes this the async generator a streaming response needs

    kinds = {
        "unary_stream": (grpc.unary_stream_rpc_method_handler, refuse_stream),
        "stream_unary": (grpc.stream_unary_rpc_method_handler, refuse),
        "stream_stream": (grpc.stream_stream_rpc_method_handler, refuse_stream),
    }
    for kind, (make, behaviour) in kinds.items():
        if getattr(handler, kind, None) is not None:
            return make(
                behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return None  # a handler of no kind: gRPC answers UNIMPLEMENTED


def grpc_interceptor(
    registry: Authenticates | None,
    principal_header: str = PRINCIPAL_HEADER,
    on_refused: Callable[[], None] | None = None,
) -> Any:
    """A grpc.aio server interceptor with the HTTP edge's rules: UNAUTHENTICATED unless the call's
    `authorization: Bearer <token>` metadata is in `registry` (probes aside; None: no check), the
    model repository refused, and an eyeops error mapped to the gRPC code of its HTTP status (a
    client's mistake is never INTERNAL). It must run inside KServe's ExceptionToStatusInterceptor,
    which turns the GrpcExceptions raised here into the call's status."""
    import grpc
    from grpc import aio
    from grpc_interceptor.exceptions import GrpcException

    from eyeops.errors import EyeopsError

    header = principal_header.lower()
    codes = {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        422: grpc.StatusCode.FAILED_PRECONDITION,
        503: grpc.StatusCode.UNAVAILABLE,
    }

    class EdgeInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or details.method in OPEN_GRPC_METHODS:
                return handler
            if handler.unary_unary is None:  # streaming: eyeops serves none, so none passes unchecked
                return _refused_stream(handler, details.method)
            metadata = dict(details.invocation_metadata or ())
            inner = handler.unary_unary

            async def guarded(request: Any, context: Any) -> Any:
                if registry is not None:
                    try:
                        principal = registry.authenticate(metadata.get("authorization"))
                    except Unauthorized as exc:
                        log.warning("refused gRPC %s: %s", details.method, exc.message)
                        if on_refused is not None:
                            on_refused()
                        raise GrpcException(exc.message, grpc.StatusCode.UNAUTHENTICATED) from exc
                    context = _AuthenticatedContext(context, header, principal)
                if "RepositoryModel" in details.method:
                    raise GrpcException(
                        "the model repository API is disabled", grpc.StatusCode.PERMISSION_DENIED
                    )
                try:
                    return await inner(request, context)
                except EyeopsError as exc:
                    # Raised as KServe's ExceptionToStatusInterceptor (outside this one) expects.
                    code = codes.get(exc.status_code, grpc.StatusCode.INTERNAL)
                    raise GrpcException(exc.message, code) from exc

            return grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    return EdgeInterceptor()
