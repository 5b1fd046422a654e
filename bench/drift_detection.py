"""Detection delay and false alarms of the shipped drift detectors, measured on one stream each.

Runs in the detectors environment on data made by bench/drift_data.py (main environment):
  .venv/bin/python -m bench.drift_data --out var/bench/drift.npz
  .venv-detectors/bin/python bench/drift_detection.py --data var/bench/drift.npz

Lens features: the windowed K-S detector (FDR over 13 features) and the online CVM detector, with
the shipped DetectorConfig. Each trial runs the detectors on unshifted eyes for 300 + U(0, window)
events, then on shifted eyes until the first alarm; the delay is the number of shifted events
until then. Shifts: WTW + 0.5 training SD; ATA + 0.3 mm (a calibration offset). False alarms: every
event of a 30,000-eye unshifted stream, alarms per 10,000 events, once in exam order (both eyes of
a patient one after the other, as a clinic sends them) and once shuffled. OCR: one device kind's fields,
K-S on confidence and chi-square on review flags, in windows; the shift is a font training never saw.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from eyeops_detectors.detectors import ChiSquareDetector, DetectorConfig, OnlineFeatureDetector
from eyeops_detectors.feature_drift import AlibiKSDetector

MAX_EVENTS = 5000


class LensDetectors:
    def __init__(self, reference: np.ndarray, names: list[str], config: DetectorConfig) -> None:
        rng = np.random.default_rng(config.seed)
        self.window = config.window
        self.ks = AlibiKSDetector(reference, names, config.p_val)
        online_ref = reference[rng.choice(len(reference), config.online_reference, replace=False)]
        self.online = OnlineFeatureDetector(
            online_ref, names, config.ert, config.online_window_sizes, config.n_bootstraps(len(names))
        )
        self.buffer: list[np.ndarray] = []

    def reset(self) -> None:
        self.online.reset()
        self.buffer = []

    def update(self, row: np.ndarray) -> str | None:
        """Feed one event; the name of the detector that alarmed, if any."""
        fired = None
        if self.online.update(row):
            self.online.reset()
            fired = "online"
        self.buffer.append(row)
        if len(self.buffer) == self.window:
            window, self.buffer = np.asarray(self.buffer), []
            if self.ks.check(window).is_drift:
                fired = fired or "windowed"
        return fired


def lens_delays(
    detectors: LensDetectors, stream: np.ndarray, shift: np.ndarray, trials: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    delays, by = [], {"online": 0, "windowed": 0}
    for _ in range(trials):
        detectors.reset()
        rows = stream[rng.permutation(len(stream))]
        warm = 300 + int(rng.integers(0, detectors.window))
        for row in rows[:warm]:
            detectors.update(row)  # an alarm here is a false alarm; counted in the false-alarm run
        for i, row in enumerate(rows[warm : warm + MAX_EVENTS] + shift, start=1):
            fired = detectors.update(row)
            if fired:
                delays.append(i)
                by[fired] += 1
                break
        else:
            delays.append(MAX_EVENTS + 1)
    d = np.asarray(delays)
    return {
        "trials": trials,
        "detected": int((d <= MAX_EVENTS).sum()),
        "delay_median": float(np.median(d)),
        "delay_p90": float(np.percentile(d, 90)),
        "delay_max": int(d.max()),
        "first_alarm_by": by,
    }


def lens_false_alarms(detectors: LensDetectors, stream: np.ndarray) -> dict[str, Any]:
    detectors.reset()
    alarms = {"online": 0, "windowed": 0}
    for row in stream:
        if detectors.online.update(row):
            detectors.online.reset()
            alarms["online"] += 1
        detectors.buffer.append(row)
        if len(detectors.buffer) == detectors.window:
            window, detectors.buffer = np.asarray(detectors.buffer), []
            alarms["windowed"] += detectors.ks.check(window).is_drift
    total = alarms["online"] + alarms["windowed"]
    return {"events": len(stream), "alarms": alarms, "per_10k_events": total / len(stream) * 1e4}


def ocr_run(
    reference: np.ndarray, same: np.ndarray, new: np.ndarray, config: DetectorConfig, seed: int
) -> dict[str, Any]:
    ks = AlibiKSDetector(reference[:, :1], ["confidence"], config.p_val)
    chi = ChiSquareDetector(reference[:, 1], "review", 2, config.p_val)
    w = config.window

    def alarm(window: np.ndarray) -> bool:
        return ks.check(window[:, :1]).is_drift or chi.check(window[:, 1]).is_drift

    false = sum(alarm(same[i : i + w]) for i in range(0, len(same) - w + 1, w))
    rng = np.random.default_rng(seed)
    delays = []
    for _ in range(20):
        prefix = same[rng.choice(len(same), int(rng.integers(0, w)), replace=False)]
        stream = np.concatenate([prefix, new[rng.permutation(len(new))]])
        delay = None
        for end in range(w, len(stream) + 1, w):
            if alarm(stream[end - w : end]):
                delay = end - len(prefix)
                break
        delays.append(delay if delay is not None else len(new) + 1)
    d = np.asarray(delays)
    return {
        "unshifted_windows": len(same) // w,
        "unshifted_false_alarms": int(false),
        "new_font_delay_fields_median": float(np.median(d)),
        "new_font_delay_fields_max": int(d.max()),
        "reference_mean_confidence": float(reference[:, 0].mean()),
        "new_font_mean_confidence": float(new[:, 0].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("var/bench/drift.npz"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--ert", type=int, default=DetectorConfig().ert)
    args = parser.parse_args()
    config = DetectorConfig(ert=args.ert)
    with np.load(args.data, allow_pickle=False) as data:
        names = [str(n) for n in data["feature_names"]]
        reference, stream = data["reference"], data["stream"]
        ocr = {k: data[k] for k in ("ocr_reference", "ocr_same_font", "ocr_new_font")}
        ocr_kind = str(data["ocr_kind"])
    started = time.perf_counter()
    detectors = LensDetectors(reference, names, config)
    fit_s = time.perf_counter() - started
    wtw, ata = np.zeros(len(names)), np.zeros(len(names))
    wtw[names.index("wtw_mm")] = 0.5 * reference[:, names.index("wtw_mm")].std()
    ata[names.index("ata_mm")] = 0.3
    shuffled = stream[np.random.default_rng(4).permutation(len(stream))]
    same_font, new_font = ocr["ocr_same_font"], ocr["ocr_new_font"]
    started = time.perf_counter()
    result = {
        "config": {"window": config.window, "p_val": config.p_val, "ert": config.ert,
                   "online_window_sizes": list(config.online_window_sizes)},
        "fit_seconds": round(fit_s, 1),
        "wtw_plus_0.5sd": lens_delays(detectors, stream, wtw, args.trials, 1),
        "ata_plus_0.3mm": lens_delays(detectors, stream, ata, args.trials, 2),
        "no_shift_in_exam_order": lens_false_alarms(detectors, stream),
        "no_shift_shuffled": lens_false_alarms(detectors, shuffled),
        f"ocr_{ocr_kind}": ocr_run(ocr["ocr_reference"], same_font, new_font, config, 3),
    }  # fmt: skip
    result["run_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
