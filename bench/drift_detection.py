"""Detection delay and false alarms of the shipped drift detectors, measured on one stream each.

Runs in the detectors environment on data made by bench/drift_data.py (main environment):
  .venv/bin/python -m bench.drift_data --out var/bench/drift.npz
  .venv-detectors/bin/python bench/drift_detection.py --data var/bench/drift.npz

Lens features: the windowed K-S detector (FDR over 13 features) and the online CVM detector, with
the shipped DetectorConfig, fed as the monitor feeds them: one eye per patient (fellow eyes are
strongly correlated). Events arrive in exam order (a patient's two eyes one after the other).
Each trial runs the detectors on unshifted eyes for 600 + 2·U(0, window) events, then on shifted
eyes until the first alarm; the delay is the number of shifted events (eyes) logged until then.
Shifts: WTW + 0.5 training SD; ATA + 0.3 mm (a calibration offset). False alarms: a 30,000-eye
unshifted stream, alarms per 10,000 events: in exam order, in exam order feeding every eye (what
the monitor does not do, to show why), and shuffled. OCR: one device kind's fields, K-S on
confidence and chi-square on review flags, in windows; the shift is a font training never saw.
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


def first_eyes(patients: np.ndarray) -> np.ndarray:
    """The monitor's rule: only the first eye of each patient feeds the feature detectors."""
    seen: set[str] = set()
    keep = np.zeros(len(patients), dtype=bool)
    for i, patient in enumerate(patients):
        if patient not in seen:
            seen.add(patient)
            keep[i] = True
    return keep


def in_pairs(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random order of patients, each patient's two eyes one after the other (exam order)."""
    pairs = rng.permutation(n // 2)
    return np.column_stack([2 * pairs, 2 * pairs + 1]).ravel()


def lens_delays(
    detectors: LensDetectors,
    stream: np.ndarray,
    patients: np.ndarray,
    shift: np.ndarray,
    trials: int,
    seed: int,
) -> dict[str, Any]:
    """Delay in logged events (eyes, both eyes of each patient counted)."""
    rng = np.random.default_rng(seed)
    delays, by = [], {"online": 0, "windowed": 0}
    for _ in range(trials):
        detectors.reset()
        order = in_pairs(rng, len(stream))
        rows, fed = stream[order], first_eyes(patients[order])
        warm = 600 + 2 * int(rng.integers(0, detectors.window))
        for row in rows[:warm][fed[:warm]]:
            detectors.update(row)  # an alarm here is a false alarm; counted in the false-alarm run
        shifted = rows[warm : warm + MAX_EVENTS] + shift
        for i, (row, feed) in enumerate(zip(shifted, fed[warm : warm + MAX_EVENTS], strict=True), start=1):
            if not feed:
                continue
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


def lens_false_alarms(detectors: LensDetectors, stream: np.ndarray, fed: np.ndarray) -> dict[str, Any]:
    """Alarms per 10,000 logged events (eyes); `fed` marks the eyes the detectors see."""
    detectors.reset()
    alarms = {"online": 0, "windowed": 0}
    for row in stream[fed]:
        if detectors.online.update(row):
            detectors.online.reset()
            alarms["online"] += 1
        detectors.buffer.append(row)
        if len(detectors.buffer) == detectors.window:
            window, detectors.buffer = np.asarray(detectors.buffer), []
            alarms["windowed"] += detectors.ks.check(window).is_drift
    total = alarms["online"] + alarms["windowed"]
    return {
        "events": len(stream),
        "fed_to_detectors": int(fed.sum()),
        "alarms": alarms,
        "per_10k_events": total / len(stream) * 1e4,
    }


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
        reference, stream, patients = data["reference"], data["stream"], data["stream_patients"]
        ocr = {k: data[k] for k in ("ocr_reference", "ocr_same_font", "ocr_new_font")}
        ocr_kind = str(data["ocr_kind"])
    started = time.perf_counter()
    detectors = LensDetectors(reference, names, config)
    fit_s = time.perf_counter() - started
    wtw, ata = np.zeros(len(names)), np.zeros(len(names))
    wtw[names.index("wtw_mm")] = 0.5 * reference[:, names.index("wtw_mm")].std()
    ata[names.index("ata_mm")] = 0.3
    shuffle = np.random.default_rng(4).permutation(len(stream))
    every_eye = np.ones(len(stream), dtype=bool)
    same_font, new_font = ocr["ocr_same_font"], ocr["ocr_new_font"]
    started = time.perf_counter()
    result = {
        "config": {"window": config.window, "p_val": config.p_val, "ert": config.ert,
                   "online_window_sizes": list(config.online_window_sizes)},
        "fit_seconds": round(fit_s, 1),
        "wtw_plus_0.5sd": lens_delays(detectors, stream, patients, wtw, args.trials, 1),
        "ata_plus_0.3mm": lens_delays(detectors, stream, patients, ata, args.trials, 2),
        "no_shift_exam_order_one_eye_per_patient": lens_false_alarms(detectors, stream, first_eyes(patients)),
        "no_shift_exam_order_every_eye": lens_false_alarms(detectors, stream, every_eye),
        "no_shift_shuffled_one_eye_per_patient": lens_false_alarms(
            detectors, stream[shuffle], first_eyes(patients[shuffle])
        ),
        f"ocr_{ocr_kind}": ocr_run(ocr["ocr_reference"], same_font, new_font, config, 3),
    }  # fmt: skip
    result["run_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
