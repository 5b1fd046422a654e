"""The monitoring service: KServe logger CloudEvents (binary or structured) at `POST /`, ground
truth at `POST /feedback`, Prometheus metrics at `GET /metrics`.

    python -m eyeops_detectors serve --detectors DIR --state monitor.db --service lens=lens --service ocr=ocr
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from eyeops_detectors.detectors import DetectorSet
from eyeops_detectors.monitor import LoggedEvent, Monitor, UnknownService
from eyeops_detectors.payloads import PayloadError
from eyeops_detectors.store import MonitorStore


class Feedback(BaseModel):
    eye_id: str = Field(min_length=3, max_length=64, description="patient id + laterality, e.g. P0001234-OD")
    implanted_size_mm: float
    surgery_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    request_id: str | None = Field(default=None, description="Ce-Id of the lens request the choice used")


def event_from(headers: dict[str, str], body: bytes) -> LoggedEvent:
    """A CloudEvent in binary (ce-* headers) or structured (application/cloudevents+json) mode."""
    from cloudevents.core.bindings.http import HTTPMessage, from_http
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.formats.json import JSONFormat

    try:
        event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
    except (BaseCloudEventException, ValueError, KeyError, TypeError) as exc:
        raise PayloadError(f"not a CloudEvent: {exc}") from exc
    service = event.get_extension("inferenceservicename")
    if not service:
        raise PayloadError("CloudEvent lacks the inferenceservicename extension (Ce-Inferenceservicename)")
    return LoggedEvent(
        ce_id=event.get_id(),
        ce_type=event.get_type(),
        service=str(service),
        component=str(event.get_extension("component") or "predictor"),
        data=event.get_data(),
    )


def create_app(monitor: Monitor) -> FastAPI:
    app = FastAPI(title="eyeops monitor")
    lock = threading.Lock()  # detectors hold state: one event at a time

    @app.post("/")
    @app.post("/events")
    async def events(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            event = event_from(dict(request.headers), body)
        except PayloadError as exc:
            monitor.metrics.rejected.labels("malformed").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            # Inline, not in a thread: an event costs about half a millisecond of CPU, less than
            # a thread hop, and the detectors take one event at a time anyway.
            with lock:
                outcome = monitor.ingest(event)
        except UnknownService as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except PayloadError as exc:  # counted by the monitor
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"outcome": outcome}, status_code=200 if outcome == "duplicate" else 202)

    @app.post("/feedback")
    async def feedback(item: Feedback) -> JSONResponse:
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
        return Response(generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return monitor.status()

    @app.get("/history")
    async def history(detector: str | None = None) -> list[dict[str, Any]]:
        """Every check each detector made: time, flag, p-values, rows (for `eyeops monitor report`)."""
        return monitor.history(detector)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build_monitor(detectors: Path, state: Path | str, services: dict[str, str]) -> Monitor:
    monitor = Monitor(DetectorSet.load(detectors), MonitorStore(state), services)
    monitor.start()
    return monitor
