"""`python -m eyeops_detectors fit|serve` (the detectors image's entrypoint)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The entrypoint's arguments; the Helm chart's tests parse the args it renders with this."""
    parser = argparse.ArgumentParser(prog="eyeops_detectors")
    cmds = parser.add_subparsers(dest="command", required=True)
    fit = cmds.add_parser("fit", help="fit the drift detectors on a reference .npz and save them")
    fit.add_argument("--reference", type=Path, required=True)
    fit.add_argument("--out", type=Path, required=True)
    fit.add_argument("--window", type=int, default=200)
    fit.add_argument("--p-val", type=float, default=0.005)
    fit.add_argument("--ert", type=int, default=10000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--heldout-fraction", type=float, default=0.3)
    fit.add_argument("--summary", type=Path, default=None, help="also write the summary JSON here")
    serve = cmds.add_parser("serve", help="run the monitoring service (KServe logger sink)")
    serve.add_argument(
        "--detectors", type=Path, required=True, help="a fitted detector set (registry version)"
    )
    serve.add_argument(
        "--state", required=True, help="SQLite file, or postgresql://… URL (a cluster), for windows and state"
    )
    serve.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=ROLE",
        help="an InferenceService whose events to read, and its role (lens or ocr); repeat",
    )
    serve.add_argument(
        "--device-kind",
        action="append",
        default=[],
        help="a device kind whose OCR events may label metrics (besides the detectors' kinds); repeat",
    )
    serve.add_argument(
        "--outcome-window-days",
        nargs=2,
        type=int,
        default=[21, 56],
        metavar=("FIRST", "LAST"),
        help="the AS-OCT that counts as the outcome: the first this many days after surgery",
    )
    serve.add_argument(
        "--tokens", type=Path, default=None, help="token registry for /feedback, /status, /history"
    )
    serve.add_argument(
        "--sink-tokens", type=Path, default=None, help="token registry for posting events (default: none)"
    )
    serve.add_argument(
        "--read-tokens",
        type=Path,
        default=None,
        help="token registry of callers that only read /status and /history (the review console)",
    )
    serve.add_argument("--insecure", action="store_true", help="serve those routes without a token")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--sink-port",
        type=int,
        default=None,
        help="take logged events on this port alone (not on --port), so that a NetworkPolicy can admit"
        " only the InferenceServices' pods to it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fit":
        from eyeops_detectors.detectors import DetectorConfig
        from eyeops_detectors.fit import fit_and_save

        config = DetectorConfig(window=args.window, p_val=args.p_val, ert=args.ert, seed=args.seed)
        summary = fit_and_save(args.reference, args.out, config, args.heldout_fraction)
        text = json.dumps(summary, indent=2)
        if args.summary:
            args.summary.write_text(text)
        print(text)
    elif args.command == "serve":
        import uvicorn

        from eyeops_detectors.auth import TokenCheck
        from eyeops_detectors.monitor import Monitor
        from eyeops_detectors.service import MonitorSlot, build_monitor, create_app

        if args.tokens is None and not args.insecure:
            raise SystemExit("pass --tokens (a registry made with `eyeops gateway token`) or --insecure")
        tokens = TokenCheck.from_file(args.tokens) if args.tokens else None
        sink = TokenCheck.from_file(args.sink_tokens) if args.sink_tokens else None
        readers = TokenCheck.from_file(args.read_tokens) if args.read_tokens else None
        services = dict(pair.split("=", 1) for pair in args.service) or {"lens": "lens", "ocr": "ocr"}

        def build() -> Monitor:
            return build_monitor(
                args.detectors, args.state, services, args.device_kind, tuple(args.outcome_window_days)
            )

        # A first install has no detector set yet: serve ready but degraded, and start monitoring
        # when the seed Job or the detector-fitting pipeline writes one (no crash loop).
        slot = MonitorSlot(waiting_for=args.detectors, build=build)
        if not slot.try_load():
            logging.getLogger("eyeops_detectors").warning(
                "no detector set at %s yet: serving degraded until one appears", args.detectors
            )
            slot.watch()
        if args.sink_port is None:
            app = create_app(slot, tokens, sink, read_tokens=readers)
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
            return 0
        if args.sink_port == args.port:
            raise SystemExit("--sink-port must differ from --port")
        import asyncio

        servers = [
            uvicorn.Server(uvicorn.Config(app, host=args.host, port=port, log_level="warning"))
            for app, port in (
                (create_app(slot, tokens, sink, serve="operator", read_tokens=readers), args.port),
                (create_app(slot, tokens, sink, serve="sink"), args.sink_port),
            )
        ]

        async def both() -> None:  # one process, one monitor; either server stopping stops both
            tasks = [asyncio.create_task(s.serve()) for s in servers]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(both())
    return 0


if __name__ == "__main__":
    sys.exit(main())
