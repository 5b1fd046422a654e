"""Throughput of the OCR predictor, measured side by side in one run on one machine:

  A. Triton (real tritonserver, dynamic batching) serving the model repository, 32 concurrent
     clients, one crop per request, sent with the binary tensor extension as the OCR transformer
     sends it;
  B. the design this replaces: in-process Hugging Face `generate`, one request at a time (a lock
     around the model), same checkpoint, same 32 clients.

Then exam latency through the whole stack (OCR transformer + Triton) at 8 concurrent devices.
Prints one JSON object.  Run:  .venv/bin/python -m bench.ocr_throughput
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import torch

from eyeops.devices import load_layouts
from eyeops.ocr.dataset import build_crop_set
from eyeops.ocr.evaluate import EvalRun, send_all
from eyeops.ocr.model import MAX_TOKENS, load_recognizer
from eyeops.resources import trocr_checkpoint
from eyeops.settings import Settings
from eyeops.stack.local import LocalStack
from eyeops.stack.process import free_port, free_triton_port
from eyeops.synth.exams import synthesize_exams
from inference.ocr_transformer.model import recognizer_request


def _binary_request(crop: np.ndarray, grammar: str) -> tuple[bytes, int]:
    """The request the OCR transformer sends (`recognizer_request`), for one crop, encoded by
    KServe's own v2 REST encoder: a JSON header, then the raw tensors."""
    body, header_length = recognizer_request("trocr", crop[None], [grammar], "bench").to_rest()
    assert isinstance(body, bytes) and header_length is not None
    return body, header_length


async def _triton_clients(url: str, crops: np.ndarray, grammars: list[str], clients: int) -> float:
    """`clients` concurrent clients, one crop per request. The load generator shares the machine's
    cores with the server, so it has to be cheap: with httpx it topped out near 115 requests/s here
    (Triton's batches stayed small for want of requests), with aiohttp it sends twice that."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(crops)):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body, header_length = _binary_request(crops[i], grammars[i])
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(header_length),
                }
                async with session.post(url, data=body, headers=headers) as reply:
                    reply.raise_for_status()
                    if not (await reply.json())["outputs"]:
                        raise RuntimeError("no outputs in Triton's reply")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0


def _generate_one_at_a_time(crops: np.ndarray, clients: int) -> float:
    recognizer = load_recognizer(trocr_checkpoint())
    lock = threading.Lock()
    todo = list(range(len(crops)))
    todo_lock = threading.Lock()

    def worker() -> None:
        while True:
            with todo_lock:
                if not todo:
                    return
                i = todo.pop()
            with lock, torch.inference_mode():
                recognizer.model.generate(
                    recognizer.pixels(crops[i : i + 1]),
                    max_new_tokens=MAX_TOKENS,
                    do_sample=False,
                    num_beams=1,
                )

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crops", type=int, default=480)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--exams", type=int, default=96)
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    layouts = load_layouts()
    data = build_crop_set(layouts, exams=args.crops // 8 + 1, seed=99, split="eval", workers=1)
    crops, grammars = data.crops[: args.crops], data.grammars[: args.crops]

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        stack = LocalStack(settings, triton_port=free_triton_port(), ocr_port=free_port())
        endpoints = stack.start()
        try:
            url = f"{endpoints.triton}/v2/models/trocr/infer"
            asyncio.run(_triton_clients(url, crops[:32], grammars[:32], args.clients))  # warm-up
            metrics_before = httpx.get(endpoints.triton_metrics).text
            triton_s = asyncio.run(_triton_clients(url, crops, grammars, args.clients))
            metrics_after = httpx.get(endpoints.triton_metrics).text
            exams = list(synthesize_exams(list(layouts), args.exams, seed=int(time.time()), split="eval"))
            run = EvalRun()
            asyncio.run(send_all(endpoints.ocr, exams[:8], args.devices, EvalRun()))  # warm-up
            asyncio.run(send_all(endpoints.ocr, exams[8:], args.devices, run))
        finally:
            stack.stop()
    generate_s = _generate_one_at_a_time(crops, args.clients)

    def counter(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and 'model="trocr"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    inferences = counter(metrics_after, "nv_inference_count") - counter(metrics_before, "nv_inference_count")
    executions = counter(metrics_after, "nv_inference_exec_count") - counter(
        metrics_before, "nv_inference_exec_count"
    )
    triton_rate, generate_rate = len(crops) / triton_s, len(crops) / generate_s
    print(
        json.dumps(
            {
                "crops": len(crops),
                "clients": args.clients,
                "triton_dynamic_batching_crops_per_s": round(triton_rate, 1),
                "hf_generate_one_at_a_time_crops_per_s": round(generate_rate, 1),
                "throughput_ratio": round(triton_rate / generate_rate, 2),
                "triton_mean_batch_size": round(inferences / max(executions, 1), 1),
                "exams": len(run.latencies_ms),
                "concurrent_devices": args.devices,
                "exam_latency_ms_p50": round(float(np.percentile(run.latencies_ms, 50)), 1),
                "exam_latency_ms_p95": round(float(np.percentile(run.latencies_ms, 95)), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
