"""Would a calibration fitted for an onboarded kind, on exams our renderer draws on its reference
image, let agreement accept more of its exams? Judged on the seventh device drawn by the renderer
written apart from ours (docs/learning-from-traffic.md, "A calibration per kind").

    EYEOPS_LAYOUT_DIRS=/tmp/seventh/onboarded .venv/bin/python -m bench.kind_calibration \\
        --checkpoint /tmp/ft/ckpt --kind lensmeter --count 150 --seed 5100 /tmp/seventh/light

It fits the kind's calibration on `--count` reference exams (seed apart from the fine-tune's
evaluation seed, 4100), then reads each exam folder with the shipped calibration and with the
kind's, side by side, and prints one JSON line per folder and calibration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kind_calibration")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the fine-tuned recogniser")
    parser.add_argument("--kind", required=True, help="the onboarded kind (it has a reference image)")
    parser.add_argument("--count", type=int, default=150, help="reference exams to fit on")
    parser.add_argument("--seed", type=int, default=5100)
    parser.add_argument("folders", type=Path, nargs="+", help="labelled exam folders to judge on")
    args = parser.parse_args(argv)

    from eyeops.devices import load_layouts
    from eyeops.ocr.arbitrate import Calibrations, shipped_calibrations
    from eyeops.ocr.calibrate import fit_calibrations
    from eyeops.ocr.finetune import heldout_reference_exams
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import compare_with_tesseract, exam_folder
    from eyeops.ocr.peers import CtcRecognizer

    layouts = load_layouts()
    recognizer = load_recognizer(args.checkpoint)
    peer = CtcRecognizer.load()
    rows: list[dict[str, object]] = []
    compare_with_tesseract(
        recognizer,
        layouts,
        heldout_reference_exams(layouts, args.kind, args.count, args.seed),
        tesseract=False,
        ppocr=peer,
        calibrations=Calibrations.identity(),
        records=rows,
    )
    own = fit_calibrations(rows, lineage={"fitted_on": f"{args.count} reference exams, seed {args.seed}"})
    print(json.dumps({"fit_fields": len(rows), "dependence": own.dependence, "agreed": own.agreed.to_dict()}))
    for folder in args.folders:
        exams = list(exam_folder(folder))
        for label, calibrations in (("shipped", shipped_calibrations()), ("kind", own)):
            summary = compare_with_tesseract(
                recognizer, layouts, exams, tesseract=False, ppocr=peer, calibrations=calibrations
            )
            figures = summary["per_device"][args.kind]
            keys = ("field_accuracy", "exam_accuracy", "accepted_exam_rate", "silent_error_rate")
            print(json.dumps({"set": folder.name, "calibration": label, **{k: figures[k] for k in keys}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
