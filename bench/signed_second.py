"""Signed fields always read twice, or only when TrOCR is unsure, or every field read twice: silent
errors, review and cost, side by side on the same readings.

    .venv/bin/python -m bench.signed_second --exams /tmp/st/frame_light=stress/frame/light ... \
        [--count 300 --seed 1000]

A fresh-clone demo accepted an AS-OCT CLR of -59 µm as 59 at TrOCR confidence 0.9958, just above
the second-opinion bar (eyeops.ocr.arbitrate.SECOND_OPINION_BELOW): a lost minus leaves a valid,
plausible value that no range or grammar check can catch. `needs_second` now also asks PP-OCR about
every reading of a field whose range spans zero (`signed_fields`). This bench reads each set once
offline (align, crop, TrOCR, validation, PP-OCR on every field, as `eyeops ocr eval --offline`),
then arbitrates the same readings both ways with the shipped calibration and prints, per set and
policy: exam accuracy of the arbitrated result, the share of exams accepted with no person, silent
errors (wrong and accepted) and how many fields per exam the second recogniser reads (its cost in
the transformer). The third policy reads every field twice (`EYEOPS_SECOND_OPINION_BELOW=1.01`):
then a confident reading the second recogniser contradicts goes to a person too.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.scorecard import exam_outcomes, load_sets, summarize

POLICIES = ("below the bar", "below the bar + signed", "every field")
EVERY_FIELD = 1.01  # above any confidence: every reading is asked, and a contradiction goes to a person


def rearbitrate(
    layout: Any,
    rows: Sequence[Mapping[str, Any]],
    signed: bool,
    threshold: float,
    calibrations: Any = None,
    below: float | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One exam's rows with `served_status` and `proposal` decided again under one policy (and
    `calibrations`, the shipped ones if None), and how many fields the policy asks the second
    recogniser to read."""
    from eyeops.fields import read_fields
    from eyeops.ocr.arbitrate import SECOND_OPINION_BELOW, arbitrate, needs_second, shipped_calibrations

    below = SECOND_OPINION_BELOW if below is None else below

    texts = {str(r["field"]): (str(r["text"]), float(r["confidence"])) for r in rows}
    second = {str(r["field"]): (str(r["second_text"]), float(r["second_confidence"])) for r in rows}
    readings = read_fields(layout, texts, threshold)
    asked = needs_second(readings, below, layout=layout if signed else None)
    calibrations = calibrations if calibrations is not None else shipped_calibrations()
    decided = {r.name: r for r in arbitrate(layout, readings, second, asked, calibrations, below)}
    out = [
        {**r, "served_status": decided[str(r["field"])].status, "proposal": decided[str(r["field"])].proposal}
        for r in rows
    ]
    return out, len(asked)


def main(argv: Sequence[str] | None = None) -> int:
    from eyeops.devices import load_layouts
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import compare_with_tesseract
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.resources import trocr_checkpoint
    from eyeops.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", nargs="*", default=[], metavar="DIR[=LABEL]")
    parser.add_argument("--count", type=int, default=0, help="also this many in-distribution exams")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the table's figures here")
    args = parser.parse_args(argv)

    layouts = load_layouts()
    recognizer = load_recognizer(trocr_checkpoint())
    peer = CtcRecognizer.load()
    threshold = Settings().confidence_threshold
    sets = load_sets(args.exams, args.count, args.seed)

    figures: dict[str, dict[str, dict[str, float]]] = {}
    print(
        "| set | policy | exams | exam acc. | accepted, no person | silent errors (fields)"
        " | fields read twice / exam |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, exams in sets:
        rows: list[dict[str, Any]] = []
        compare_with_tesseract(recognizer, layouts, exams, tesseract=False, ppocr=peer, records=rows)
        per_exam: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            per_exam[int(r["exam"])].append(r)
        figures[label] = {}
        for policy in POLICIES:
            outcomes, asked = [], 0
            for i, exam in enumerate(exams):
                mine = per_exam.get(i, [])
                below = EVERY_FIELD if policy == "every field" else None
                signed = policy != POLICIES[0]
                decided, n = (
                    rearbitrate(layouts[exam.device_kind], mine, signed, threshold, below=below)
                    if mine
                    else ([], 0)
                )
                outcomes.append(exam_outcomes(decided, exam.texts))
                asked += n
            row = {**summarize(outcomes), "fields_read_twice_per_exam": asked / max(1, len(exams))}
            figures[label][policy] = row
            print(
                f"| {label} | {policy} | {len(exams)} | {row['exam_accuracy']:.3f} | "
                f"{row['accepted_no_person']:.3f} | {row['silent_errors']} | "
                f"{row['fields_read_twice_per_exam']:.2f} |",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
