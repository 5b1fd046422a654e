"""Why exams wait for a person: each field sent to review, by whether the two recognisers agreed and
whether TrOCR was right, and what a third reader (Tesseract) would change.

    .venv/bin/python -m bench.review_causes --exams /tmp/foreign/light=foreign/frame/light ... \
        [--count 300 --seed 1000]

Per set, read offline through the service's code (eyeops.ocr.offline, Tesseract as a peer):

- fields in review by cause: the two agree (right or wrong) but below what the calibration lets
  agreement accept; they disagree (TrOCR right or wrong); a check failed;
- exams held back only by agreeing fields: the most that any rule on agreement could add without
  a better primary (every other exam in review holds a reading TrOCR got wrong, or a failed check);
- a third vote: the exams whose every field in review was read alike by all three readers, and how
  many of those hold a wrong field (what accepting three-way agreement would let through).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.scorecard import load_sets

CHECKS = ("out_of_range", "invalid", "grammar", "cross_check", "step")


def causes(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures above for one set's per-field rows (compare_with_tesseract's records)."""
    per_exam: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_exam[int(r["exam"])].append(r)
    fields: Counter[str] = Counter()
    only_agreeing = three_way = three_way_wrong = 0
    for exam_rows in per_exam.values():
        waiting = [r for r in exam_rows if r["served_status"] != "accepted"]
        if not waiting:
            continue
        agreeing = []
        for r in waiting:
            ours, second, truth = r["text"], r["second_text"], r["truth"]
            failed = any(str(r["reason"]).startswith(c) for c in CHECKS)
            if failed:
                fields["a check failed"] += 1
            elif ours == second:
                fields["agree, right" if ours == truth else "agree, WRONG"] += 1
                agreeing.append(r)
            else:
                fields["disagree, TrOCR right" if ours == truth else "disagree, TrOCR wrong"] += 1
        if len(agreeing) == len(waiting):
            only_agreeing += 1
            if all(r.get("tesseract_text") == r["text"] for r in waiting):
                three_way += 1
                three_way_wrong += any(r["text"] != r["truth"] for r in waiting)
    return {
        "aligned_exams": len(per_exam),
        "accepted": sum(all(r["served_status"] == "accepted" for r in rs) for rs in per_exam.values()),
        "fields_in_review": dict(fields.most_common()),
        "exams_held_only_by_agreeing_fields": only_agreeing,
        "of_which_tesseract_agrees_on_every_field": three_way,
        "of_which_a_field_is_wrong": three_way_wrong,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from eyeops.devices import load_layouts
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import compare_with_tesseract
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.resources import trocr_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", nargs="*", default=[], metavar="DIR[=LABEL]")
    parser.add_argument("--count", type=int, default=0, help="also this many in-distribution exams")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    layouts = load_layouts()
    recognizer = load_recognizer(trocr_checkpoint())
    peer = CtcRecognizer.load()
    figures = {}
    for label, exams in load_sets(args.exams, args.count, args.seed):
        rows: list[dict[str, Any]] = []
        compare_with_tesseract(recognizer, layouts, exams, tesseract=True, ppocr=peer, records=rows)
        figures[label] = {"exams": len(exams), **causes(rows)}
        print(json.dumps({label: figures[label]}), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
