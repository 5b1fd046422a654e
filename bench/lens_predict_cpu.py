"""The lens model's CPU per answer, in process, with the propensities as scikit-learn computes them
(CalibratedClassifierCV.predict_proba, what the predictor served before) and as
`eyeops.lens.propensity.calibrated_proba` computes them (the same numbers without scikit-learn's per-call
validation), interleaved in one run so a noisy machine hits both alike. Prints one JSON object:
milliseconds per single-eye answer and per 64-eye batch, each way, and their ratios.

    .venv/bin/python -m bench.lens_predict_cpu [--model DIR] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a lens model folder (default: train one)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--eyes", type=int, default=200, help="single-eye answers per round")
    args = parser.parse_args()

    import eyeops.lens.model as lens_model
    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.model import LensConfig, LensModel

    model = (
        LensModel.load(args.model)
        if args.model
        else LensModel.fit(simulate_cohort(8000, seed=3), LensConfig(), version="bench")
    )
    eyes = simulate_cohort(args.eyes, seed=44)
    batch = eyes.iloc[:64]
    fast = lens_model.calibrated_proba

    def sklearn(m: Any, rows: np.ndarray) -> np.ndarray:
        return np.asarray(m.predict_proba(rows), dtype=float)

    def timed(proba: Callable[[Any, np.ndarray], np.ndarray]) -> tuple[float, float]:
        lens_model.calibrated_proba = proba  # type: ignore[assignment]
        t0 = time.perf_counter()
        for i in range(len(eyes)):
            model.predict(eyes.iloc[i : i + 1]).eye(0, "bench")
        t1 = time.perf_counter()
        for _ in range(10):
            prediction = model.predict(batch)
            [prediction.eye(j, "bench") for j in range(len(batch))]
        t2 = time.perf_counter()
        return (t1 - t0) / len(eyes) * 1e3, (t2 - t1) / 10 * 1e3

    timed(fast)
    timed(sklearn)  # warm both
    runs: dict[str, list[tuple[float, float]]] = {"scikit-learn": [], "calibrated_proba": []}
    for _ in range(args.rounds):
        runs["scikit-learn"].append(timed(sklearn))
        runs["calibrated_proba"].append(timed(fast))
    lens_model.calibrated_proba = fast  # type: ignore[assignment]
    out: dict[str, Any] = {"rounds": args.rounds, "single_eye_answers_per_round": len(eyes)}
    for name, values in runs.items():
        single, batched = np.median(np.array(values), axis=0)
        out[name] = {
            "ms_per_single_eye": round(float(single), 3),
            "ms_per_64_eye_batch": round(float(batched), 2),
        }
    out["single_eye_ratio"] = round(
        out["calibrated_proba"]["ms_per_single_eye"] / out["scikit-learn"]["ms_per_single_eye"], 2
    )
    out["batch_ratio"] = round(
        out["calibrated_proba"]["ms_per_64_eye_batch"] / out["scikit-learn"]["ms_per_64_eye_batch"], 2
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
