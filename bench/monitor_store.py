"""The monitor's cost per logged event in process, on SQLite and on PostgreSQL, this checkout's code
and a baseline's side by side, alternating (this machine is shared and noisy).

Each run fits a detector set with the default configuration, then ingests the same stream: lens
predictor calls (request and 200 response, one eye each) and an OCR exam every fifth call, on a
fresh SQLite file and a fresh database on the local PostgreSQL. Prints one JSON object: events per
second for each code, store and round, and this checkout's ratio to the baseline (median).

    .venv/bin/python -m bench.monitor_store --baseline REF [--calls 400] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from eyeops.settings import repo_root

# Runs in the detectors environment with the code under test first on the path.
CHILD = r"""
import json, sys, tempfile, time, uuid
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np, psycopg
from eyeops_detectors.detectors import DetectorConfig, DetectorSet, Reference
from eyeops_detectors.monitor import REQUEST, RESPONSE, LoggedEvent, Monitor
from eyeops_detectors.store import MonitorStore

calls, admin = int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(1)
tmp = Path(tempfile.mkdtemp())
from tests.reference_data import write_reference  # the detectors' test reference (lens and OCR)
DetectorSet.fit(Reference.load(write_reference(tmp / "ref.npz", n=2000)), DetectorConfig()).save(tmp / "det")
answer = lambda eye: {
    "sizes": [{"size_mm": s, "vault_um": v, "lower_um": v - 200, "upper_um": v + 200}
              for s, v in zip((12.1, 12.6, 13.2, 13.7), (300.0, 450.0, 600.0, 750.0))],
    "recommended_size_mm": 12.6, "eye_id": eye}
stream = []
event = lambda i, kind, service, part, body: LoggedEvent(i, kind, service, part, json.dumps(body).encode())
for i in range(calls):
    eye = f"P{i:07d}-OD"
    row = {"eye_id": eye, "age_years": float(rng.normal(35, 8)), "wtw_mm": float(rng.normal(11.7, 0.4)),
           "acd_mm": float(rng.normal(3.2, 0.3))}
    stream.append(event(f"c{i}", REQUEST, "lens", "predictor", {"instances": [row]}))
    stream.append(event(f"c{i}", RESPONSE, "lens", "predictor", {"predictions": [answer(eye)]}))
    if i % 5 == 0:
        exam = {"device_kind": "optical_biometer", "patient_id": f"P{i:07d}", "laterality": "OD",
                "fields": [{"name": "al_mm", "value": 24.0, "confidence": 0.99, "status": "accepted"}]}
        stream.append(event(f"o{i}", RESPONSE, "ocr", "transformer", {"predictions": [exam]}))
out = {}
for kind in ("sqlite", "postgres"):
    name = f"eyeops_bench_{uuid.uuid4().hex[:10]}"
    if kind == "postgres":
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        where = admin.rsplit("/", 1)[0] + "/" + name
    else:
        where = str(tmp / "state.db")
    monitor = Monitor(DetectorSet.load(tmp / "det"), MonitorStore(where), {"lens": "lens", "ocr": "ocr"})
    monitor.start()
    start = time.perf_counter()
    for event in stream:
        monitor.ingest(event)
    out[kind] = len(stream) / (time.perf_counter() - start)
    monitor.store.close()
    if kind == "postgres":
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
out["events"] = len(stream)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a git ref whose detectors package runs beside")
    parser.add_argument("--calls", type=int, default=400, help="lens calls in the stream")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    here = repo_root()
    python = here / ".venv-detectors" / "bin" / "python"
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "this checkout": []}
    with tempfile.TemporaryDirectory(prefix="eyeops-monitor-bench-") as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline],
                       check=True, capture_output=True, cwd=here)  # fmt: skip
        try:
            for _ in range(args.rounds):
                for label, root in (("baseline", tree), ("this checkout", here)):
                    done = subprocess.run(
                        [str(python), "-c", CHILD, str(root / "detectors"), str(args.calls), args.postgres],
                        check=True, capture_output=True, text=True, cwd=tmp,
                    )  # fmt: skip
                    runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=False, cwd=here)
    out: dict[str, object] = {"baseline": args.baseline, "events": runs["baseline"][0]["events"]}
    for label, values in runs.items():
        out[label] = {k: [round(v[k], 1) for v in values] for k in ("sqlite", "postgres")}
    for store in ("sqlite", "postgres"):
        ratios = [
            new[store] / old[store] for old, new in zip(runs["baseline"], runs["this checkout"], strict=True)
        ]
        out[f"{store}_ratio"] = round(statistics.median(ratios), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
