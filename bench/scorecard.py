"""One OCR scorecard: ours alone, PP-OCR alone, Tesseract and the arbitrated result, side by side,
per set, device kind, value font family, damage level and frame.

    .venv/bin/python -m bench.scorecard --exams /tmp/st/frame_light=stress/frame/light ... \
        [--count 300 --seed 1000] [--no-tesseract] [--json OUT.json]

(`--no-tesseract` leaves Tesseract's column out: most of the cost, and it does not depend on our model.)

Each set goes through the service's own code offline (align, crop, TrOCR with the field grammars,
validation, PP-OCR on every field, the arbitration with the shipped calibration): what `eyeops ocr
eval --offline` scores, kept per field. A set's label reads `renderer/frame/damage` (the stress
renderer's truth lines also name their fonts; the foreign renderer's name its face or readout).

Columns, each as field / exam accuracy (exact text): ours (TrOCR alone), PP-OCR alone, Tesseract
alone, arbitrated (the accepted reading, else the proposal a reviewer is offered); then the share
of exams accepted with no person and the silent errors (wrong and accepted). An exam that failed to
align counts as every field wrong for every reader, and as not accepted.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

READERS = ("ours", "ppocr", "tesseract", "arbitrated")


def load_sets(specs: Sequence[str], count: int = 0, seed: int = 1000) -> list[tuple[str, list[Any]]]:
    """The sets a side-by-side bench reads: each `DIR[=LABEL]` a folder of rendered exams with
    their truth, then `count` in-distribution exams drawn at `seed` (none if 0)."""
    from eyeops.devices import load_layouts
    from eyeops.ocr.offline import exam_folder, held_out_exams

    sets: list[tuple[str, list[Any]]] = [
        (label or Path(folder).name, list(exam_folder(Path(folder))))
        for folder, _, label in (spec.partition("=") for spec in specs)
    ]
    if count:
        sets.append(("ours/in distribution", list(held_out_exams(load_layouts(), count, seed))))
    return sets


def served_outcomes(exams: Sequence[Any], **served: Any) -> dict[str, Any]:
    """Read `exams` offline through the service's code (eyeops.ocr.offline.compare_with_tesseract
    with `served`: recognizer, layouts, ppocr, calibrations, …) and score each with
    `exam_outcomes`: the set's exam accuracy, share accepted with no person, silent errors (fields)
    and the per-field rows."""
    from eyeops.ocr.offline import compare_with_tesseract

    rows: list[dict[str, Any]] = []
    compare_with_tesseract(exams=exams, tesseract=False, records=rows, **served)
    per_exam: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_exam[int(r["exam"])].append(r)
    outcomes = [exam_outcomes(per_exam.get(i, []), exam.texts) for i, exam in enumerate(exams)]
    return {**summarize(outcomes), "rows": rows}


def summarize(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A set's figures from its exams' `exam_outcomes`: exams, exam accuracy (arbitrated), the
    share accepted with no person and the silent errors (fields)."""
    total = max(1, len(outcomes))
    return {
        "exams": len(outcomes),
        "exam_accuracy": sum(all(o["hits"]["arbitrated"]) for o in outcomes) / total,
        "accepted_no_person": sum(o["accepted"] for o in outcomes) / total,
        "silent_errors": sum(o["silent"] for o in outcomes),
    }


def exam_outcomes(rows: Sequence[Mapping[str, Any]], truths: Mapping[str, str]) -> dict[str, Any]:
    """One exam's hits per reader, whether it was accepted with no person, and its silent errors;
    `rows` empty: the exam failed to align."""
    by = {r["field"]: r for r in rows}
    hits: dict[str, list[bool]] = {reader: [] for reader in READERS}
    silent = 0
    for name, truth in truths.items():
        r = by.get(name)
        if r is None:
            for reader in READERS:
                hits[reader].append(False)
            continue
        settled = r["text"] if r["served_status"] == "accepted" or r["proposal"] is None else r["proposal"]
        hits["ours"].append(r["text"] == truth)
        hits["ppocr"].append(r["second_text"] == truth)
        hits["tesseract"].append(r.get("tesseract_text") == truth)
        hits["arbitrated"].append(settled == truth)
        silent += r["served_status"] == "accepted" and r["text"] != truth
    accepted = bool(rows) and all(r["served_status"] == "accepted" for r in rows)
    return {"hits": hits, "accepted": accepted, "silent": silent, "fields": len(truths)}


def font_of(line: Mapping[str, Any]) -> str:
    """The value font family (stress renderer) or face / readout engine (foreign renderer)."""
    meta = line.get("meta") or {}
    if meta.get("fonts"):
        return str(meta["fonts"][-1])
    notes = [str(n) for n in line.get("notes") or []]
    engine = next((n.split(" ", 1)[1] for n in notes if n.startswith("engine ")), "")
    face = next((n.split(" ", 1)[1] for n in notes if n.startswith("face ")), "")
    if engine and engine != "ttf":
        return engine
    return face or "ours (held-out fonts)"


HEADS = {"ours": "ours", "ppocr": "PP-OCR", "tesseract": "Tesseract", "arbitrated": "arbitrated"}


def table(
    groups: Mapping[str, Iterable[Mapping[str, Any]]], title: str, readers: Sequence[str] = READERS
) -> str:
    heads = [HEADS[r] for r in readers]
    lines = [
        f"### {title}",
        "",
        "| group | exams | " + " | ".join(heads) + " | accepted, no person | silent errors |",
        "|---|---|" + "---|" * len(heads) + "---|---|",
    ]
    for group, outcomes in groups.items():
        items = list(outcomes)
        fields = sum(o["fields"] for o in items)
        cells = []
        for reader in readers:
            hit = sum(sum(o["hits"][reader]) for o in items)
            exams_right = sum(all(o["hits"][reader]) for o in items)
            cells.append(f"{hit / max(fields, 1):.4f} / {exams_right / max(len(items), 1):.3f}")
        accepted = sum(o["accepted"] for o in items) / max(len(items), 1)
        silent = sum(o["silent"] for o in items)
        rate = silent / max(fields, 1)
        row = [group, str(len(items)), *cells, f"{accepted:.1%}", f"{silent} ({rate:.4f})"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from eyeops.devices import load_layouts
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import compare_with_tesseract, exam_folder, held_out_exams
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.resources import trocr_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", nargs="*", default=[], metavar="DIR[=LABEL]")
    parser.add_argument("--count", type=int, default=0, help="also this many in-distribution exams")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--no-tesseract", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write every exam's outcome here")
    args = parser.parse_args(argv)

    layouts = load_layouts()
    recognizer = load_recognizer(trocr_checkpoint())
    peer = CtcRecognizer.load()
    sets: list[tuple[str, list[Any], list[dict[str, Any]]]] = []
    for spec in args.exams:
        folder, _, label = spec.partition("=")
        path = Path(folder)
        lines = [json.loads(x) for x in (path / "truth.jsonl").read_text().splitlines() if x.strip()]
        sets.append((label or path.name, exam_folder(path), lines))
    if args.count:
        exams = list(held_out_exams(layouts, args.count, args.seed))
        sets.append(("ours/frame/in distribution", exams, [{} for _ in exams]))

    by_set: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_font: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_damage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_frame: dict[str, list[dict[str, Any]]] = defaultdict(list)
    dump = []
    for label, exams, lines in sets:
        rows: list[dict[str, Any]] = []
        compare_with_tesseract(
            recognizer, layouts, exams, tesseract=not args.no_tesseract, ppocr=peer, records=rows
        )
        per_exam: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            per_exam[int(r["exam"])].append(r)
        parts = label.split("/")
        renderer, frame, damage = [*parts, "", "", ""][:3]
        for i, (exam, line) in enumerate(zip(exams, lines, strict=True)):
            outcome = exam_outcomes(per_exam.get(i, []), exam.texts)
            by_set[label].append(outcome)
            by_kind[exam.device_kind].append(outcome)
            by_font[f"{renderer}: {font_of(line)}"].append(outcome)
            by_damage[damage or "?"].append(outcome)
            by_frame[frame or "?"].append(outcome)
            dump.append({"set": label, "device_kind": exam.device_kind, "font": font_of(line), **outcome})
        print(f"read {label}: {len(exams)} exams", flush=True)
    print()
    readers = [r for r in READERS if r != "tesseract" or not args.no_tesseract]
    print(table(by_set, "per set", readers))
    print(table(dict(sorted(by_kind.items())), "per device kind (every set)", readers))
    print(table(dict(sorted(by_damage.items())), "per damage level", readers))
    print(table(dict(sorted(by_frame.items())), "with and without frame", readers))
    print(table(dict(sorted(by_font.items())), "per value font family or readout", readers))
    if args.json is not None:
        args.json.write_text(json.dumps(dump), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
