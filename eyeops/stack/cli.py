"""`eyeops up` and `eyeops demo`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path

from eyeops.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="start Triton, the OCR transformer, the lens service and the monitor, restart any that"
        " crashes; Ctrl-C stops them (so does this process's death, SIGKILL included)",
    )
    up.add_argument("--triton-port", type=int, default=None, help="HTTP; gRPC and metrics take the next two")
    up.add_argument("--ocr-port", type=int, default=None)
    up.add_argument("--lens-port", type=int, default=8082)
    up.add_argument("--lens-predictor-port", type=int, default=None, help="default: a free port")
    up.add_argument("--monitor-port", type=int, default=None, help="default: a free port")
    up.add_argument("--console-port", type=int, default=8090, help="the review console (web)")
    up.set_defaults(func=_up)
    up.add_argument(
        "--device-tokens",
        type=Path,
        default=None,
        help="the OCR's hashed device-token registry (default: settings, else the data folder's"
        " credentials/device-tokens.txt, made on first start with a token for local-device)",
    )
    up.add_argument(
        "--insecure",
        action="store_true",
        help="serve every endpoint without authentication (the servers still listen on 127.0.0.1 only)",
    )
    demo = sub.add_parser(
        "demo", help="start the stack and one gateway per simulated device, drop rendered exams, summarise"
    )
    demo.add_argument("--count", type=int, default=300)
    demo.add_argument("--seed", type=int, default=None, help="default: a new seed per run")
    demo.add_argument("--devices-per-kind", type=int, default=1)
    demo.set_defaults(func=_demo)


SUPERVISE_EVERY_S = 0.5


def _up(args: argparse.Namespace) -> int:
    from eyeops.devices import load_layouts
    from eyeops.devices.layout import LAYOUT_DIRS_ENV, extra_layout_dirs
    from eyeops.stack.console import FIRST_USER, ConsoleLogin, console_process
    from eyeops.stack.credentials import LocalCredentials
    from eyeops.stack.lens import LensStack, prepare_local_lens
    from eyeops.stack.local import LocalStack
    from eyeops.stack.monitor import MonitorStack, prepare_local_detectors
    from eyeops.stack.process import Supervisor, ensure_ports_free, free_port

    settings = Settings()
    print(f"data folder: {settings.data_dir} (set EYEOPS_DATA_DIR to use another)", flush=True)
    triton_port = args.triton_port or settings.http_port_triton
    ocr_port = args.ocr_port or settings.http_port_ocr
    predictor_port = args.lens_predictor_port or free_port()
    monitor_port = args.monitor_port or free_port()
    # Before anything starts: a port held by a stale stack would otherwise answer our readiness
    # checks, or fail a child much later with an exit code that names neither port nor holder.
    ensure_ports_free(
        [
            (triton_port, "--triton-port"),
            (triton_port + 1, "--triton-port (Triton gRPC is its port + 1)"),
            (triton_port + 2, "--triton-port (Triton metrics is its port + 2)"),
            (ocr_port, "--ocr-port"),
            (args.lens_port, "--lens-port"),
            (predictor_port, "--lens-predictor-port"),
            (monitor_port, "--monitor-port"),
            (args.console_port, "--console-port"),
        ]
    )
    # Devices onboarded with `eyeops devices onboard` or in the console land in <data>/layouts by
    # default: every process of the stack reads them (after a restart of the OCR service).
    onboarded = settings.data_dir / "layouts"
    onboarded.mkdir(parents=True, exist_ok=True)
    if onboarded.resolve() not in [d.resolve() for d in extra_layout_dirs()]:
        os.environ[LAYOUT_DIRS_ENV] = os.pathsep.join([*map(str, extra_layout_dirs()), str(onboarded)])
    credentials = None
    if not args.insecure:
        credentials = LocalCredentials.provision(
            settings.data_dir / "credentials",
            device_registry=args.device_tokens or settings.device_tokens_file,
        )
    model_dir, repo, eye_ids = prepare_local_lens(settings.data_dir / "lens")
    detectors = prepare_local_detectors(settings.data_dir / "lens", model_dir)
    monitor = MonitorStack(
        detectors,
        settings.data_dir / "monitor.db",
        settings.data_dir / "log",
        port=monitor_port,
        credentials=credentials,
        kinds=load_layouts().kinds(),
    )
    print("starting the monitoring service ...", flush=True)
    monitor_url = monitor.start()
    stack = LocalStack(
        settings,
        triton_port=triton_port,
        ocr_port=ocr_port,
        device_tokens=args.device_tokens,
        feature_repo=repo,  # accepted biometry, AS-OCT and refraction exams are pushed here
        logger_url=monitor_url,
        credentials=credentials,
    )
    print("starting tritonserver and the OCR transformer ...", flush=True)
    try:
        endpoints = stack.start()
    except BaseException:
        monitor.stop()
        raise
    lens = LensStack(
        model_dir,
        repo,
        settings.data_dir / "log",
        port=args.lens_port,
        logger_url=monitor_url,
        predictor_port=predictor_port,
        credentials=credentials,
    )
    try:
        lens_endpoints = lens.start()
    except BaseException:
        stack.stop()
        monitor.stop()
        raise
    login = ConsoleLogin.provision(settings.data_dir / "credentials")
    console = console_process(
        login,
        args.console_port,
        endpoints.database_url,
        settings.data_dir / "log",
        triton_url=endpoints.triton,
        triton_key=credentials.triton_key if credentials else None,
        monitor_url=monitor_url,
        monitor_token=credentials.monitor_read_token if credentials else None,  # reads, posts nothing
        finetune_registry=settings.data_dir / "registry",  # where `eyeops devices finetune` registers
    )
    try:
        console.start()
        console.wait_ready(60)
    except BaseException:
        console.stop()
        lens.stop()
        stack.stop()
        monitor.stop()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"OCR (KServe v1/v2): {endpoints.ocr}/v1/models/ocr:predict  {endpoints.ocr}/v2/models/ocr/infer")
    print(f"OCR metrics:        {endpoints.ocr}/metrics")
    print(f"Triton (v2):        {endpoints.triton}/v2/models/trocr")
    print(f"Triton metrics:     {endpoints.triton_metrics}")
    print(f"results database:   {endpoints.database_url}")
    print(f"lens (KServe v1):   {lens_endpoints.lens}/v1/models/lens:predict")
    client = f" --token-file {credentials.client_token}" if credentials else ""
    print(f"                    try: eyeops recommend {eye_ids[0]} --endpoint {lens_endpoints.lens}{client}")
    print(f"lens predictor:     {lens_endpoints.predictor}/v1/models/lens:predict (and :explain)")
    print(f"Feast repository:   {repo}")
    print(f"monitor:            {monitor_url}/metrics  {monitor_url}/status  POST {monitor_url}/feedback")
    if credentials is None:
        print("authentication is OFF (--insecure): any local process may call every endpoint")
    else:
        print(f"credentials:        {credentials.root} (every endpoint but health and metrics needs a")
        print("                    bearer token; all servers listen on 127.0.0.1). Device registry:")
        print(f"                    {stack.device_tokens}; the monitor's token: {credentials.monitor_token}")
        if credentials.device_token.exists():
            print(f"                    a first device's token: {credentials.device_token}")
    print(f"review console:     http://127.0.0.1:{args.console_port}/ (user {FIRST_USER}, password in")
    print(f"                    {login.password}; add people: eyeops console users add NAME --role reviewer")
    print(f"                    --users-file {login.users})")
    print("Ctrl-C stops everything; a service that exits is restarted.", flush=True)
    supervisor = Supervisor(
        [monitor.process, *stack.processes, *lens.processes, console], say=lambda m: print(m, flush=True)
    )
    try:
        while not stop.wait(SUPERVISE_EVERY_S):
            supervisor.check()
    finally:
        print("stopping ...", flush=True)
        console.stop()
        lens.stop()
        stack.stop()
        monitor.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from eyeops.stack.demo import run_demo

    settings = Settings()
    print(f"data folder: {settings.data_dir} (set EYEOPS_DATA_DIR to use another)", flush=True)
    seed = args.seed if args.seed is not None else int(time.time())
    summary = run_demo(settings, args.count, seed, args.devices_per_kind, say=lambda m: print(m, flush=True))
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
    print(
        f"silent errors (wrong and accepted): {summary['silent_error_rate']:.4f} of fields"
        f" at confidence threshold {settings.confidence_threshold}"
    )
    for wrong in summary["wrong_fields"]:
        if wrong["status"] == "accepted":
            print(
                f"  {wrong['device_kind']} {wrong['field']}: read {wrong['raw_text']!r} for"
                f" {wrong['truth']!r} (confidence {wrong['confidence']})"
            )
    print(
        f"{summary['files']} files dropped -> {summary['exams_in_database']} exams in the database"
        f" ({summary['exams_per_s']} exams/s through the gateways)"
    )
    print(
        f"delivery (file captured -> result stored): p50 {summary['delivery_ms_p50']:.0f} ms,"
        f" p95 {summary['delivery_ms_p95']:.0f} ms"
    )
    print(f"results, review queue and inference log: {summary['database_url']}")
    print(f"export folders, gateway outboxes and tokens: {summary['demo_dir']}")
    print("\nlens-size recommendations (simulated eyes, features through Feast):")
    for answer in summary["recommendations"]:
        supported = ", ".join(f"{s['size_mm']:.1f}" for s in answer["sizes"] if s["supported"])
        print(
            f"  {answer['eye_id']}: recommended {answer['recommended_size_mm']:.1f} mm"
            f" (nomogram {answer['nomogram_size_mm']:.1f}; supported {supported}) plot {answer['plot']}"
        )
    print(json.dumps({k: v for k, v in summary.items() if k not in ("per_device", "recommendations")}))
    return 0 if summary["exams_in_database"] == summary["files"] else 1
