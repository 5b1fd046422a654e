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

# `gateway watch`'s options by GatewayConfig field, as a person gives them on the command line.
WATCH_OPTIONS = {
    "watch_dir": "WATCH_DIR (the device's export folder)",
    "device_kind": "--device-kind",
    "device_id": "--device-id",
    "endpoint": "--endpoint",
    "token_file": "--token-file",
    "protocol": "--protocol",
    "state_dir": "--state-dir",
    "concurrency": "--concurrency",
    "rescan_interval_s": "--rescan-interval",
    "settle_s": "--settle",
    "retry_max_s": "--retry-max",
    "filename_pattern": "--filename-pattern",
    "metrics_port": "--metrics-port",
    "allow_unknown_kind": "--allow-unknown-kind",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser("gateway", help="the agent beside an exam device")
    cmds = gw.add_subparsers(dest="gateway_command", required=True)

    w = cmds.add_parser("watch", help="watch a device's export folder and deliver every exam once")
    w.add_argument("watch_dir", nargs="?", type=Path, default=None, help="the device's export folder")
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
    w.add_argument(
        "--allow-unknown-kind",
        dest="allow_unknown_kind",
        action="store_const",
        const=True,
        default=None,
        help="send a device kind no local layout describes (the service may know newer kinds)",
    )
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
    t.add_argument(
        "--rotate", action="store_true", help="replace the device's token (the service reads it at start)"
    )
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


def _quarantine_dir(args: argparse.Namespace) -> Path:
    """Where the gateway named as in _outbox_path puts files it will never send."""
    from eyeops.gateway.config import default_state_dir, load_gateway_config

    if args.state_dir is not None:
        return Path(args.state_dir) / "quarantine"
    if args.config is not None:
        path: Path = load_gateway_config(args.config, {}).resolved_quarantine_dir()
        return path
    return default_state_dir(str(args.device_id)) / "quarantine"


def _status(args: argparse.Namespace) -> int:
    outbox = _open_existing(_outbox_path(args))
    status = outbox.status()
    outbox.close()
    # Two different troubles: a refused upload (the service answered 4xx, or 5xx too often) is kept
    # and `gateway retry` sends it again; a quarantined file was never sent and never will be.
    refused = [f for f in status["failures"] if f["state"] == "failed"]
    quarantined = [f for f in status["failures"] if f["state"] == "quarantined"]
    status["refused"] = refused
    status["quarantined"] = quarantined
    status["quarantine_dir"] = str(_quarantine_dir(args))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    counts = status["counts"]
    print(f"outbox:            {status['outbox']}")
    print(f"queue depth:       {status['queue_depth']} ({status['retrying']} waiting to retry)")
    print(f"oldest pending:    {_age(status['oldest_pending_age_s'])}")
    print(f"last success:      {_age(status['last_success_age_s'])}")
    print("items:             " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"refused uploads:   {counts['failed']} (the service said no; `eyeops gateway retry` sends again)")
    _print_reasons(refused)
    print(f"quarantined files: {counts['quarantined']} (never sent; put aside in {status['quarantine_dir']})")
    _print_reasons(quarantined)
    return 0


def _print_reasons(failures: list[dict[str, Any]]) -> None:
    for f in failures:
        code = f["http_status"] or "-"
        first_line = (f["reason"] or "").splitlines()[0][:100] if f["reason"] else ""
        print(f"  {f['count']:6d}  {code!s:>4}  {first_line}")


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
    from eyeops.auth import add_device, check_device_id
    from eyeops.errors import EyeopsError

    device_id = check_device_id(args.device_id)
    has_token = device_id in _registered_devices(args.registry)
    if has_token and not args.rotate:
        raise EyeopsError(
            f"device {device_id!r} already has a token in {args.registry}; pass --rotate to replace it"
            " (the service loads the new hash when it restarts)"
        )
    if has_token:
        _rotate(args.registry, args.token_file, device_id)
    else:
        add_device(args.registry, args.token_file, device_id)
    verb = "replaced in" if has_token else "appended to"
    print(f"token for {device_id} written to {args.token_file} (keep it on that device's PC);")
    print(f"its hash {verb} {args.registry} (mount this file into the OCR service as a Secret)")
    if has_token:
        print("the OCR service reads that file when it starts: restart it to refuse the old token")
    return 0


def _registered_devices(registry: Path) -> set[str]:
    """The device ids in a hashed token file (checked first: a malformed file is an error)."""
    from eyeops.auth import TokenRegistry

    if not registry.exists():
        return set()
    TokenRegistry.from_file(registry)
    lines = registry.read_text(encoding="utf-8").splitlines()
    return {fields[0] for fields in (line.split("#", 1)[0].split() for line in lines) if fields}


def _rotate(registry: Path, token_file: Path, device_id: str) -> None:
    """A new token for a registered device: the token file first, then its line in the hashed
    file, each replaced whole (a crash leaves the old pair or a token to rotate again)."""
    import os

    from eyeops.auth import hash_token, new_token

    token = new_token()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    staging = token_file.with_name(f".{token_file.name}.new")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.replace(staging, token_file)
    lines = registry.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.split("#", 1)[0].split()[:1] != [device_id]]
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    kept.append(f"{device_id} {hash_token(token)}\n")
    staging = registry.with_name(f".{registry.name}.new")
    staging.write_text("".join(kept), encoding="utf-8")
    os.chmod(staging, registry.stat().st_mode & 0o7777)
    os.replace(staging, registry)


def _watch(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from eyeops.gateway.config import GatewaySetupError, describe_config_problems, load_gateway_config
    from eyeops.gateway.runner import run_watch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upload is noise
    overrides = {key: getattr(args, key) for key in WATCH_OPTIONS}
    try:
        config = load_gateway_config(args.config, overrides)
    except ValidationError as exc:
        raise GatewaySetupError(f"gateway watch: {describe_config_problems(exc, WATCH_OPTIONS)}") from exc
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
