"""The OCR transformer's call to Triton's TrOCR over HTTP (KServe's REST client, what it sends today)
and over gRPC (KServe's gRPC client), side by side in one run: the client's CPU per call and calls/s,
one exam's crops per call, 8 in flight. Against a running `eyeops up` (its Triton and its key):

    .venv/bin/python -m bench.triton_protocols --data-dir "$EYEOPS_DATA_DIR" \
        --triton-http 127.0.0.1:8000 --triton-grpc 127.0.0.1:8001

Prints one JSON object; both protocols must read every crop alike, or it exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eyeops.auth import TRITON_GRPC_KEY_HEADER, TRITON_KEY_HEADER


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _texts(response: Any) -> list[str]:
    return [t.decode() if isinstance(t, bytes) else str(t) for t in response.outputs[0].as_numpy().ravel()]


async def _measure(
    call: Callable[[Any], Awaitable[Any]], requests: list[Any], calls: int, flight: int
) -> dict[str, float]:
    async def worker(start: int) -> None:
        for i in range(start, calls, flight):
            await call(requests[i % len(requests)]())

    await worker(0)  # connections and Triton warm
    cpu, wall = _cpu_s(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(flight)))
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    return {"client_cpu_ms_per_call": round(cpu / calls * 1e3, 3), "calls_per_s": round(calls / wall, 1)}


async def run(args: argparse.Namespace) -> int:
    from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig

    from eyeops.devices import load_layouts
    from eyeops.ocr.pipeline import prepare_exam
    from eyeops.ocr.wire import ExamInput
    from eyeops.settings import Settings
    from eyeops.synth.exams import synthesize_exams
    from inference.ocr_transformer.model import recognizer_request

    key = (Path(args.data_dir) / "credentials" / "triton.key").read_text().strip()
    layouts, settings = load_layouts(), Settings()
    exams = synthesize_exams(list(layouts), args.exams, seed=5, split="eval")
    prepared = [prepare_exam(ExamInput(e.image, e.device_kind), layouts, settings) for e in exams]
    requests = [
        (lambda p=p, i=i: recognizer_request("trocr", p.crops, p.grammars, f"bench-{i}"))
        for i, p in enumerate(prepared)
    ]
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    grpc = InferenceGRPCClient(args.triton_grpc, timeout=60)
    http_headers = {TRITON_KEY_HEADER: key, "accept-encoding": "identity"}

    async def over_http(request: Any) -> Any:
        return await rest.infer(
            f"http://{args.triton_http}", request, model_name="trocr", headers=dict(http_headers)
        )

    async def over_grpc(request: Any) -> Any:
        return await grpc.infer(request, headers=((TRITON_GRPC_KEY_HEADER, key),))

    same = all([_texts(await over_http(r())) == _texts(await over_grpc(r())) for r in requests])
    result: dict[str, Any] = {"exams": len(requests), "calls": args.calls, "in_flight": args.in_flight}
    for round_ in range(2):  # interleaved, so a noisy neighbour hits both alike
        for name, call in (("http", over_http), ("grpc", over_grpc)):
            result[f"{name}_round{round_}"] = await _measure(call, requests, args.calls, args.in_flight)
    http = sum(result[f"http_round{r}"]["client_cpu_ms_per_call"] for r in range(2))
    grpc_ = sum(result[f"grpc_round{r}"]["client_cpu_ms_per_call"] for r in range(2))
    result["grpc_over_http_client_cpu"] = round(grpc_ / http, 2)
    result["same_readings"] = same
    print(json.dumps(result))
    return 0 if same else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="the `eyeops up` data folder (its Triton key)")
    parser.add_argument("--triton-http", default="127.0.0.1:8000", help="Triton's HTTP host:port")
    parser.add_argument("--triton-grpc", default="127.0.0.1:8001", help="Triton's gRPC host:port")
    parser.add_argument("--exams", type=int, default=12)
    parser.add_argument("--calls", type=int, default=240)
    parser.add_argument("--in-flight", type=int, default=8)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
