"""The operations page (the week's figures, the review backlog, the monitor's state) and the
console's Prometheus metrics, read from the database at each scrape."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eyeops.console.charts import PALETTE, colours, lines, stacked_bars
from eyeops.console.web import ConsoleConfig, Refused, Web
from eyeops.db.queries import exams_received
from eyeops.db.review import ReviewStore
from eyeops.db.review_types import QueueEntry
from eyeops.errors import EyeopsError
from eyeops.ops.report import OpsData, collect


class ReviewMetrics(Collector):
    """Review backlog and its age, and fields confirmed or corrected, read from the database at
    each scrape (so every replica reports the same, and a restart loses nothing)."""

    def __init__(self, store: ReviewStore, max_wait_s: float) -> None:
        self.store = store
        self.max_wait_s = max_wait_s

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        now = dt.datetime.now(dt.UTC)
        backlog = GaugeMetricFamily(
            "eyeops_review_backlog_exams", "Exams waiting for review", labels=["device_kind"]
        )
        oldest = GaugeMetricFamily(
            "eyeops_review_oldest_age_seconds",
            "How long the oldest waiting exam has waited",
            labels=["device_kind"],
        )
        limit = GaugeMetricFamily(
            "eyeops_review_max_wait_seconds", "The longest an exam should wait for review (an alert beyond)"
        )
        limit.add_metric([], self.max_wait_s)
        yield limit
        try:
            rows = self.store.backlog()
            fields = self.store.corrections()
            looks = self.store.second_looks()
        except EyeopsError:
            return
        for row in rows:
            backlog.add_metric([row.device_kind], row.exams)
            oldest.add_metric([row.device_kind], max(0.0, (now - row.oldest).total_seconds()))
        reviewed = CounterMetricFamily(
            "eyeops_review_fields",
            "Fields a reviewer confirmed or corrected",
            labels=["device_kind", "field", "action"],
        )
        for kind, name, action, count in fields:
            reviewed.add_metric([kind, name, action], count)
        agreement = CounterMetricFamily(
            "eyeops_review_second_look_fields",
            "Fields of sampled releases a second reviewer checked blind, by agree or disagree",
            labels=["device_kind", "field", "outcome"],
        )
        for kind, name, outcome, count in looks:
            agreement.add_metric([kind, name, outcome], count)
        yield backlog
        yield oldest
        yield reviewed
        yield agreement


def add_operations_routes(app: FastAPI, web: Web, store: ReviewStore) -> None:
    """/operations, for anyone with a role."""
    config = web.config

    # -- operations ------------------------------------------------------------------------------
    @app.get("/operations", response_class=HTMLResponse)
    async def operations(request: Request) -> HTMLResponse:
        session = web.identity(request)
        if not session.roles:
            raise Refused(403, "the operations page needs the reviewer or device_admin role")
        figures = await asyncio.to_thread(_operations, store)
        monitor = await _monitor_state(config)
        return web.page("operations.html", request, session, monitor=monitor, **figures)


def metrics_route(registry: CollectorRegistry) -> Callable[[], Any]:
    async def metrics() -> Response:
        data = await asyncio.to_thread(generate_latest, registry)
        return Response(data, media_type="text/plain; version=0.0.4")

    return metrics


def metrics_app(console: FastAPI) -> FastAPI:
    """The console's /metrics alone, for a port of its own: Prometheus may reach that port and
    nothing else of the console (the pages trust the proxy's headers)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/metrics", metrics_route(console.state.metrics_registry), methods=["GET"])
    return app


def _operations(store: ReviewStore) -> dict[str, Any]:
    """The live figures of the operations page: today's and the week's exams by kind and status,
    exams per hour over the last day, review backlog and age, reasons, error rate, latency."""
    now = dt.datetime.now(dt.UTC)
    week = collect(store.engine, since=now - dt.timedelta(days=7))
    # the last 24 hours in order, those without an exam too (a gap is a figure: nothing came)
    hour = now.replace(minute=0, second=0, microsecond=0)
    per_hour: dict[str, Counter[str]] = {
        (hour - dt.timedelta(hours=h)).strftime("%H:00"): Counter() for h in range(23, -1, -1)
    }
    for received, kind, _ in exams_received(store.engine, since=hour - dt.timedelta(hours=23)):
        stamp = received if received.tzinfo else received.replace(tzinfo=dt.UTC)
        per_hour[stamp.astimezone(dt.UTC).strftime("%H:00")][kind] += 1
    days = [(now - dt.timedelta(days=d)).date().isoformat() for d in range(6, -1, -1)]
    every_day = sorted(set(days) | set(week.exams_per_day))
    week.exams_per_day = {day: week.exams_per_day.get(day, Counter()) for day in every_day}
    week.reasons_per_day = {day: week.reasons_per_day.get(day, Counter()) for day in every_day}
    backlog = store.backlog()
    return {
        "week": week,
        "latency": week.latency_percentiles(),
        "per_hour": per_hour,
        "kinds": sorted({k for c in per_hour.values() for k in c}),
        "backlog": backlog,
        "now": now,
        "charts": _charts(week, per_hour, store.queue(limit=QUEUE_FOR_CHART, now=now), now),
    }


QUEUE_FOR_CHART = 100_000  # waiting exams read for the backlog's age chart
AGES = ((dt.timedelta(hours=1), "under 1 h"), (dt.timedelta(hours=8), "1–8 h"), (None, "over 8 h"))


def _charts(
    week: OpsData, per_hour: dict[str, Counter[str]], waiting: list[QueueEntry], now: dt.datetime
) -> dict[str, Markup]:
    """The page's series as inline SVG (eyeops.console.charts), device kinds coloured alike in
    every chart."""
    kinds = {k for c in per_hour.values() for k in c} | {k for c in week.exams_per_day.values() for k in c}
    kind_colours = colours(sorted(kinds))
    ages: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in waiting:
        waited = now - entry.waiting_since
        label = next(name for limit, name in AGES if limit is None or waited < limit)
        ages[entry.device_kind][label] += 1
    age_colours = {name: PALETTE[i] for i, (_, name) in enumerate(AGES)}
    drawn = {
        "per_hour": stacked_bars(
            "Exams per hour by device kind, last 24 h (UTC)", per_hour, "exams", kind_colours
        ),
        "per_day": stacked_bars(
            "Exams per day by device kind, last 7 days", week.exams_per_day, "exams", kind_colours
        ),
        "backlog": stacked_bars(
            "Exams waiting for review by device kind and how long they have waited",
            {kind: {name: ages[kind][name] for _, name in AGES} for kind in sorted(ages)},
            "exams",
            age_colours,
        ),
        "reasons": stacked_bars("Review reasons per day, last 7 days", week.reasons_per_day, "items"),
        "latency": lines(
            "Latency of answered requests per day, last 7 days", week.latency_by_day_percentiles(), "ms"
        ),
    }
    return {name: Markup(svg) for name, svg in drawn.items()}


async def _monitor_state(config: ConsoleConfig) -> dict[str, Any] | None:
    if not config.monitor_url:
        return None
    headers = {"Authorization": f"Bearer {config.monitor_token}"} if config.monitor_token else {}
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(f"{config.monitor_url.rstrip('/')}/status", headers=headers)
            response.raise_for_status()
            data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"the monitor did not answer ({type(exc).__name__})"}
    detectors = data.get("detectors", {}) if isinstance(data, dict) else {}
    return {
        "detectors": [
            {"name": name, "drift": bool(r.get("is_drift")), "p": r.get("p_value"), "at": r.get("checked_at")}
            for name, r in sorted(detectors.items())
            if isinstance(r, dict)
        ],
        "rolling": {
            k: v
            for k, v in data.items()
            if k not in ("detectors", "window_rows") and not isinstance(v, dict | list)
        },
    }
