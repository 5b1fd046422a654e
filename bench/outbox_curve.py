"""The gateway's outbox against the files queued in it, 10³ → 10⁵ (a device offline for days, or
the OCR service down over a weekend): what each of the gateway's operations costs as the queue
grows, and the database's size.

At each queue size the outbox (eyeops/gateway/outbox.py, as shipped) holds N pending items, each
with an image of --image-kb (filled in one transaction; the fill is not what is measured). Then,
each repeated --repeat times and the median kept:

  capture   one durable capture (fsync: the device-facing acknowledgement), ms
  due       the sender's `due("pending", 32)`: the next batch to send, ms
  status    `status()`: the queue depth and oldest waiting item (`eyeops gateway status`, /metrics), ms
  finish    one item sent (`finish(..., "done")`), ms

and the file's size in MB. (An index on (state, received_at) was tried for `due` and `status`:
SQLite's planner keeps the (state, next_attempt_at) index, which is also the right one while the
service is down and nothing is due, and the timings did not move; not shipped.)

Prints a table and one JSON object; --out DIR also writes outbox.png / .md / .json.
Run:  .venv/bin/python -m bench.outbox_curve [--sizes 1000,10000,100000] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.curves import report
from eyeops.gateway.outbox import Outbox


def fill(outbox: Outbox, start: int, count: int, image: bytes) -> None:
    """`count` pending items in one transaction (captured, validated, waiting to be sent)."""
    now = time.time()
    with outbox._tx() as db:  # the bench's own fast fill; measured operations use the public API
        for i in range(start, start + count):
            sha = hashlib.sha256(f"exam-{i}".encode()).hexdigest()
            db.execute(
                "INSERT INTO items (sha256, source, device_kind, state, source_size, source_mtime_ns,"
                " patient_id, laterality, exam_date, received_at, updated_at)"
                " VALUES (?, ?, 'optical_biometer', 'pending', ?, 0, 'P0000001', 'OD', '2026-12-07', ?, ?)",
                (sha, f"exports/exam-{i}.png", len(image), now + i * 1e-3, now),
            )
            db.execute("INSERT INTO images (sha256, data) VALUES (?, ?)", (sha, image))
            db.execute(
                "INSERT INTO sources (path, size, mtime_ns, sha256) VALUES (?, ?, 0, ?)",
                (f"exports/exam-{i}.png", len(image), sha),
            )
    outbox.checkpoint()


def median_ms(op: Callable[[int], object], repeat: int) -> float:
    times = []
    for k in range(repeat):
        t0 = time.perf_counter()
        op(k)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(outbox: Outbox, size: int, image: bytes, repeat: int, tag: str) -> dict[str, float]:
    def capture(k: int) -> None:
        sha = hashlib.sha256(f"new-{tag}-{size}-{k}".encode()).hexdigest()
        outbox.capture(f"exports/new-{tag}-{k}.png", "optical_biometer", image, sha, len(image), k)

    taken: list[str] = []

    def due(_: int) -> None:
        items = outbox.due("pending", 32, with_image=False)
        taken.append(items[0].sha256)

    def finish(k: int) -> None:
        outbox.finish(taken[k % len(taken)], "done", http_status=200, result={"exam": "ok"})

    row = {
        "capture": median_ms(capture, repeat),
        "due": median_ms(due, repeat),
        "status": median_ms(lambda _: outbox.status(), repeat),
        "finish": median_ms(finish, min(repeat, len(set(taken)))),
    }
    outbox.checkpoint()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,3000,10000,30000,100000")
    parser.add_argument("--image-kb", type=int, default=8, help="bytes per queued image (default 8 KB)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    image = os.urandom(args.image_kb * 1024)
    series: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="outbox-curve-") as tmp:
        path = Path(tmp) / "outbox.db"
        outbox = Outbox(path, durable=True)
        have = 0
        for size in sizes:
            fill(outbox, have, size - have, image)
            have = size
            row = measure(outbox, size, image, args.repeat, "run")
            for op, ms in row.items():
                series.setdefault(f"{op} ms", []).append(ms)
            series.setdefault("file MB", []).append(
                sum(p.stat().st_size for p in Path(tmp).glob("outbox.db*")) / 1e6
            )
        outbox.close()
    report(
        args.out,
        "outbox",
        "Gateway outbox: cost of each operation against queued files",
        "files queued",
        sizes,
        series,
        "ms (median) / MB",
        {"image_kb": args.image_kb, "repeat": args.repeat},
    )


if __name__ == "__main__":
    main()
