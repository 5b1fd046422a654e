"""Two arbitration calibrations on the same readings, side by side: exams accepted with no person,
exam accuracy and silent errors per set.

    .venv/bin/python -m bench.calibrations --calibration NEW.json [--baseline OLD.json] \
        --exams /tmp/foreign/light=foreign/frame/light ... [--count 300 --seed 1000]

Each set is read once offline through the service's code (align, crop, TrOCR, validation, PP-OCR on
every field); the arbitration then decides every exam again under each calibration (the shipped
one unless `--baseline` names another), with the signed-field policy as served. What a refit
(`eyeops ocr calibrate`) would change before it ships.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.scorecard import exam_outcomes, load_sets, summarize
from bench.signed_second import rearbitrate


def main(argv: Sequence[str] | None = None) -> int:
    from eyeops.devices import load_layouts
    from eyeops.ocr.arbitrate import Calibrations, shipped_calibrations
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import compare_with_tesseract
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.resources import trocr_checkpoint
    from eyeops.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, required=True, help="the calibration to compare")
    parser.add_argument("--baseline", type=Path, default=None, help="default: the shipped calibration")
    parser.add_argument("--exams", nargs="*", default=[], metavar="DIR[=LABEL]")
    parser.add_argument("--count", type=int, default=0, help="also this many in-distribution exams")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the table's figures here")
    args = parser.parse_args(argv)

    candidates = {
        "baseline": Calibrations.load(args.baseline) if args.baseline else shipped_calibrations(),
        "candidate": Calibrations.load(args.calibration),
    }
    layouts = load_layouts()
    recognizer = load_recognizer(trocr_checkpoint())
    peer = CtcRecognizer.load()
    threshold = Settings().confidence_threshold
    figures: dict[str, dict[str, dict[str, float]]] = {}
    print("| set | calibration | exams | exam acc. | accepted, no person | silent errors (fields) |")
    print("|---|---|---|---|---|---|")
    for label, exams in load_sets(args.exams, args.count, args.seed):
        rows: list[dict[str, Any]] = []
        compare_with_tesseract(recognizer, layouts, exams, tesseract=False, ppocr=peer, records=rows)
        per_exam: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            per_exam[int(r["exam"])].append(r)
        figures[label] = {}
        for name, calibrations in candidates.items():
            outcomes = []
            for i, exam in enumerate(exams):
                mine = per_exam.get(i, [])
                decided = (
                    rearbitrate(layouts[exam.device_kind], mine, True, threshold, calibrations)[0]
                    if mine
                    else []
                )
                outcomes.append(exam_outcomes(decided, exam.texts))
            row = summarize(outcomes)
            figures[label][name] = row
            print(
                f"| {label} | {name} | {len(exams)} | {row['exam_accuracy']:.3f} | "
                f"{row['accepted_no_person']:.3f} | {row['silent_errors']} |",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
