"""Can the monitor keep up with the lens service? Both measured side by side in one run.

  A. the lens endpoint (transformer → Feast → predictor), closed loop with `--concurrency` clients:
     requests per second at saturation. With the logger on both components (mode all) each
     request makes 4 logger events (transformer and predictor, request and response).
  B. the monitoring service (uvicorn, the detectors environment), the same clients posting the
     binary CloudEvents the lens traffic makes (captured from real lens answers): events per second.

Phases alternate A, B, A, B (this machine is shared and noisy). Ratio = B ÷ (4 × A): how many
times faster than the lens service produces events the monitor ingests them (target ≥ 2).
Run:  .venv/bin/python -m bench.monitor_ingest [--seconds 10] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from eyeops.stack.lens import LensStack, local_eye_features, prepare_local_lens
from eyeops.stack.monitor import MonitorStack, prepare_local_detectors

EVENTS_PER_LENS_REQUEST = 4
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


async def closed_loop(send: Any, seconds: float, concurrency: int) -> tuple[int, int, float]:
    """(ok, errors, seconds) for `concurrency` clients each sending as fast as answers come."""
    ok = errors = 0
    deadline = time.perf_counter() + seconds
    counter = itertools.count()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal ok, errors
        while time.perf_counter() < deadline:
            status = await send(http, next(counter))
            ok, errors = (ok + 1, errors) if status < 300 else (ok, errors + 1)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return ok, errors, time.perf_counter() - start


def lens_events(
    eye_id: str, features: dict[str, float], answer: dict[str, Any]
) -> list[tuple[str, str, bytes]]:
    """(component, type, body) of the four events one lens request makes."""
    predictor_answer = {k: v for k, v in answer.items() if k != "eye_id"}
    return [
        ("transformer", REQUEST, json.dumps({"instances": [{"eye_id": eye_id}]}).encode()),
        ("predictor", REQUEST, json.dumps({"instances": [{"eye_id": eye_id, **features}]}).encode()),
        ("predictor", RESPONSE, json.dumps({"predictions": [predictor_answer]}).encode()),
        ("transformer", RESPONSE, json.dumps({"predictions": [answer]}).encode()),
    ]  # fmt: skip


async def post_event(
    http: httpx.AsyncClient, url: str, events: list[tuple[str, str, bytes]], n: int, patient: str, tag: str
) -> int:
    """Post the n-th of `events` to the monitor at `url` as KServe's logger does (binary CloudEvent).
    Each predictor request names a new patient (`patient` + n), so the one-eye-per-patient rule
    skips nothing and every event costs the detectors their full work."""
    component, kind, body = events[n % len(events)]
    if component == "predictor" and kind == REQUEST:
        instance = json.loads(body)["instances"][0]
        body = json.dumps({"instances": [{**instance, "eye_id": f"{patient}{n:09d}-OD"}]}).encode()
    headers = {
        "ce-specversion": "1.0", "ce-id": f"{tag}-{n // 4}", "ce-type": kind,
        "ce-source": "http://localhost:9081/", "ce-inferenceservicename": "lens",
        "ce-component": component, "content-type": "application/json",
    }  # fmt: skip
    reply = await http.post(f"{url}/", headers=headers, content=body)
    return reply.status_code


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eyeops-monitor-bench-") as tmp:
        root = Path(tmp)
        model_dir, repo, eye_ids = prepare_local_lens(root, say=lambda m: None)
        detectors = prepare_local_detectors(root, model_dir, ert=1000, say=lambda m: None)
        features = local_eye_features()
        monitor = MonitorStack(detectors, root / "monitor.db", root / "log")
        with monitor, LensStack(model_dir, repo, root / "log") as lens:
            url = f"{lens.lens}/v1/models/lens:predict"
            answers = {
                e: httpx.post(url, json={"instances": [{"eye_id": e}]}, timeout=30).json()["predictions"][0]
                for e in eye_ids
            }
            events = [ev for e in eye_ids for ev in lens_events(e, features[e], answers[e])]

            async def lens_request(http: httpx.AsyncClient, n: int) -> int:
                reply = await http.post(url, json={"instances": [{"eye_id": eye_ids[n % len(eye_ids)]}]})
                return reply.status_code

            async def monitor_event(http: httpx.AsyncClient, n: int) -> int:
                return await post_event(http, monitor.url, events, n, "B", "bench")

            phases: dict[str, list[float]] = {"lens_requests_per_s": [], "monitor_events_per_s": []}
            errors = {"lens": 0, "monitor": 0}
            for _ in range(2):
                ok, bad, took = asyncio.run(closed_loop(lens_request, args.seconds, args.concurrency))
                phases["lens_requests_per_s"].append(ok / took)
                errors["lens"] += bad
                ok, bad, took = asyncio.run(closed_loop(monitor_event, args.seconds, args.concurrency))
                phases["monitor_events_per_s"].append(ok / took)
                errors["monitor"] += bad
    lens_rate = sum(phases["lens_requests_per_s"]) / 2
    monitor_rate = sum(phases["monitor_events_per_s"]) / 2
    print(
        json.dumps(
            {
                "concurrency": args.concurrency,
                "seconds_per_phase": args.seconds,
                **{k: [round(v, 1) for v in vs] for k, vs in phases.items()},
                "errors": errors,
                "lens_events_per_s": round(EVENTS_PER_LENS_REQUEST * lens_rate, 1),
                "ratio_monitor_to_lens_events": round(
                    monitor_rate / (EVENTS_PER_LENS_REQUEST * lens_rate), 2
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
