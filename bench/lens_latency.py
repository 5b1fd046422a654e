"""Lens service latency at a fixed arrival rate, side by side in one run on one machine:

  A. the lens endpoint: transformer → Feast online store (SQLite) → predictor, {"eye_id": ...};
  B. the predictor alone, with the same eyes' features in the request.

Open loop: requests start on a fixed schedule (default 50 per second) whatever the previous ones
are doing, so queueing shows in the tail. Phases alternate A, B, A, B. Prints one JSON object,
with each path's server CPU per request (bench.service_curves.by_role: the servers' own cost,
whatever else runs on the machine). The load generator (aiohttp) shares the two cores with the servers.
Run:  .venv/bin/python -m bench.lens_latency [--rate 50] [--seconds 20] [--baseline REF]
With --baseline, REF's servers (a git worktree, on PYTHONPATH; `code` in the output says where each
run imported its servers from) are measured first, then this
checkout's, on the same model and Feast repository.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from eyeops.stack.lens import LensStack, local_eye_features, prepare_local_lens


async def open_loop(
    url: str,
    bodies: list[dict[str, Any]],
    rate: float,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    encoded = [json.dumps(body).encode() for body in bodies]
    timeout = aiohttp.ClientTimeout(total=30)
    send = {"content-type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=send) as client:

        async def one(body: bytes) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                async with client.post(url, data=body) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t0) * 1e3)
            else:
                errors += 1

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(encoded[i % len(encoded)])))
        await asyncio.gather(*tasks)
    return latencies, errors


def summary(latencies: list[float], errors: int, cpu_s: float | None = None) -> dict[str, float | int]:
    """Latency percentiles; with `cpu_s` (the servers' CPU seconds over these requests), also the
    servers' CPU per request."""
    arr = np.array(latencies)
    n = len(latencies) + errors
    out: dict[str, float | int] = {
        "requests": n,
        "errors": errors,
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
    }
    if cpu_s is not None:
        out["server_cpu_ms_per_request"] = round(cpu_s * 1e3 / max(1, n), 3)
    return out


def measure(
    model_dir: Path, repo: Path, log_dir: Path, eye_ids: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    """Both paths of one lens stack at `rate`, alternating A, B, A, B."""
    features = local_eye_features()
    lens_bodies = [{"instances": [{"eye_id": e}]} for e in eye_ids]
    predictor_bodies = [{"instances": [features[e]]} for e in eye_ids]
    from bench.service_curves import LENS_ROLES, by_role

    roles = {"lens": LENS_ROLES, "predictor": ("lens predictor",)}
    with LensStack(model_dir, repo, log_dir) as endpoints:
        lens_url = f"{endpoints.lens}/v1/models/lens:predict"
        predictor_url = f"{endpoints.predictor}/v1/models/lens:predict"
        asyncio.run(open_loop(lens_url, lens_bodies, 10, 2))  # warm both paths
        asyncio.run(open_loop(predictor_url, predictor_bodies, 10, 2))
        results: dict[str, list[float]] = {"lens": [], "predictor": []}
        errors = {"lens": 0, "predictor": 0}
        cpu = {"lens": 0.0, "predictor": 0.0}
        for _ in range(2):
            for name, url, bodies in (
                ("lens", lens_url, lens_bodies),
                ("predictor", predictor_url, predictor_bodies),
            ):
                before = sum(cpu for _, cpu in by_role(os.getpid(), roles[name]).values())
                lat, err = asyncio.run(open_loop(url, bodies, rate, seconds / 2))
                cpu[name] += sum(cpu for _, cpu in by_role(os.getpid(), roles[name]).values()) - before
                results[name] += lat
                errors[name] += err
    return {
        "lens_endpoint": summary(results["lens"], errors["lens"], cpu["lens"]),
        "predictor_only": summary(results["predictor"], errors["predictor"], cpu["predictor"]),
    }


def imported_from(code: Path | None) -> str:
    """Where a server started as measure() starts them imports `inference` from (the check that a
    baseline runs the baseline's code)."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    where = "import inference, pathlib; print(pathlib.Path(inference.__file__).parent.parent)"
    found = subprocess.run(
        [sys.executable, "-c", where], capture_output=True, text=True, check=True, env=env
    )
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--baseline",
        default=None,
        help="a git ref whose servers run first, side by side with this checkout's",
    )
    args = parser.parse_args()
    out: dict[str, Any] = {"rate_per_s": args.rate, "seconds_per_path": args.seconds}
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="eyeops-lens-bench-") as tmp:
        root = Path(tmp)
        with contextlib.redirect_stdout(sys.stderr):  # Feast prints as it materializes
            model_dir, repo, eye_ids = prepare_local_lens(root, say=lambda m: None)
        codes: list[tuple[str, Path | None]] = [("this checkout", None)]
        if args.baseline:
            tree = root / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline],
                           check=True, capture_output=True, cwd=here)  # fmt: skip
            codes.insert(0, (f"baseline {args.baseline}", tree))
        try:
            for label, code in codes:
                # The servers are child processes: PYTHONPATH picks whose code they import. They
                # start in the temporary folder: `python -m` puts its working folder first on the
                # path, so started in this checkout every "baseline" ran this checkout's code (the
                # side-by-side figures before 2026-12-07 compared the same code twice).
                saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
                if code is not None:
                    os.environ["PYTHONPATH"] = str(code)
                os.chdir(root)
                try:
                    out[label] = measure(
                        model_dir, repo, root / f"log-{len(out)}", eye_ids, args.rate, args.seconds
                    )
                    out[label]["code"] = imported_from(code)
                finally:
                    os.chdir(cwd)
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(root / "baseline")], check=False, cwd=here
                )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
