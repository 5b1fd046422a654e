"""`eyeops ops report`: one self-contained HTML page from the inference log and the results tables.

Aggregation (`collect`) is plain Python over rows so it is testable without plotting; `render_html`
draws the figures with matplotlib (Agg) and inlines them, so the page can be mailed or archived.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.engine import Engine

from eyeops.db import queries
from eyeops.db.review_types import reason_kind

STAGES = ("decode_ms", "align_ms", "predict_ms", "postprocess_ms", "total_ms")


@dataclass
class OpsData:
    since: dt.datetime | None
    exams_per_day: dict[str, Counter[str]] = field(default_factory=dict)  # day -> kind -> n
    status_by_kind: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> status -> n
    review_reasons: Counter[str] = field(default_factory=Counter)
    reasons_per_day: dict[str, Counter[str]] = field(default_factory=dict)  # day -> reason kind -> n
    requests_per_day: Counter[str] = field(default_factory=Counter)
    errors_per_day: Counter[str] = field(default_factory=Counter)
    errors_by_status: Counter[int] = field(default_factory=Counter)
    latency_by_day: dict[str, list[float]] = field(default_factory=dict)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.requests_per_day.values())

    @property
    def error_rate(self) -> float:
        return sum(self.errors_per_day.values()) / max(self.requests, 1)

    def latency_by_day_percentiles(self) -> dict[str, dict[str, float]]:
        """day -> {p50, p95} of the answered requests' total latency (ms)."""
        return {
            day: {f"p{q}": float(np.percentile(np.asarray(values), q)) for q in (50, 95)}
            for day, values in self.latency_by_day.items()
            if values
        }

    def latency_percentiles(self) -> dict[str, float]:
        values = [v for day in self.latency_by_day.values() for v in day]
        if not values:
            return {}
        arr = np.asarray(values)
        return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}


def collect(engine: Engine, since: dt.datetime | None = None) -> OpsData:
    """Aggregate exams, review items and the inference log (optionally only rows after `since`)."""
    data = OpsData(since)
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    latency: dict[str, list[float]] = defaultdict(list)
    stages: dict[str, list[float]] = defaultdict(list)
    for received, kind, status in queries.exams_received(engine, since):
        per_day[_day(received)][kind] += 1
        by_kind[kind][status] += 1
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for created, reason in queries.review_reasons(engine, since):
        kind = reason_kind(reason)
        data.review_reasons[kind] += 1
        reasons[_day(created)][kind] += 1
    for row in queries.inference_log(engine, STAGES, since):
        day = _day(row[0])
        data.requests_per_day[day] += 1
        code = int(row[1])
        if code >= 400:
            data.errors_per_day[day] += 1
            data.errors_by_status[code] += 1
        for stage, value in zip(STAGES, row[2:], strict=True):
            if value is not None:
                stages[stage].append(float(value))
        if row[-1] is not None and code == 200:
            latency[day].append(float(row[-1]))
    data.exams_per_day = dict(sorted(per_day.items()))
    data.reasons_per_day = dict(sorted(reasons.items()))
    data.status_by_kind = dict(sorted(by_kind.items()))
    data.latency_by_day = dict(sorted(latency.items()))
    data.stage_ms = dict(stages)
    return data


def _day(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        return value[:10]
    return value.date().isoformat()


# -- rendering -------------------------------------------------------------------------------------
def render_html(data: OpsData, title: str = "eyeops OCR operations") -> str:
    import matplotlib

    from eyeops.plots import figure_html, pyplot

    plt = pyplot()
    parts: list[str] = []
    exams = sum(sum(c.values()) for c in data.status_by_kind.values())
    statuses: Counter[str] = Counter()
    for counts in data.status_by_kind.values():
        statuses.update(counts)
    pct = data.latency_percentiles()
    headline = [
        ("exams", f"{exams}"),
        ("accepted", f"{statuses['accepted'] / max(exams, 1):.1%}"),
        ("sent to review", f"{statuses['review'] / max(exams, 1):.1%}"),
        ("failed (unreadable)", f"{statuses['failed'] / max(exams, 1):.1%}"),
        ("requests", f"{data.requests}"),
        ("error rate (HTTP ≥ 400)", f"{data.error_rate:.2%}"),
        *((f"latency {k}", f"{v:.0f} ms") for k, v in pct.items()),
    ]
    parts.append(
        "<table class=kpi>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in headline)
        + "</table>"
    )
    days = list(data.exams_per_day)
    kinds = sorted({k for c in data.exams_per_day.values() for k in c})
    if days:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        bottom = np.zeros(len(days))
        for kind in kinds:
            values = np.array([data.exams_per_day[d][kind] for d in days], dtype=float)
            ax.bar(days, values, bottom=bottom, label=kind)
            bottom += values
        ax.set_title("Exams per day, by device kind")
        ax.set_ylabel("exams")
        ax.legend(fontsize=8, ncols=2)
        ax.tick_params(axis="x", rotation=45)
        parts.append(figure_html(fig, "exams per day by device kind"))
    if data.status_by_kind:
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(data.status_by_kind)))
        names = list(data.status_by_kind)
        left = np.zeros(len(names))
        colours = {"accepted": "#2e7d32", "review": "#f9a825", "failed": "#c62828"}
        for status, colour in colours.items():
            values = np.array([data.status_by_kind[k][status] for k in names], dtype=float)
            totals = np.array([max(sum(data.status_by_kind[k].values()), 1) for k in names], dtype=float)
            ax.barh(names, values / totals, left=left, color=colour, label=status)
            left += values / totals
        ax.set_xlim(0, 1)
        ax.set_title("Exam status by device kind (share)")
        ax.legend(fontsize=8, loc="lower right")
        parts.append(figure_html(fig, "exam status by device kind"))
    if data.review_reasons:
        top = data.review_reasons.most_common(12)
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.4 * len(top)))
        ax.barh([k for k, _ in reversed(top)], [n for _, n in reversed(top)], color="#f9a825")
        ax.set_title("Why fields and exams went to review")
        ax.set_xlabel("items")
        parts.append(figure_html(fig, "review reasons"))
    if data.requests_per_day:
        req_days = list(data.requests_per_day)
        rates = [data.errors_per_day[d] / data.requests_per_day[d] for d in req_days]
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(req_days, rates, marker="o", color="#c62828")
        ax.set_title("Error rate per day (HTTP ≥ 400)")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.tick_params(axis="x", rotation=45)
        parts.append(figure_html(fig, "error rate per day"))
        if data.errors_by_status:
            rows = "".join(
                f"<tr><td>{code}</td><td>{n}</td></tr>" for code, n in sorted(data.errors_by_status.items())
            )
            parts.append(f"<table><tr><th>HTTP status</th><th>requests</th></tr>{rows}</table>")
    if data.latency_by_day:
        lat_days = list(data.latency_by_day)
        fig, ax = plt.subplots(figsize=(9, 3.2))
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            ax.plot(
                lat_days,
                [np.percentile(data.latency_by_day[d], q) for d in lat_days],
                style,
                marker="o",
                label=f"p{q}",
            )
        ax.set_title("Exam latency in the OCR service, per day")
        ax.set_ylabel("ms")
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", rotation=45)
        parts.append(figure_html(fig, "latency percentiles per day"))
    if data.stage_ms:
        stages = [s for s in STAGES if data.stage_ms.get(s)]
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.boxplot([data.stage_ms[s] for s in stages], showfliers=False)
        ax.set_xticks(range(1, len(stages) + 1), [s.removesuffix("_ms") for s in stages])
        ax.set_title("Time per stage (ms, whiskers 1.5 IQR)")
        parts.append(figure_html(fig, "time per stage"))
    if not exams and not data.requests:
        parts.append("<p>No exams or requests in this period.</p>")
    since = f" since {data.since.isoformat()}" if data.since else ""
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=meta>Generated {generated}{since}.</p>"
        + "\n".join(parts)
        + "</body></html>"
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 12px;border-bottom:1px solid #ddd;"
    "text-align:left}table.kpi td{font-weight:600}figure{margin:1.5em 0}img{max-width:100%}"
    ".meta{color:#666}"
)
