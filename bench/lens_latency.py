"""Lens service latency at a fixed arrival rate, side by side in one run on one machine:

  A. the lens endpoint: transformer → Feast online store (SQLite) → predictor, {"eye_id": ...};
  B. the predictor alone, with the same eyes' features in the request.

Open loop: requests start on a fixed schedule (default 50 per second) whatever the previous ones
are doing, so queueing shows in the tail. Phases alternate A, B, A, B. Prints one JSON object.
Run:  .venv/bin/python -m bench.lens_latency [--rate 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
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
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as client:

        async def one(body: dict[str, Any]) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            response = await client.post(url, json=body)
            if response.status_code == 200:
                latencies.append((time.perf_counter() - t0) * 1e3)
            else:
                errors += 1

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
    return latencies, errors


def summary(latencies: list[float], errors: int) -> dict[str, float | int]:
    arr = np.array(latencies)
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eyeops-lens-bench-") as tmp:
        root = Path(tmp)
        model_dir, repo, eye_ids = prepare_local_lens(root, say=lambda m: None)
        features = local_eye_features()
        lens_bodies = [{"instances": [{"eye_id": e}]} for e in eye_ids]
        predictor_bodies = [{"instances": [features[e]]} for e in eye_ids]
        with LensStack(model_dir, repo, root / "log") as endpoints:
            lens_url = f"{endpoints.lens}/v1/models/lens:predict"
            predictor_url = f"{endpoints.predictor}/v1/models/lens:predict"
            asyncio.run(open_loop(lens_url, lens_bodies, 10, 2))  # warm both paths
            asyncio.run(open_loop(predictor_url, predictor_bodies, 10, 2))
            results: dict[str, list[float]] = {"lens": [], "predictor": []}
            errors = {"lens": 0, "predictor": 0}
            for _ in range(2):
                for name, url, bodies in (
                    ("lens", lens_url, lens_bodies),
                    ("predictor", predictor_url, predictor_bodies),
                ):
                    lat, err = asyncio.run(open_loop(url, bodies, args.rate, args.seconds / 2))
                    results[name] += lat
                    errors[name] += err
    out = {
        "rate_per_s": args.rate,
        "seconds_per_path": args.seconds,
        "lens_endpoint": summary(results["lens"], errors["lens"]),
        "predictor_only": summary(results["predictor"], errors["predictor"]),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
