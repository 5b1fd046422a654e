"""Feast online reads against the eyes stored, 10³ → 10⁶, on SQLite (the local profile) and on Redis
(the cluster's): is the lens transformer's feature lookup a cost that grows with the clinic?

For each store and size: the feature repository as the lens service uses it
(eyeops/features/online.py, Feast 0.67), its four views written online for N eyes with
Feast's own `write_to_online_store` (the fill is timed and printed, not the curve), then the
transformer's read (`FeastOnlineStore.read`: every base feature and its event time) timed for one eye and
for a batch of 64 (the lens request cap), --reads times each, random eyes, median and p99. The
eyes are cohort rows (eyeops/lens/cohort.py) repeated under new ids: their values do not matter
to a key lookup. Redis uses database --redis-db, flushed before and after.

Prints a table and one JSON object; --out DIR also writes feast-online.png / .md / .json.
Run:  .venv/bin/python -m bench.feast_online_curve [--sizes 1000,10000,100000,1000000]
      [--stores sqlite,redis] [--redis 127.0.0.1:6379] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.curves import report
from eyeops.features.online import FeastOnlineStore
from eyeops.features.repository import (
    apply_and_materialize,
    offline_frames,
    open_store,
    prepare_repo,
    write_offline_data,
)
from eyeops.features.views import JOIN_KEY, VIEWS
from eyeops.lens.cohort import simulate_cohort


def fill(store: Any, template: dict[str, pd.DataFrame], start: int, stop: int, chunk: int) -> float:
    """Write eyes start..stop-1 of every view online; seconds taken."""
    t0 = time.perf_counter()
    now = pd.Timestamp.now(tz="UTC")
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        for view, frame in template.items():
            rows = frame.sample(hi - lo, replace=True, random_state=lo).reset_index(drop=True)
            rows[JOIN_KEY] = [f"E{i:08d}-OD" for i in range(lo, hi)]
            rows["event_timestamp"] = now
            rows["created"] = now
            store.write_to_online_store(view, rows)
    return time.perf_counter() - t0


def read_ms(store: Any, stored: int, batch: int, reads: int, rng: random.Random) -> tuple[float, float]:
    """(median, p99) ms of `reads` online reads of `batch` random stored eyes."""
    times = []
    for _ in range(reads):
        eyes = [f"E{rng.randrange(stored):08d}-OD" for _ in range(batch)]
        t0 = time.perf_counter()
        rows = FeastOnlineStore(store).read(eyes)
        times.append((time.perf_counter() - t0) * 1e3)
        if rows[0]["wtw_mm"] is None:
            raise SystemExit("a stored eye read back empty: the fill did not reach the online store")
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cohort = simulate_cohort(2000, seed=7)
    template = {
        view: frame.drop(columns=[c for c in frame.columns if c not in VIEWS[view][1]])
        for view, frame in offline_frames(cohort).items()
    }
    series: dict[str, list[float]] = {}
    fills: dict[str, list[float]] = {}
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix=f"feast-curve-{kind}-") as tmp:
            redis_url = f"{args.redis},db={args.redis_db}" if kind == "redis" else None
            if redis_url is not None:
                import redis

                host, port = args.redis.split(":")
                redis.Redis(host=host, port=int(port), db=args.redis_db).flushdb()
            repo = prepare_repo(Path(tmp) / "repo", online=kind, redis_url=redis_url)
            write_offline_data(cohort.head(10), repo)
            store = open_store(repo)
            apply_and_materialize(store, repo, until=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
            rng = random.Random(11)
            have = 0
            for size in sizes:
                fills.setdefault(kind, []).append(round(fill(store, template, have, size, args.chunk), 1))
                have = size
                read_ms(store, size, 1, 5, rng)  # warm: the first read opens connections
                for batch in (1, 64):
                    p50, p99 = read_ms(store, size, batch, args.reads if batch == 1 else args.reads // 3, rng)
                    series.setdefault(f"{kind} {batch} eye{'s' if batch > 1 else ''} p50 ms", []).append(p50)
                    series.setdefault(f"{kind} {batch} eye{'s' if batch > 1 else ''} p99 ms", []).append(p99)
                if redis_url is not None:
                    client = redis.Redis(host=host, port=int(port), db=args.redis_db)
                    info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
                    used = float(info["used_memory"])
                    series.setdefault("redis memory MB", []).append(used / 1e6)
                else:
                    series.setdefault("sqlite file MB", []).append(
                        (repo / "data" / "online.db").stat().st_size / 1e6
                    )
                print(f"[feast] {kind}: {size:,} eyes stored", flush=True)
            if redis_url is not None:
                redis.Redis(host=host, port=int(port), db=args.redis_db).flushdb()
    report(
        args.out,
        "feast-online",
        "Feast online read (lens transformer) against eyes stored",
        "eyes stored",
        sizes,
        series,
        "ms",
        {"fill_seconds": fills, "reads": args.reads, "feast": "0.67"},
    )


if __name__ == "__main__":
    main()
