"""`eyeops monitor report`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mon = sub.add_parser("monitor", help="drift and performance monitoring")
    cmds = mon.add_subparsers(dest="monitor_command", required=True)
    rep = cmds.add_parser("report", help="each detector's history with plots, from the monitoring service")
    rep.add_argument("--monitor", required=True, help="monitoring service URL (eyeops up prints it)")
    rep.add_argument("--out", type=Path, default=Path("drift.html"))
    rep.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="the monitor's operator token (default: the local stack's credentials/monitor.token)",
    )
    rep.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    import httpx

    from eyeops.auth import local_bearer
    from eyeops.monitoring.report import render_report

    base = args.monitor.rstrip("/")
    headers = local_bearer(args.token_file, "monitor.token")
    try:
        history = httpx.get(f"{base}/history", headers=headers, timeout=30).raise_for_status().json()
        status = httpx.get(f"{base}/status", headers=headers, timeout=30).raise_for_status().json()
    except httpx.HTTPError as exc:
        raise SystemExit(f"cannot read the monitoring service at {base}: {exc}") from exc
    args.out.write_text(render_report(history, status))
    print(f"{args.out}: {len(history)} checks by {len({c['detector'] for c in history})} detectors")
    return 0
