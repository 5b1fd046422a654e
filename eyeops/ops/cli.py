"""`eyeops ops report`."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ops = sub.add_parser("ops", help="operations views over the results database")
    cmds = ops.add_subparsers(dest="ops_command", required=True)
    r = cmds.add_parser("report", help="HTML report: volume, statuses, review reasons, errors, latency")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--database-url", default=None, help="default: the configured results database")
    r.add_argument("--days", type=int, default=None, help="only the last N days")
    r.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from eyeops.errors import EyeopsError
    from eyeops.ops.report import collect, render_html
    from eyeops.settings import Settings

    url = args.database_url or Settings().resolved_database_url()
    print(f"results database: {url}", flush=True)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        # connecting would create an empty file and then fail on its missing tables
        raise EyeopsError(
            f"no results database {url}: start the stack once (`eyeops up`), set EYEOPS_DATA_DIR"
            " to the folder that holds results.db, or pass --database-url"
        )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days) if args.days else None
    engine = create_engine(url, hide_parameters=True)
    try:
        data = collect(engine, since)
    finally:
        engine.dispose()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_html(data), encoding="utf-8")
    print(f"{args.out}: {data.requests} requests, error rate {data.error_rate:.2%}")
    return 0
