"""`eyeops monitor report`: each drift detector's history from the monitoring service, with plots."""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from typing import Any


def render_report(history: list[dict[str, Any]], status: dict[str, Any], title: str = "eyeops drift") -> str:
    from eyeops.plots import figure_html, pyplot

    plt = pyplot()
    import matplotlib.dates as mdates

    by_detector: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for check in history:
        by_detector[check["detector"]].append(check)
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    mae, coverage = status.get("mae_um"), status.get("coverage")
    parts.append(
        f"<p>outcomes joined: {status.get('outcomes', 0)}; rolling MAE:"
        f" {'—' if mae is None else f'{mae:.1f} µm'}; interval coverage:"
        f" {'—' if coverage is None else f'{coverage:.3f}'}</p>"
    )
    rows = []
    for name, checks in sorted(by_detector.items()):
        alarms = sum(c["is_drift"] for c in checks)
        last = checks[-1]
        worst = (
            min(last["p_values"].items(), key=lambda kv: kv[1]) if last["p_values"] else ("—", float("nan"))
        )
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{len(checks)}</td><td>{alarms}</td>"
            f"<td>{'DRIFT' if last['is_drift'] else 'ok'}</td><td>{html.escape(worst[0])}</td>"
            f"<td>{worst[1]:.3g}</td></tr>"
        )
    parts.append(
        "<table border=1 cellpadding=4><tr><th>detector</th><th>checks</th><th>alarms</th><th>last</th>"
        "<th>lowest p (last check)</th><th>p</th></tr>" + "".join(rows) + "</table>"
    )
    if not history:
        parts.append("<p>No detector has completed a window yet.</p>")
    for name, checks in sorted(by_detector.items()):
        times = [float(mdates.date2num(dt.datetime.fromtimestamp(c["at"], dt.UTC))) for c in checks]  # type: ignore[no-untyped-call]
        fig, ax = plt.subplots(figsize=(8, 2.6))
        features = sorted({f for c in checks for f in c["p_values"]})
        for feature in features:
            ax.plot(
                times,
                [max(c["p_values"].get(feature, 1.0), 1e-16) for c in checks],
                marker=".",
                label=feature,
            )
        alarm_times = [t for t, c in zip(times, checks, strict=True) if c["is_drift"]]
        for t in alarm_times:
            ax.axvline(t, color="red", alpha=0.3)
        ax.xaxis_date()
        ax.set_yscale("log")
        ax.set_ylabel("p-value")
        ax.set_title(f"{name}: {len(checks)} checks, {len(alarm_times)} alarms (red)")
        if 0 < len(features) <= 13:
            ax.legend(fontsize=6, ncol=4)
        parts.append(f"<h2>{html.escape(name)}</h2>" + figure_html(fig, f"{name} p-values over time"))
    parts.append("</body></html>")
    return "".join(parts)
