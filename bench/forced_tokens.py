"""TrOCR's field confidence with and without the characters its grammar forces: exams accepted
with no person, silent errors and exam accuracy, side by side on the same sets.

    .venv/bin/python -m bench.forced_tokens --exams /tmp/foreign/light=foreign/frame/light ... \
        [--count 300 --seed 1000]

A field's confidence is its weakest token's. Under the old rule (`count_forced`) a character the
grammar allows alone at its place (laterality's O in OD|OS, a patient id's P, a date's dots)
counted like any other, so an O drawn like a 0 sent a right laterality to a person. Now such a
character is certain (eyeops.ocr.decode.decode); the end token counts as before. Each set is read
twice offline through the service's code (align, crop, TrOCR, validation, PP-OCR, arbitration with
the shipped calibration), once per rule, and scored with bench.scorecard's exam outcomes; the
fields that went to review are counted per header field.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.scorecard import load_sets, served_outcomes

RULES = {"every token (old)": True, "forced characters certain": False}
HEADER = ("patient_id", "laterality", "exam_date")


def main(argv: Sequence[str] | None = None) -> int:
    from eyeops.devices import load_layouts
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.resources import trocr_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", nargs="*", default=[], metavar="DIR[=LABEL]")
    parser.add_argument("--count", type=int, default=0, help="also this many in-distribution exams")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the table's figures here")
    args = parser.parse_args(argv)

    layouts = load_layouts()
    recognizer = load_recognizer(trocr_checkpoint())
    peer = CtcRecognizer.load()
    sets = load_sets(args.exams, args.count, args.seed)

    figures: dict[str, dict[str, dict[str, Any]]] = {}
    print(
        "| set | TrOCR confidence | exams | exam acc. | accepted, no person | silent errors (fields)"
        " | header fields in review: id / eye / date |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, exams in sets:
        figures[label] = {}
        for rule, count_forced in RULES.items():
            scored = served_outcomes(
                exams, recognizer=recognizer, layouts=layouts, ppocr=peer, count_forced=count_forced
            )
            header = Counter(str(r["field"]) for r in scored.pop("rows") if r["served_status"] != "accepted")
            row = {**scored, "header_in_review": {name: header[name] for name in HEADER}}
            figures[label][rule] = row
            print(
                f"| {label} | {rule} | {len(exams)} | {row['exam_accuracy']:.3f} | "
                f"{row['accepted_no_person']:.3f} | {row['silent_errors']} | "
                f"{' / '.join(str(header[name]) for name in HEADER)} |",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
