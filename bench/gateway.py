"""Gateway figures, each measured side by side with the OCR service in one run on one machine.

  ack:      50 simulated devices, each with its own `eyeops gateway watch` process, each writing one
            exam per second (open-write-close, or with --write-mode rename a .part name renamed into
            place) while the OCR service is saturated. Device-facing acknowledgement = from the
            close (or rename) to the outbox commit (wall clocks of one machine). Printed next to
            the OCR service's own p50 exam latency over the same window. The OCR processes run at
            nice 10: on site they run on a server, not on the device PCs.
  backfill: the OCR service's capacity (the same client at the same concurrency, straight to the
            endpoint) and `eyeops batch` on a zip of other exams, alternated twice; the ratio is
            batch exams/s over direct exams/s.

Prints one JSON object.  Run:  .venv/bin/python -m bench.gateway [ack|backfill|all]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from eyeops.db.store import ResultsStore
from eyeops.devices import load_layouts
from eyeops.gateway.batch import run_batch
from eyeops.gateway.outbox import Outbox
from eyeops.imageio import file_extension
from eyeops.ocr.client import OcrClient
from eyeops.settings import Settings
from eyeops.stack.devices import SimulatedDevice, gateway_process, provision_devices
from eyeops.stack.local import LocalStack
from eyeops.stack.process import ManagedProcess, free_port, free_triton_port
from eyeops.synth.exams import synthesize_exams, tagged_copy


def base_exams(count: int, seed: int) -> list[tuple[str, bytes]]:
    layouts = load_layouts()
    return [(e.device_kind, e.image) for e in synthesize_exams(list(layouts), count, seed, split="eval")]


def renice(processes: list[ManagedProcess], niceness: int) -> None:
    for p in processes:
        if p.proc is not None:
            for proc in [psutil.Process(p.proc.pid), *psutil.Process(p.proc.pid).children(recursive=True)]:
                proc.nice(niceness)


def service_latencies(url: str, since: float) -> list[float]:
    """The OCR service's own exam latency (inference log, stored exams) for rows after `since`."""
    import datetime as dt

    from sqlalchemy import create_engine, select

    from eyeops.db.schema import InferenceLog

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(InferenceLog.total_ms, InferenceLog.created_at).where(InferenceLog.outcome == "stored")
        ).fetchall()
    engine.dispose()
    out = []
    for total_ms, created in rows:
        stamp = created if created.tzinfo else created.replace(tzinfo=dt.UTC)  # SQLite keeps naive UTC
        if stamp.timestamp() >= since and total_ms is not None:
            out.append(float(total_ms))
    return out


def write_direct(device: SimulatedDevice, name: str, image: bytes) -> None:
    """How most device software exports: open, write, close (inotify close-write announces it)."""
    with (device.export_dir / name).open("wb") as handle:
        handle.write(image)


def bench_ack(devices_n: int, seconds: float, workdir: Path, mode: str) -> dict[str, Any]:
    kinds = load_layouts().kinds()
    per_kind = -(-devices_n // len(kinds))
    registry, devices = provision_devices(workdir, kinds, per_kind)
    devices = devices[:devices_n]
    pool = base_exams(36, seed=4242)
    by_kind: dict[str, list[bytes]] = {}
    for kind, image in pool:
        by_kind.setdefault(kind, []).append(image)
    settings = Settings(data_dir=workdir / "service")
    closes: dict[str, float] = {}
    stack = LocalStack(settings, triton_port=free_triton_port(), ocr_port=free_port(), device_tokens=registry)
    with stack as ends:
        renice(stack.processes, 10)
        gateways = [gateway_process(d, ends.ocr, workdir / "log", "--concurrency", "2") for d in devices]
        for g in gateways:
            g.start()
        for g in gateways:
            g.wait_ready(180)
        # warm the model so the window measures steady saturation, not first-call set-up
        time.sleep(2)
        stop_at = time.time() + seconds
        started = time.time()

        def device_loop(index: int, device: SimulatedDevice) -> None:
            images = by_kind[device.device_kind]
            n = 0
            next_at = started + index / len(devices)  # stagger devices over the first second
            while next_at < stop_at:
                time.sleep(max(0.0, next_at - time.time()))
                image = tagged_copy(images[n % len(images)], f"{device.device_id}-{n}")
                name = f"exam-{n:05d}.{file_extension(image)}"
                if mode == "rename":
                    device.drop(name, image)  # write a .part name, then rename into place
                else:
                    write_direct(device, name, image)
                closes[hashlib.sha256(image).hexdigest()] = time.time()
                n += 1
                next_at += 1.0

        threads = [threading.Thread(target=device_loop, args=(i, d)) for i, d in enumerate(devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.0)
        window_end = time.time()
        service_ms = service_latencies(ends.database_url, started)
        for g in gateways:
            g.stop()
    acks, backlog = [], 0
    for d in devices:
        outbox = Outbox(d.outbox_path)
        rows = list(outbox.results())
        outbox.close()
        for r in rows:
            if r["sha256"] in closes:
                acks.append((r["received_at"] - closes[r["sha256"]]) * 1e3)
            backlog += r["state"] in ("received", "pending")
    files = len(closes)
    ack = np.array(acks)
    return {
        "devices": len(devices),
        "seconds": seconds,
        "files_written": files,
        "files_acknowledged": len(acks),
        "offered_exams_per_s": round(files / (window_end - started), 1),
        "served_exams_per_s": round(len(service_ms) / (window_end - started), 1),
        "outbox_backlog_at_end": backlog,
        "write_mode": mode,
        "ack_ms_p50": round(float(np.percentile(ack, 50)), 2),
        "ack_ms_p95": round(float(np.percentile(ack, 95)), 2),
        "ack_ms_p99": round(float(np.percentile(ack, 99)), 2),
        "ack_ms_max": round(float(ack.max()), 2),
        "acks_over_20_ms": int((ack > 20).sum()),
        "ocr_service_exam_ms_p50": round(float(np.percentile(service_ms, 50)), 1) if service_ms else None,
    }


async def _direct(endpoint: str, token: str, exams: list[tuple[str, bytes]], concurrency: int) -> float:
    client = OcrClient(endpoint, protocol="v2", token=token, timeout_s=300)
    gate = asyncio.Semaphore(concurrency)

    async def one(kind: str, image: bytes) -> None:
        async with gate:
            reply = await client.read_exam(image, kind, device_id="capacity")
            if reply.status_code != 200:
                raise RuntimeError(f"direct send failed: {reply.status_code} {reply.body}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k, i) for k, i in exams))
    elapsed = time.perf_counter() - t0
    await client.aclose()
    return elapsed


def bench_backfill(count: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    from eyeops.auth import add_device, read_token_file

    kind = "optical_biometer"
    layouts = load_layouts()
    pool = [e.image for e in synthesize_exams([layouts[kind]], 40, 777, split="eval")]
    registry = workdir / "tokens.txt"
    add_device(registry, workdir / "capacity.token", "capacity")
    add_device(registry, workdir / "batch.token", "batch")
    settings = Settings(data_dir=workdir / "service")
    rounds: list[dict[str, float]] = []
    stack = LocalStack(settings, triton_port=free_triton_port(), ocr_port=free_port(), device_tokens=registry)
    with stack as ends:
        token = read_token_file(workdir / "capacity.token")
        warm = [(kind, tagged_copy(pool[i % len(pool)], f"warm-{i}")) for i in range(2 * concurrency)]
        asyncio.run(_direct(ends.ocr, token, warm, concurrency))
        for r in range(2):
            direct = [(kind, tagged_copy(pool[i % len(pool)], f"direct-{r}-{i}")) for i in range(count)]
            direct_s = asyncio.run(_direct(ends.ocr, token, direct, concurrency))
            archive = workdir / f"archive-{r}.zip"
            with zipfile.ZipFile(archive, "w") as z:
                for i in range(count):
                    image = tagged_copy(pool[i % len(pool)], f"batch-{r}-{i}")
                    z.writestr(f"{i:05d}.{file_extension(image)}", image)
            summary = run_batch(
                archive,
                kind,
                workdir / f"results-{r}.csv",
                endpoint=ends.ocr,
                token_file=workdir / "batch.token",
                concurrency=concurrency,
                settings=settings,
            )
            if summary["done"] != count:
                raise RuntimeError(f"batch delivered {summary['done']} of {count}: {summary}")
            rounds.append(
                {
                    "direct_exams_per_s": count / direct_s,
                    "batch_exams_per_s": count / summary["elapsed_s"],
                }
            )
        in_db = ResultsStore.from_url(ends.database_url).counts()["exams"]
    direct_rate = float(np.mean([r["direct_exams_per_s"] for r in rounds]))
    batch_rate = float(np.mean([r["batch_exams_per_s"] for r in rounds]))
    return {
        "exams_per_round": count,
        "concurrency": concurrency,
        "rounds": [{k: round(v, 2) for k, v in r.items()} for r in rounds],
        "direct_exams_per_s": round(direct_rate, 2),
        "batch_exams_per_s": round(batch_rate, 2),
        "batch_over_capacity": round(batch_rate / direct_rate, 3),
        "exams_in_database": in_db,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="?", choices=["ack", "backfill", "all"], default="all")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--write-mode", choices=["direct", "rename"], default="direct")
    args = parser.parse_args()
    out: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="eyeops-bench-") as tmp:
        if args.which in ("ack", "all"):
            out["ack"] = bench_ack(args.devices, args.seconds, Path(tmp) / "ack", args.write_mode)
        if args.which in ("backfill", "all"):
            out["backfill"] = bench_backfill(args.count, args.concurrency, Path(tmp) / "backfill")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
