"""`eyeops gateway watch|status|retry|token` and `eyeops batch`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser("gateway", help="the agent beside an exam device")
    cmds = gw.add_subparsers(dest="gateway_command", required=True)

    w = cmds.add_parser("watch", help="watch a device's export folder and deliver every exam once")
    w.add_argument("watch_dir", nargs="?", type=Path, default=None)
    w.add_argument("--config", type=Path, default=None, help="YAML file with any of the options below")
    w.add_argument("--device-kind", dest="device_kind", default=None)
    w.add_argument("--device-id", dest="device_id", default=None)
    w.add_argument("--endpoint", default=None, help="OCR service base URL")
    w.add_argument("--token-file", dest="token_file", type=Path, default=None)
    w.add_argument("--protocol", choices=["v1", "v2"], default=None)
    w.add_argument("--state-dir", dest="state_dir", type=Path, default=None)
    w.add_argument("--concurrency", type=int, default=None)
    w.add_argument("--rescan-interval", dest="rescan_interval_s", type=float, default=None)
    w.add_argument("--settle", dest="settle_s", type=float, default=None)
    w.add_argument("--retry-max", dest="retry_max_s", type=float, default=None)
    w.add_argument("--filename-pattern", dest="filename_pattern", default=None)
    w.add_argument("--metrics-port", dest="metrics_port", type=int, default=None)
    w.set_defaults(func=_watch)

    s = cmds.add_parser("status", help="queue depth, oldest pending, last success, failures by reason")
    _state_args(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)

    r = cmds.add_parser("retry", help="send failed items again (after fixing a token, say)")
    _state_args(r)
    r.set_defaults(func=_retry)

    t = cmds.add_parser(
        "token", help="create a device token: token file for the gateway, hash for the service"
    )
    t.add_argument("--device-id", required=True)
    t.add_argument("--registry", type=Path, required=True, help="the service's hashed token file (appended)")
    t.add_argument("--token-file", type=Path, required=True, help="where the gateway reads its token")
    t.set_defaults(func=_token)

    b = sub.add_parser("batch", help="send a historical archive (.zip or folder) and write a CSV")
    b.add_argument("path", type=Path)
    b.add_argument("--device-kind", required=True)
    b.add_argument("--out", type=Path, required=True, help="results CSV (a summary JSON goes beside it)")
    b.add_argument("--endpoint", default="http://127.0.0.1:8080")
    b.add_argument("--token-file", type=Path, default=None)
    b.add_argument("--device-id", default="batch")
    b.add_argument("--protocol", choices=["v1", "v2"], default="v2")
    b.add_argument("--concurrency", type=int, default=8)
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_batch)


def _state_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--device-id", default=None, help="a gateway using the default state folder")
    group.add_argument("--state-dir", type=Path, default=None)
    group.add_argument("--config", type=Path, default=None)


def _outbox_path(args: argparse.Namespace) -> Path:
    """The outbox of the gateway named by --state-dir, --config (as `watch` reads it) or --device-id."""
    from eyeops.gateway.config import default_state_dir, load_gateway_config

    if args.state_dir is not None:
        return Path(args.state_dir) / "outbox.db"
    if args.config is not None:
        path: Path = load_gateway_config(args.config, {}).outbox_path()
        return path
    return default_state_dir(str(args.device_id)) / "outbox.db"


def _open_existing(path: Path) -> Any:
    from eyeops.gateway.outbox import Outbox

    if not path.exists():
        raise SystemExit(f"no outbox at {path}; has this gateway run yet?")
    return Outbox(path)


def _status(args: argparse.Namespace) -> int:
    outbox = _open_existing(_outbox_path(args))
    status = outbox.status()
    outbox.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    counts = status["counts"]
    print(f"outbox:            {status['outbox']}")
    print(f"queue depth:       {status['queue_depth']} ({status['retrying']} waiting to retry)")
    print(f"oldest pending:    {_age(status['oldest_pending_age_s'])}")
    print(f"last success:      {_age(status['last_success_age_s'])}")
    print("items:             " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if status["failures"]:
        print("failures by reason:")
        for f in status["failures"]:
            code = f["http_status"] or "-"
            first_line = (f["reason"] or "").splitlines()[0][:100] if f["reason"] else ""
            print(f"  {f['count']:6d}  {f['state']:11s} {code!s:>4}  {first_line}")
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _retry(args: argparse.Namespace) -> int:
    outbox = _open_existing(_outbox_path(args))
    n = outbox.requeue_failed()
    outbox.close()
    print(f"{n} failed items queued again; a running gateway sends them now")
    return 0


def _token(args: argparse.Namespace) -> int:
    from eyeops.auth import add_device

    add_device(args.registry, args.token_file, args.device_id)
    print(f"token for {args.device_id} written to {args.token_file} (keep it on that device's PC);")
    print(f"its hash appended to {args.registry} (mount this file into the OCR service as a Secret)")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from eyeops.gateway.config import load_gateway_config
    from eyeops.gateway.runner import run_watch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upload is noise
    keys = [
        "watch_dir",
        "device_kind",
        "device_id",
        "endpoint",
        "token_file",
        "protocol",
        "state_dir",
        "concurrency",
        "rescan_interval_s",
        "settle_s",
        "retry_max_s",
        "filename_pattern",
        "metrics_port",
    ]
    config = load_gateway_config(args.config, {k: getattr(args, k) for k in keys})
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_watch(config, stop)

    asyncio.run(main())
    return 0


def _batch(args: argparse.Namespace) -> int:
    from eyeops.gateway.batch import run_batch

    summary = run_batch(
        args.path,
        args.device_kind,
        args.out,
        endpoint=args.endpoint,
        token_file=args.token_file,
        device_id=args.device_id,
        protocol=args.protocol,
        concurrency=args.concurrency,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(json.dumps(summary, indent=2))
    return 0 if summary["failed"] == 0 and summary["quarantined"] == 0 else 1
