"""Lens training time and peak memory against the cohort's size, 10³ → 10⁶ eyes: what the
`lens-training` pipeline's train step needs as a clinic's (or a group of clinics') history grows.

Each size runs in a fresh process (so its peak resident memory is its own): the cohort simulator
(eyeops/lens/cohort.py) draws N eyes, then `LensModel.fit` (the pipeline's step: LightGBM per
size, the propensity model, cross-fitted conformal radii, the bounds) trains on them with the
shipped LensConfig. Printed per size: seconds to simulate, seconds to fit, peak RSS in MB. A size
that does not finish within --timeout seconds is reported as such, and the curve ends before it.

Prints a table and one JSON object; --out DIR also writes lens-training.png / .md / .json.
Run:  .venv/bin/python -m bench.lens_training_curve [--sizes 1000,10000,100000,1000000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.curves import report

# The simulator draws at most MAX_EYES eyes at once (its patient ids are P + 7 digits): a larger
# cohort is several draws of other seeds, each chunk's patients renumbered so that none repeats.
CHILD = """
import json, resource, sys, time
import pandas as pd
from eyeops.lens.cohort import MAX_EYES, simulate_cohort
from eyeops.lens.model import LensModel
n = int(sys.argv[1])
t0 = time.perf_counter()
chunks, offset = [], 0
for k, start in enumerate(range(0, n, MAX_EYES)):
    part = simulate_cohort(min(MAX_EYES, n - start), seed=3 + k)
    if n > MAX_EYES:
        codes = pd.factorize(part["patient_id"])[0] + offset
        offset = int(codes.max()) + 1
        part["patient_id"] = ["P%07d" % c for c in codes]
        part["eye_id"] = part["patient_id"] + "-" + part["laterality"]
    chunks.append(part)
cohort = pd.concat(chunks, ignore_index=True)
t1 = time.perf_counter()
LensModel.fit(cohort, version="bench")
t2 = time.perf_counter()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"simulate_s": t1 - t0, "fit_s": t2 - t1, "peak_mb": peak_mb, "eyes": len(cohort)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    loads: list[int] = []
    series: dict[str, list[float]] = {}
    unfinished: list[int] = []
    failed: dict[int, list[str]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        if unfinished:
            unfinished.append(size)
            continue
        try:
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(size)],
                capture_output=True,
                text=True,
                timeout=args.timeout,
                check=True,
            )
        except subprocess.TimeoutExpired:
            unfinished.append(size)
            print(f"[lens-training] {size:,} eyes: not done within {args.timeout:.0f} s", flush=True)
            continue
        except subprocess.CalledProcessError as exc:
            failed[size] = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
            print(f"[lens-training] {size:,} eyes: failed: {failed[size][0]}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"[lens-training] {size:,} eyes: {row}", flush=True)
        loads.append(size)
        series.setdefault("fit s", []).append(row["fit_s"])
        series.setdefault("simulate s", []).append(row["simulate_s"])
        series.setdefault("peak RSS MB", []).append(row["peak_mb"])
    report(
        args.out,
        "lens-training",
        "Lens training (LensModel.fit) against cohort size",
        "eyes in the cohort",
        loads,
        series,
        "s / MB",
        {
            "unfinished": unfinished,
            "failed": {str(k): v for k, v in failed.items()},
            "timeout_s": args.timeout,
        },
    )


if __name__ == "__main__":
    main()
