"""The one way a transformer of ours calls its predictor, with the predictor's address, model,
protocol and credential fixed, and its failures mapped to eyeops errors:

- v1 and v2 over HTTP: aiohttp (a dependency of KServe's), KServe's v1 JSON and v2 REST bodies
  (`InferRequest.to_rest`, `InferResponse.from_bytes`, the binary extension included). KServe's own
  `InferenceRESTClient` rides on httpx, which cost 3.7 ms of CPU per call against 0.3 ms for
  aiohttp on this machine (issue 32): the lens transformer's whole budget at 150 requests/s;
- v2 over gRPC (KServe's `grpc-v2` predictor protocol): KServe's `InferenceGRPCClient`.

- a transport error (refused, reset, timed out), a 5xx, or a gRPC status that is not the request's
  fault: `PredictorUnavailable` (503, Retry-After);
- a 4xx, or its gRPC counterpart (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, ...):
  `PredictorError`, carrying the HTTP status and the predictor's message;
- readiness (`ready()`) is the predictor's readiness of the model, False on any error;
- the client is closed on shutdown: `close()`, or `close_soon()` from KServe's synchronous
  `Model.stop()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any, ClassVar, Literal, overload

import aiohttp
import grpc
import orjson
from kserve import Model
from kserve.inference_client import InferenceGRPCClient
from kserve.protocol.infer_type import InferRequest, InferResponse

from eyeops.errors import EyeopsError, PredictorUnavailable

log = logging.getLogger("eyeops.predictor")
Protocol = Literal["v1", "v2", "grpc-v2"]
READY_TIMEOUT_S = 2.0  # a readiness probe waits 3 s for the whole server's answer
# gRPC statuses that mean the request (or our credential) is wrong, as the HTTP status they map to
# (grpc-gateway's table); every other status means the predictor could not answer now.
GRPC_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
}


class PredictorError(EyeopsError):
    """The predictor refused the request (4xx): its status and its message are passed on."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _ca_path() -> str | None:
    """The CA bundle KServe's controller sets for a transformer (REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE); None: the default certificates."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def _ca_bundle() -> ssl.SSLContext | bool:
    """What KServe's own transformer client verifies TLS with: that bundle, else the defaults."""
    path = _ca_path()
    return ssl.create_default_context(cafile=path) if path else True


MAX_IN_FLIGHT = 32
# KServe's header for the JSON part's length in a v2 body with binary data
BINARY_LENGTH_HEADER = "inference-header-content-length"


class PredictorClient:
    """A transformer's client of its predictor, made once per process and closed on shutdown."""

    def __init__(
        self,
        base_url: str,
        model: str,
        protocol: Protocol = "v2",
        headers: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        retry_after_s: int = 5,
        label: str | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        """`base_url`: http(s)://host:port of the predictor, or grpc(s)://host:port with
        `protocol="grpc-v2"`; `model`: the model's name there; `headers`: sent with every call
        (Triton's key header, a bearer token; gRPC metadata keys in lower case); `retry_after_s`:
        what a 503 tells the caller; `label`: how error messages name the predictor;
        `max_in_flight`: HTTP calls open at once (more wait their turn, on kept-alive connections)."""
        if protocol not in ("v1", "v2", "grpc-v2"):
            raise ValueError(f"predictor protocol must be v1, v2 or grpc-v2, not {protocol!r}")
        scheme, _, address = base_url.partition("://")
        grpc_schemes = ("grpc", "grpcs")
        if (protocol == "grpc-v2") != (scheme in grpc_schemes):
            wanted = "grpc(s)" if protocol == "grpc-v2" else "http(s)"
            raise ValueError(f"predictor protocol {protocol} takes a {wanted}:// address")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.protocol: Protocol = protocol
        self.retry_after_s = retry_after_s
        self.label = label or f"predictor {model!r}"
        self.ready_timeout_s = ready_timeout_s
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._grpc: InferenceGRPCClient | None = None
        self._grpc_target: tuple[str, bool, float] | None = None
        # Both are opened on first use: a grpc.aio channel and an aiohttp session belong to the
        # event loop they were made in, and this client is made before the server's loop runs.
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        if protocol == "grpc-v2":
            self._headers = {k.lower(): v for k, v in (headers or {}).items()}
            self._grpc_target = (address, scheme == "grpcs", timeout_s)
        else:
            # Answers uncompressed: a predictor that compresses small answers spends CPU on both
            # sides of a loopback or in-cluster call.
            self._headers = {"accept-encoding": "identity", **(headers or {})}
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _http(self) -> aiohttp.ClientSession:
        """The session (one per event loop): at most `max_in_flight` connections, all kept alive;
        a call beyond them waits for one."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self.max_in_flight, ssl=_ca_bundle() if self.base_url.startswith("https") else False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                skip_auto_headers=("User-Agent",),
            )
            self._session_loop = loop
        return self._session

    def _grpc_client(self) -> InferenceGRPCClient:
        if self._grpc is None:
            assert self._grpc_target is not None
            address, tls, timeout_s = self._grpc_target
            # KServe's client retries UNAVAILABLE twice (after 0.1 s, 0.2 s) before answering it.
            self._grpc = InferenceGRPCClient(
                address, use_ssl=tls, root_certificates=_ca_path(), timeout=timeout_s
            )
        return self._grpc

    @overload
    async def infer(
        self, data: dict[str, Any], headers: dict[str, str] | None = None, model: str | None = None
    ) -> dict[str, Any]: ...

    @overload
    async def infer(
        self, data: InferRequest, headers: dict[str, str] | None = None, model: str | None = None
    ) -> InferResponse: ...

    async def infer(
        self,
        data: InferRequest | dict[str, Any],
        headers: dict[str, str] | None = None,
        model: str | None = None,
    ) -> InferResponse | dict[str, Any]:
        """One inference: an InferRequest answers an InferResponse (v2), a dict a dict (v1).
        `headers` are sent on top of the fixed ones (a request id to forward); `model`: another
        model on the same predictor (default: the client's)."""
        if self._closed:
            raise PredictorUnavailable(
                f"{self.label} client is closed (the server is shutting down); retry later",
                retry_after_s=self.retry_after_s,
            )
        # KServe's client writes content-type and the binary length into the dict it is given.
        sent = {**self._headers, **(headers or {})}
        name = model or self.model
        if self._grpc_target is not None:
            if not isinstance(data, InferRequest):
                raise TypeError("a grpc-v2 predictor takes an InferRequest")
            data.model_name = name  # gRPC names the model inside the request
            metadata = tuple((k.lower(), v) for k, v in sent.items())
            try:
                return await self._grpc_client().infer(data, headers=metadata)
            except grpc.RpcError as exc:
                raise self._grpc_refused(exc) from exc
        body: bytes
        if isinstance(data, InferRequest):
            rest, json_length = data.to_rest()
            body = rest if isinstance(rest, bytes) else orjson.dumps(rest)
            sent["content-type"] = "application/octet-stream" if json_length else "application/json"
            if json_length:
                sent[BINARY_LENGTH_HEADER] = str(json_length)
            path = f"/v2/models/{name}/infer"
        else:
            body = orjson.dumps(data)
            sent["content-type"] = "application/json"
            path = f"/{self.protocol}/models/{name}" + (":predict" if self.protocol == "v1" else "/infer")
        try:
            async with self._http().post(self.base_url + path, data=body, headers=sent) as response:
                content = await response.read()
                status, length = response.status, response.headers.get(BINARY_LENGTH_HEADER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unavailable(type(exc).__name__) from exc
        if status >= 300:
            raise self._refused(status, content)
        if isinstance(data, InferRequest):
            try:
                return InferResponse.from_bytes(content, int(length) if length else len(content))
            except (ValueError, KeyError, TypeError, IndexError) as exc:  # InvalidInput: a ValueError
                raise self._unavailable("an answer that is not a v2 response") from exc
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise self._unavailable("an answer that is not JSON") from exc
        if not isinstance(answer, dict):
            raise self._unavailable("an answer that is not a JSON object")
        return answer

    async def ready(self, model: str | None = None) -> bool:
        """Whether the predictor has the model (default: the client's) ready within
        `ready_timeout_s`; any HTTP or transport error, or an answer that cannot be read, is False."""
        if self._closed:
            return False
        try:
            if self._grpc_target is not None:
                ready = await self._grpc_client().is_model_ready(
                    model or self.model, timeout=self.ready_timeout_s, headers=tuple(self._headers.items())
                )
            else:
                ready = await self._http_ready(model or self.model)
        except (aiohttp.ClientError, TimeoutError, grpc.RpcError, ValueError):
            return False
        return ready is True

    async def _http_ready(self, model: str) -> bool:
        """v1: GET /v1/models/{model} answers {"ready": true} (KServe answers 503 until loaded);
        v2: GET /v2/models/{model}/ready answers 200."""
        path = f"/v1/models/{model}" if self.protocol == "v1" else f"/v2/models/{model}/ready"
        timeout = aiohttp.ClientTimeout(total=self.ready_timeout_s)
        async with self._http().get(self.base_url + path, headers=self._headers, timeout=timeout) as response:
            if self.protocol == "v2" or response.status != 200:
                return response.status == 200
            answer = orjson.loads(await response.read())
            return isinstance(answer, dict) and answer.get("ready") is True

    async def close(self) -> None:
        """Close the connections; later calls answer 503 (shutting down)."""
        self._closed = True
        if self._grpc is not None:
            await self._grpc.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        log.info("closed the %s client", self.label)

    def close_soon(self) -> None:
        """Close from synchronous code (KServe calls `Model.stop()` synchronously on shutdown):
        scheduled on the running loop, or run now when no loop runs."""
        self._closed = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                asyncio.run(self.close())
            except Exception as exc:  # connections of a loop already gone went with it
                log.warning("closing the %s client after its loop ended: %s", self.label, type(exc).__name__)
            return
        self._closing = loop.create_task(self.close())

    def _unavailable(self, what: str) -> PredictorUnavailable:
        return PredictorUnavailable(
            f"{self.label} unavailable ({what}); retry later", retry_after_s=self.retry_after_s
        )

    def _grpc_refused(self, error: grpc.RpcError) -> EyeopsError:
        """A status that is the request's fault is a PredictorError, any other a 503."""
        if not isinstance(error, grpc.aio.AioRpcError | grpc.Call):  # no status: the channel failed
            return self._unavailable(f"gRPC {type(error).__name__}")
        code = error.code()
        status = GRPC_REFUSALS.get(code)
        if status is None:
            return self._unavailable(f"gRPC {code.name}")
        return PredictorError(f"{self.label}: {error.details() or code.name}", status)

    def _refused(self, status: int, content: bytes) -> EyeopsError:
        """A 4xx is the request's fault (its message passed on); any other status a 503."""
        if not 400 <= status < 500:
            return self._unavailable(f"HTTP {status}")
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        message = str(error) if error else content.decode("utf-8", "replace")
        return PredictorError(f"{self.label}: {message}", status)


class PredictorTransformer(Model):  # type: ignore[misc]
    """A KServe transformer in front of one predictor, what both of ours share: the injected
    `PredictorClient`, closed when KServe stops the model, and the per-request context as a typed
    value (`call_type`) that preprocess hands to predict through KServe's `validate`."""

    call_type: ClassVar[type[Any]]

    def __init__(self, name: str, predictor: PredictorClient) -> None:
        super().__init__(name)
        self.predictor = predictor

    def stop(self) -> None:
        """KServe's shutdown (synchronous): not ready, and the predictor's connections closed."""
        super().stop()
        self.predictor.close_soon()

    def validate(self, payload: Any) -> Any:
        """KServe runs this between preprocess and predict; our preprocess hands a `call_type`."""
        if not isinstance(payload, self.call_type):
            raise TypeError(f"predict takes what preprocess made, not a {type(payload).__name__}")
        return payload
