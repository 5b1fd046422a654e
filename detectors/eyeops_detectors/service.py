"""The monitoring service: KServe logger CloudEvents (binary or structured) at `POST /`, ground
truth at `POST /feedback`, Prometheus metrics at `GET /metrics`.

    python -m eyeops_detectors serve --detectors DIR --state monitor.db --service lens=lens --service ocr=ocr
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field

from eyeops_detectors.auth import TokenCheck
from eyeops_detectors.detectors import DetectorSet
from eyeops_detectors.monitor import COMPONENTS, OUTCOME_WINDOW_DAYS, LoggedEvent, Monitor, UnknownService
from eyeops_detectors.payloads import PayloadError, PayloadTooLarge
from eyeops_detectors.store import MonitorStore

log = logging.getLogger("eyeops_detectors")
MAX_EVENT_BYTES = 1 << 20  # a lens event of 256 eyes or an OCR exam is a few tens of kB
SINK_PATHS = ("/", "/events")
OPEN_PATHS = ("/healthz", "/metrics", *SINK_PATHS)
MAX_FEEDBACK_BYTES = 16 << 10  # one outcome: an eye, a size, a date, a request id
READ_PATHS = ("/status", "/history")  # what a read-only token may call (GET)
SERVES = ("all", "operator", "sink")  # which routes an app serves (create_app)


class Feedback(BaseModel):
    eye_id: str = Field(min_length=3, max_length=64, description="patient id + laterality, e.g. P0001234-OD")
    implanted_size_mm: float
    surgery_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    request_id: str | None = Field(
        default=None, max_length=128, description="Ce-Id of the lens request the choice used"
    )


def event_from(headers: dict[str, str], body: bytes) -> LoggedEvent:
    """A CloudEvent in binary (ce-* headers) or structured (application/cloudevents+json) mode."""
    from cloudevents.core.bindings.http import HTTPMessage, from_http
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.formats.json import JSONFormat

    try:
        event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
    except (BaseCloudEventException, ValueError, KeyError, TypeError, AttributeError) as exc:
        # The library's message may quote the payload: say what was wrong, not what was sent.
        raise PayloadError(f"not a CloudEvent ({type(exc).__name__}); send KServe logger events") from exc
    except RecursionError:  # the library parses the body as JSON: nested deeper than it recurses
        raise PayloadError("payload is nested too deeply to be a logged KServe payload") from None
    service = event.get_extension("inferenceservicename")
    if not service:
        raise PayloadError("CloudEvent lacks the inferenceservicename extension (Ce-Inferenceservicename)")
    component = str(event.get_extension("component") or "predictor")
    if component not in COMPONENTS:
        raise PayloadError(f"Ce-Component must be one of {', '.join(COMPONENTS)}")
    ce_id = str(event.get_id())
    if len(ce_id) > 128:
        raise PayloadError("Ce-Id is longer than 128 characters")
    return LoggedEvent(
        ce_id=ce_id,
        ce_type=str(event.get_type()),
        service=str(service)[:64],
        component=component,
        data=event.get_data(),
        body_sha256=hashlib.sha256(body).hexdigest(),
    )


class NoDetectorsYet(Exception):
    """The monitor has no fitted detector set yet (a first install, before the seed or the
    detector-fitting pipeline wrote one)."""


class MonitorSlot:
    """The monitor, or the wait for its first detector set: a fresh install starts ready but
    degraded ("no detectors yet"), answers events and feedback 503 with Retry-After, and builds
    the monitor as soon as `waiting_for/manifest.json` appears (checked every `poll_s`)."""

    def __init__(
        self,
        monitor: Monitor | None = None,
        waiting_for: Path | None = None,
        build: Callable[[], Monitor] | None = None,
        poll_s: float = 30.0,
    ) -> None:
        self.monitor = monitor
        self.waiting_for = waiting_for
        self.build = build
        self.poll_s = poll_s
        self.lock = threading.Lock()  # detectors hold state: one event or feedback at a time
        self.registry = CollectorRegistry()
        self.waiting = Gauge(
            "eyeops_monitor_waiting_for_detectors",
            "1 while the monitor has no fitted detector set to read events with (a first install)",
            registry=self.registry,
        )
        self.waiting.set(0 if monitor is not None else 1)
        self._stop = threading.Event()

    def get(self) -> Monitor:
        if self.monitor is None:
            raise NoDetectorsYet(
                f"no detectors yet: the monitor waits for a fitted detector set at {self.waiting_for}"
                " (the seed Job or the detector-fitting pipeline writes it); try again later"
            )
        return self.monitor

    def try_load(self) -> bool:
        """Build the monitor if its detector set has appeared; whether it is there now."""
        if self.monitor is not None:
            return True
        if self.waiting_for is None or self.build is None:
            return False
        if not (self.waiting_for / "manifest.json").is_file():
            return False
        try:
            self.monitor = self.build()
        except Exception:
            log.exception("the detector set at %s could not be loaded yet", self.waiting_for)
            return False
        self.waiting.set(0)
        log.info("detector set found at %s: monitoring", self.waiting_for)
        return True

    def watch(self) -> None:
        """Poll for the detector set in a daemon thread until it loads."""

        def run() -> None:
            while not self._stop.wait(self.poll_s) and not self.try_load():
                pass

        if self.monitor is None:
            threading.Thread(target=run, name="detectors-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def create_app(
    monitor: Monitor | MonitorSlot,
    tokens: TokenCheck | None = None,
    sink_tokens: TokenCheck | None = None,
    serve: str = "all",
    read_tokens: TokenCheck | None = None,
) -> FastAPI:
    """`tokens`: who may call /feedback, /status, /history (every route but the CloudEvents sink,
    health and metrics); None serves them to anyone (--insecure). `sink_tokens`: who may post
    events (the local stack's payload loggers send one); None trusts the network, as on a cluster,
    where KServe's agent sends no credentials. There the sink has a port of its own (`serve`:
    "sink" on it, "operator" on the other, both over one MonitorSlot), and the NetworkPolicy admits
    only the InferenceService pods to it, while the console, Prometheus and operators reach only
    the other. Either way an event must name a configured service and a KServe component.
    `read_tokens`: who may only read (GET /status, /history: the review console's operations page),
    never post feedback."""
    if serve not in SERVES:
        raise ValueError(f"serve is one of {', '.join(SERVES)}, not {serve!r}")
    app = FastAPI(title="eyeops monitor")
    slot = monitor if isinstance(monitor, MonitorSlot) else MonitorSlot(monitor)
    lock = slot.lock

    @app.exception_handler(NoDetectorsYet)
    async def degraded(_request: Request, exc: NoDetectorsYet) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"retry-after": "60"})

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if serve == "operator" and path in SINK_PATHS:  # before any body is read
            return JSONResponse({"error": "events go to the monitor's sink port"}, status_code=404)
        if serve == "sink" and path not in (*SINK_PATHS, "/healthz"):
            return JSONResponse({"error": "this port takes KServe's logged events only"}, status_code=404)
        check = sink_tokens if path in SINK_PATHS else None if path in OPEN_PATHS else tokens
        header = request.headers.get("authorization")
        reads = request.method == "GET" and path in READ_PATHS
        if reads and read_tokens is not None and read_tokens.who(header) is not None:
            check = None
        if check is not None and check.who(header) is None:
            log.warning("refused %s without a known token", request.method)
            return JSONResponse(
                {"error": "send 'Authorization: Bearer <monitor token>'"},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="eyeops-monitor"'},
            )
        if path == "/feedback" and request.method == "POST":  # a size before pydantic reads it
            declared = request.headers.get("content-length", "")
            if not declared.isdigit() or int(declared) > MAX_FEEDBACK_BYTES:
                return JSONResponse(
                    {
                        "error": f"send the outcome as JSON of at most {MAX_FEEDBACK_BYTES} bytes, with its length"
                    },
                    status_code=413,
                )
        return await call_next(request)  # type: ignore[no-any-return]

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            ".".join(str(p) for p in e.get("loc", ()) if p != "body") + ": " + str(e.get("msg"))
            for e in exc.errors()[:5]
        )
        return JSONResponse({"error": f"request body does not match: {where}"}, status_code=422)

    def ingest(event: LoggedEvent) -> str:
        with lock:
            return slot.get().ingest(event)

    @app.post("/")
    @app.post("/events")
    async def events(request: Request) -> JSONResponse:
        monitor = slot.get()
        too_large = JSONResponse({"error": f"events are at most {MAX_EVENT_BYTES} bytes"}, status_code=413)
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_EVENT_BYTES:
            monitor.metrics.rejected.labels("too_large").inc()
            return too_large
        chunks, size = [], 0
        async for chunk in request.stream():  # chunked bodies too: stop reading at the cap
            size += len(chunk)
            if size > MAX_EVENT_BYTES:
                monitor.metrics.rejected.labels("too_large").inc()
                return too_large
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            event = event_from(dict(request.headers), body)
        except PayloadError as exc:
            monitor.metrics.rejected.labels("malformed").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            # In a thread, so that a slow event never holds up /healthz or the scrape.
            outcome = await asyncio.to_thread(ingest, event)
        except UnknownService as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except PayloadTooLarge as exc:  # counted by the monitor
            return JSONResponse({"error": str(exc)}, status_code=413)
        except PayloadError as exc:  # counted by the monitor
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"outcome": outcome}, status_code=200 if outcome == "duplicate" else 202)

    @app.post("/feedback")
    async def feedback(item: Feedback) -> JSONResponse:
        monitor = slot.get()

        def record() -> str:
            with lock:
                return monitor.feedback(
                    item.eye_id, item.implanted_size_mm, item.surgery_date, item.request_id
                )

        try:
            outcome = await asyncio.to_thread(record)
        except PayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"outcome": outcome}, status_code=202)

    @app.get("/metrics")
    async def metrics() -> Response:
        body = generate_latest(slot.registry)
        if slot.monitor is not None:
            # the gauges as the store holds them: the same on every replica, whichever took the event
            await asyncio.to_thread(slot.monitor.sync_gauges)
            body += generate_latest(slot.monitor.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        if slot.monitor is None:
            return {"degraded": "no detectors yet", "waiting_for": str(slot.waiting_for)}
        return slot.monitor.status()

    @app.get("/history")
    async def history(detector: str | None = None) -> list[dict[str, Any]]:
        """Every check each detector made: time, flag, p-values, rows (for `eyeops monitor report`)."""
        return slot.get().history(detector)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build_monitor(
    detectors: Path,
    state: Path | str,
    services: dict[str, str],
    device_kinds: list[str] | None = None,
    outcome_window_days: tuple[int, int] = OUTCOME_WINDOW_DAYS,
) -> Monitor:
    if not 0 <= outcome_window_days[0] <= outcome_window_days[1]:
        raise SystemExit("--outcome-window-days takes FIRST LAST with 0 <= FIRST <= LAST")
    monitor = Monitor(
        DetectorSet.load(detectors),
        MonitorStore(state),
        services,
        device_kinds=device_kinds,
        outcome_window_days=outcome_window_days,
    )
    monitor.start()
    return monitor
