"""The two services' cost curves on one machine, for sizing replicas:

  ocr   exams/s, latency, memory and CPU (cores busy) against concurrent devices, 1 → 64: one
        `eyeops up` (Triton with both recognisers, the OCR transformer, the results database,
        Feast), each device a closed-loop client sending its next new exam as soon as its last
        was answered (bench/ocr_load.py's client), --seconds per step, each step's exams new.
  lens  latency, CPU and memory against the arrival rate, 25 → 400 requests/s, open loop: the lens endpoint
        (transformer → Feast online → predictor) and the predictor alone, --seconds per step
        each (bench/lens_latency.py's paths). A rate the service cannot hold shows as a p99 that
        leaves the curve.

Prints a table and one JSON object per curve; --out DIR also writes ocr-devices.* / lens-rate.*.
Run:  .venv/bin/python -m bench.service_curves [ocr|lens|all] [--seconds 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.curves import report

ROLES = {
    "tritonserver": "Triton",
    "inference.ocr_transformer": "OCR transformer",
    "inference.lens_transformer": "lens transformer",
    "inference.lens_predictor": "lens predictor",
}


def by_role(root_pid: int, roles: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """(resident MB, CPU seconds so far) of the servers' processes under `root_pid`, by role:
    Triton (with its Python backend stubs), the OCR transformer, the lens transformer and
    predictor."""
    import psutil

    out = dict.fromkeys(roles, (0.0, 0.0))
    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
            rss = proc.memory_info().rss / 1e6
            times = proc.cpu_times()
        except psutil.Error:
            continue
        for marker, role in ROLES.items():
            if role in out and (
                marker in line or (role == "Triton" and "triton_python_backend_stub" in line)
            ):
                mb, cpu = out[role]
                out[role] = (mb + rss, cpu + times.user + times.system)
                break
    return out


OCR_ROLES = ("Triton", "OCR transformer")
LENS_ROLES = ("lens transformer", "lens predictor")


def fresh(exams: list[Any], tag: str) -> list[Any]:
    """The same pixels under new file hashes: exams the service has not read yet."""
    from bench.ocr_load import Exam
    from eyeops.synth.exams import tagged_copy

    return [Exam(tagged_copy(e.image, tag), e.device_kind) for e in exams]


def ocr_curve(devices: list[int], seconds: float, out: Path | None) -> None:
    from bench.ocr_load import UpProcess, render_exams, run_load

    exams = render_exams(120)
    series: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="eyeops-ocr-curve-") as tmp:
        up = UpProcess.start(Path(tmp) / "data")
        try:
            token = up.device_token()
            asyncio.run(run_load(up.ocr, fresh(exams, "warm"), 4, 10, token=token))  # warm every model
            for n in devices:
                # Exams no step has sent: the service answers an exam it has read from its database
                before = by_role(up.proc.pid, OCR_ROLES)
                load = asyncio.run(run_load(up.ocr, fresh(exams, f"step-{n}"), n, seconds, token=token))
                result = load.summary()
                if result["server_errors_5xx"] or result["transport_errors"]:
                    raise SystemExit(f"{n} devices: errors {result}")
                series.setdefault("new exams/s", []).append(float(result["new_exams_per_s"]))  # type: ignore[arg-type]
                series.setdefault("p50 ms", []).append(float(result["latency_ms_p50"]))  # type: ignore[arg-type]
                series.setdefault("p99 ms", []).append(float(result["latency_ms_p99"]))  # type: ignore[arg-type]
                for name, (rss, cpu) in by_role(up.proc.pid, OCR_ROLES).items():
                    series.setdefault(f"{name} RSS MB", []).append(rss)
                    series.setdefault(f"{name} cores", []).append((cpu - before[name][1]) / load.seconds)
                print(f"[ocr] {n} devices: {result}", flush=True)
        finally:
            up.stop()
    report(
        out,
        "ocr-devices",
        "OCR service (eyeops up, two cores) against concurrent devices",
        "devices sending at once",
        devices,
        series,
        "exams/s / ms",
        {"seconds_per_step": seconds},
    )


def lens_curve(rates: list[float], seconds: float, out: Path | None) -> None:
    from bench.lens_latency import open_loop, summary
    from eyeops.stack.lens import LensStack, local_eye_features, prepare_local_lens

    series: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="eyeops-lens-curve-") as tmp:
        model_dir, repo, eye_ids = prepare_local_lens(Path(tmp), say=lambda m: None)
        features = local_eye_features()
        paths = {
            "lens": [{"instances": [{"eye_id": e}]} for e in eye_ids],
            "predictor": [{"instances": [features[e]]} for e in eye_ids],
        }
        with LensStack(model_dir, repo, Path(tmp) / "log") as endpoints:
            urls = {
                "lens": f"{endpoints.lens}/v1/models/lens:predict",
                "predictor": f"{endpoints.predictor}/v1/models/lens:predict",
            }
            for name in paths:
                asyncio.run(open_loop(urls[name], paths[name], 10, 2))  # warm
            for rate in rates:
                for name in paths:
                    before = by_role(os.getpid(), LENS_ROLES)
                    t0, own0 = time.perf_counter(), os.times()
                    latencies, errors = asyncio.run(open_loop(urls[name], paths[name], rate, seconds))
                    took, own = time.perf_counter() - t0, os.times()
                    # the load generator shares the two cores: its own CPU says when it, not the
                    # service, is what cannot keep up
                    series.setdefault(f"load generator cores ({name} path)", []).append(
                        (own.user + own.system - own0.user - own0.system) / took
                    )
                    for role, (rss, cpu) in by_role(os.getpid(), LENS_ROLES).items():
                        if name == "lens" or role == "lens predictor":
                            series.setdefault(f"{role} cores ({name} path)", []).append(
                                (cpu - before[role][1]) / took
                            )
                            series.setdefault(f"{role} RSS MB ({name} path)", []).append(rss)
                    row = summary(latencies, errors)
                    series.setdefault(f"{name} p50 ms", []).append(float(row["p50_ms"]))
                    series.setdefault(f"{name} p99 ms", []).append(float(row["p99_ms"]))
                    print(f"[lens] {rate:g}/s {name}: {row}", flush=True)
    report(
        out,
        "lens-rate",
        "Lens service (two cores) latency against arrival rate",
        "requests per second",
        rates,
        series,
        "ms",
        {"seconds_per_step": seconds},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("curve", nargs="?", choices=("ocr", "lens", "all"), default="all")
    parser.add_argument("--devices", default="1,2,4,8,16,32,64")
    parser.add_argument("--rates", default="25,50,100,150,200,300,400")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.curve in ("lens", "all"):
        lens_curve([float(r) for r in args.rates.split(",")], args.seconds, args.out)
    if args.curve in ("ocr", "all"):
        ocr_curve([int(d) for d in args.devices.split(",")], args.seconds, args.out)


if __name__ == "__main__":
    main()
