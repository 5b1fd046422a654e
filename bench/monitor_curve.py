"""The monitor's memory and ingest rate against its drift window (rows per drift test), 50 → 1,600:
what a longer window (more power to see a small drift, later alarms) costs the loggers' sink.

For each window the detectors are fitted on the local lens model's answers (eyeops/stack/monitor.py,
`eyeops_detectors fit --window W`, the fit timed), the monitor service starts on them (SQLite
state), and --concurrency clients post the binary CloudEvents real lens traffic makes (captured once
from a local lens service; each predictor request a new patient, so every event costs the
detectors their full work) for --seconds. Printed per window: events/s ingested, the monitor
process's resident memory after the run (MB), and the fit's seconds.

Prints a table and one JSON object; --out DIR also writes monitor-window.png / .md / .json.
Run:  .venv/bin/python -m bench.monitor_curve [--windows 50,100,200,400,800,1600] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.curves import report
from bench.monitor_ingest import closed_loop, lens_events, post_event
from eyeops.stack.lens import LensStack, local_eye_features, prepare_local_lens
from eyeops.stack.monitor import MonitorStack, prepare_local_detectors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", default="50,100,200,400,800,1600")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    series: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="eyeops-monitor-curve-") as tmp:
        root = Path(tmp)
        model_dir, repo, eye_ids = prepare_local_lens(root, say=lambda m: None)
        features = local_eye_features()
        with LensStack(model_dir, repo, root / "log") as lens:
            url = f"{lens.lens}/v1/models/lens:predict"
            answers = {
                e: httpx.post(url, json={"instances": [{"eye_id": e}]}, timeout=30).json()["predictions"][0]
                for e in eye_ids
            }
        events = [ev for e in eye_ids for ev in lens_events(e, features[e], answers[e])]
        for window in windows:
            t0 = time.perf_counter()
            detectors = prepare_local_detectors(root, model_dir, ert=1000, say=lambda m: None, window=window)
            fit_s = time.perf_counter() - t0
            monitor = MonitorStack(detectors, root / f"monitor-w{window}.db", root / "log")
            with monitor:

                async def post(
                    http: httpx.AsyncClient, n: int, monitor: MonitorStack = monitor, window: int = window
                ) -> int:
                    return await post_event(http, monitor.url, events, n, "W", f"curve-{window}")

                ok, bad, took = asyncio.run(closed_loop(post, args.seconds, args.concurrency))
                if bad:
                    raise SystemExit(f"window {window}: {bad} events refused")
                assert monitor.process.proc is not None
                process = psutil.Process(monitor.process.proc.pid)
                rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(True))
            series.setdefault("events/s", []).append(ok / took)
            series.setdefault("monitor RSS MB", []).append(rss / 1e6)
            series.setdefault("fit s", []).append(fit_s)
            print(f"[monitor] window {window}: {ok / took:.0f} events/s, {rss / 1e6:.0f} MB", flush=True)
    report(
        args.out,
        "monitor-window",
        "Monitor (loggers' sink) against its drift window",
        "rows per drift test (window)",
        windows,
        series,
        "events/s / MB / s",
        {"seconds": args.seconds, "concurrency": args.concurrency},
    )


if __name__ == "__main__":
    main()
