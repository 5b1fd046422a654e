"""kserve.ModelServer with what every eyeops model server needs on top: a listen address (KServe
binds every interface; the local stack binds 127.0.0.1), bearer authentication on HTTP and gRPC,
and error bodies that never echo the request.

Every entrypoint builds its server here, so a model server cannot be started without the same
edge: `serve(models, EdgeOptions.from_args(own), registry)`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("eyeops.server")


def add_edge_arguments(parser: argparse.ArgumentParser, tokens_help: str) -> None:
    """The listen address and token registry options every entrypoint shares."""
    parser.add_argument(
        "--bind_host", default="0.0.0.0", help="address to listen on (the local stack passes 127.0.0.1)"
    )
    parser.add_argument("--tokens", default=None, help=tokens_help)
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve without authentication (only for a stack nobody else can reach)",
    )


@dataclass(frozen=True)
class EdgeOptions:
    host: str
    tokens: Path | None
    insecure: bool

    @classmethod
    def from_args(cls, own: argparse.Namespace) -> EdgeOptions:
        return cls(own.bind_host, Path(own.tokens) if own.tokens else None, bool(own.insecure))


def load_registry(edge: EdgeOptions, what: str) -> Any:
    """The token registry to authenticate callers with, or None with --insecure. Starting without
    either is refused: an unauthenticated server must be asked for, never a default."""
    from eyeops.auth import TokenRegistry

    if edge.tokens is not None:
        registry = TokenRegistry.from_file(edge.tokens, what)
        log.info("authentication on: %d %s tokens in %s", len(registry), what, edge.tokens)
        return registry
    if edge.insecure:
        log.warning("authentication OFF (--insecure): anyone who reaches this port is served")
        return None
    raise SystemExit(
        f"no --tokens file of {what} tokens: pass one (made with `eyeops gateway token`), or --insecure"
    )


ReadyCheck = Callable[[], Coroutine[Any, Any, bool]]


def server_ready(models: Sequence[Any], kserve_ready: ReadyCheck, predictor_ready: ReadyCheck) -> ReadyCheck:
    """The server's readiness (`/v2/health/ready`, the pod's readiness probe): its own models, what
    KServe checks, and the predictor behind it. Only probes ask this; requests check their model's
    own flag, so a predictor's health costs them nothing."""

    async def ready() -> bool:
        for model in models:
            if not await model.healthy():
                return False
        return bool(await kserve_ready()) and await predictor_ready()

    return ready


def serve(
    models: Sequence[Any],
    edge: EdgeOptions,
    registry: Any,
    principal_header: str | None = None,
    on_refused: Callable[[], None] | None = None,
    max_body_bytes: int = 1 << 20,
    predictor_ready: ReadyCheck | None = None,
) -> None:
    """Start kserve.ModelServer with `models` on `edge.host`, behind `registry` (None: no auth);
    bodies over `max_body_bytes` are 413 before anything reads them. `predictor_ready`: a
    transformer's check of its predictor, which the server's readiness then includes."""
    import kserve
    from kserve import model_server
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.server import RESTServer

    from eyeops.asgi import BodyLimitMiddleware
    from inference.auth import PRINCIPAL_HEADER, BearerAuthMiddleware, grpc_interceptor
    from inference.errors import install_error_handlers

    # KServe 0.21 answers through FastAPI's ORJSONResponse, which FastAPI deprecates with a warning;
    # every `warnings.catch_warnings()` elsewhere resets Python's once-per-place memory, so it was
    # printed again and again (183 times in one demo's OCR log). Ours to bear until KServe moves.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    header = principal_header or PRINCIPAL_HEADER
    install_error_handlers(model_server.app)
    model_server.app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if registry is not None:
        model_server.app.add_middleware(
            BearerAuthMiddleware, registry=registry, principal_header=header, on_refused=on_refused
        )
    interceptors = [grpc_interceptor(registry, header, on_refused)]
    host = edge.host
    latency_logging = latency_logging_asked(sys.argv[1:], model_server.args)

    class QuietRESTServer(RESTServer):  # type: ignore[misc]
        """KServe's REST server, whose timing middleware (two INFO lines and two getrusage calls
        per request: a sixth of the lens predictor's CPU at 300 requests/s) and uvicorn's access
        line (one more per request, 5 % of the predictor's CPU at 120 requests/s) run only when
        `--enable_latency_logging true` or `--access_log_format` asks for them. The Prometheus
        histograms count the same requests, by model and status."""

        def _add_middlewares(self, app: Any) -> None:
            if latency_logging or self.access_log_format:  # KServe adds both together
                super()._add_middlewares(app)

    class GuardedGRPCServer(GRPCServer):  # type: ignore[misc]
        """KServe's gRPC server with our interceptors in front of its own, on `host`."""

        async def start(self, max_workers: int) -> None:
            from concurrent import futures

            from grpc import aio
            from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
            from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
            from kserve.protocol.grpc.servicer import InferenceServicer

            servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                # Ours innermost: KServe's ExceptionToStatusInterceptor maps what ours raises.
                interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor(), *interceptors),
                options=[
                    ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                    ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
                ],
            )
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
            address = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
            self._server.add_insecure_port(address)
            await self._server.start()
            await self._server.wait_for_termination()

    class EyeopsModelServer(kserve.ModelServer):  # type: ignore[misc]
        def start(self, models: list[Any]) -> None:
            if self.workers != 1:
                raise SystemExit("eyeops model servers run one worker per pod; scale with replicas")
            self._register_and_check_atleast_one_model_is_ready(models)
            if predictor_ready is not None:
                self.dataplane.ready = server_ready(models, self.dataplane.ready, predictor_ready)
            self._rest_server = QuietRESTServer(
                model_server.FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                access_log_format=self.access_log_format,
                workers=1,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
            )
            self._rest_server.config.host = host  # read when uvicorn binds, not before
            if not (latency_logging or self.access_log_format):
                # What uvicorn.Config(access_log=False) does, after KServe made the Config: uvicorn
                # writes the access line only when its logger has a handler.
                access = logging.getLogger("uvicorn.access")
                access.handlers, access.propagate = [], False
            self.servers.append(self._rest_server.start())
            if self.enable_grpc:
                self._grpc_server = GuardedGRPCServer(
                    self.grpc_port,
                    self.dataplane,
                    self.model_repository_extension,
                    kwargs=vars(model_server.args),
                    grace_period=self.grace_period,
                )
                self.servers.append(self._grpc_server.start(self.max_threads))
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

    EyeopsModelServer(enable_latency_logging=latency_logging).start(list(models))


def latency_logging_asked(argv: Sequence[str], kserve_args: argparse.Namespace) -> bool:
    """KServe's `--enable_latency_logging` (true unless given in KServe) is false in our servers
    unless given: its per-request log lines cost CPU on every request and say what the request
    histograms already do."""
    given = any(a == "--enable_latency_logging" or a.startswith("--enable_latency_logging=") for a in argv)
    return bool(given and getattr(kserve_args, "enable_latency_logging", False))


def predictor_key(path: str | None, env: str = "EYEOPS_PREDICTOR_KEY") -> str | None:
    """The credential this server presents to its predictor (Triton's restricted-API key, or the
    lens predictor's service token): from a file (a mounted Secret), else `env`, else None."""
    import os

    if path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SystemExit(f"cannot read predictor key file {path}: {exc.strerror}") from exc
        if not key:
            raise SystemExit(f"predictor key file {path} is empty")
        return key
    return os.environ.get(env) or None
