"""`eyeops up` and `eyeops demo`."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from eyeops.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start Triton and the OCR transformer; Ctrl-C stops them")
    up.add_argument("--triton-port", type=int, default=None)
    up.add_argument("--ocr-port", type=int, default=None)
    up.set_defaults(func=_up)
    demo = sub.add_parser("demo", help="start the stack, send rendered exams of all six kinds, summarise")
    demo.add_argument("--count", type=int, default=300)
    demo.add_argument("--seed", type=int, default=None, help="default: a new seed per run")
    demo.add_argument("--concurrency", type=int, default=8)
    demo.add_argument("--endpoint", default=None, help="use a running OCR endpoint instead")
    demo.set_defaults(func=_demo)


def _up(args: argparse.Namespace) -> int:
    from eyeops.stack.local import LocalStack

    settings = Settings()
    stack = LocalStack(settings, triton_port=args.triton_port, ocr_port=args.ocr_port)
    print("starting tritonserver and the OCR transformer ...", flush=True)
    endpoints = stack.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"OCR (KServe v1/v2): {endpoints.ocr}/v1/models/ocr:predict  {endpoints.ocr}/v2/models/ocr/infer")
    print(f"OCR metrics:        {endpoints.ocr}/metrics")
    print(f"Triton (v2):        {endpoints.triton}/v2/models/trocr")
    print(f"Triton metrics:     {endpoints.triton_metrics}")
    print(f"results database:   {endpoints.database_url}")
    print("Ctrl-C stops everything.", flush=True)
    try:
        stop.wait()
    finally:
        print("stopping ...", flush=True)
        stack.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from eyeops.ocr.evaluate import run_eval
    from eyeops.stack.local import LocalStack

    settings = Settings()
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"rendering {args.count} exams over six device kinds (seed {seed}) ...", flush=True)
    if args.endpoint:
        summary = run_eval(args.count, seed, args.endpoint, args.concurrency, tesseract=False, verbose=True)
        where = "the running service's database"
    else:
        with LocalStack(settings) as endpoints:
            print(f"stack up: OCR {endpoints.ocr}, Triton {endpoints.triton}", flush=True)
            summary = run_eval(args.count, seed, endpoints.ocr, args.concurrency, tesseract=False)
        where = endpoints.database_url
    print(f"\n{'device kind':26s} {'exams':>5s} {'field acc':>9s} {'exam acc':>8s} {'review':>7s}")
    for kind, rates in summary["per_device"].items():
        print(
            f"{kind:26s} {rates['exams']:5d} {rates['field_accuracy']:9.4f} {rates['exam_accuracy']:8.3f}"
            f" {rates['review_rate']:7.3f}"
        )
    print(
        f"{'all':26s} {summary['exams']:5d} {summary['field_accuracy']:9.4f} {summary['exam_accuracy']:8.3f}"
        f" {summary['review_rate']:7.3f}"
    )
    print(f"silent errors (wrong and accepted): {summary['silent_error_rate']:.4f} of fields")
    print(
        f"latency per exam at {args.concurrency} concurrent: p50 {summary['latency_ms_p50']:.0f} ms,"
        f" p95 {summary['latency_ms_p95']:.0f} ms"
    )
    print(f"results, review queue and inference log: {where}")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_device"}))
    return 0
