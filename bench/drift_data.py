"""Data for bench/drift_detection.py, made in the main environment (the lens cohort simulator and
the OCR recogniser live here); written as one .npz the detectors environment reads.

- lens: base features of a 20,000-eye training cohort (reference) and of 30,000 other eyes (the
  stream), WTW's training SD
- OCR: per-field confidences and review flags of one device kind's exams, read by the shipped
  recogniser through the transformer's align/crop code: reference and stream in the training fonts,
  and a "new font" stream in fonts training never saw
Run:  .venv/bin/python -m bench.drift_data --out var/bench/drift.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eyeops.devices import load_layouts
from eyeops.devices.layout import LayoutRegistry
from eyeops.lens.cohort import simulate_cohort
from eyeops.lens.features import BASE_FEATURES
from eyeops.ocr.dataset import build_crop_set
from eyeops.ocr.decode import recognize
from eyeops.ocr.model import load_recognizer
from eyeops.resources import trocr_checkpoint
from eyeops.settings import Settings


def ocr_stream(kind: str, exams: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    layouts = LayoutRegistry({kind: load_layouts()[kind]})
    crops = build_crop_set(layouts, exams, seed, split, random_fraction=0.0, workers=2)
    recognizer = load_recognizer(trocr_checkpoint())
    confidences = []
    for start in range(0, len(crops), 256):
        chunk = slice(start, start + 256)
        confidences += [
            r.confidence for r in recognize(recognizer, crops.crops[chunk], crops.grammars[chunk])
        ]
    conf = np.asarray(confidences, dtype=np.float64)
    return conf, (conf < Settings().confidence_threshold).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench/drift.npz"))
    parser.add_argument("--ocr-kind", default="optical_biometer")
    parser.add_argument("--ocr-exams", type=int, default=400)
    args = parser.parse_args()
    reference = simulate_cohort(20000, 11)[list(BASE_FEATURES)].to_numpy(dtype=np.float64)
    cohort = simulate_cohort(30000, 12)  # exam order: both eyes of a patient one after the other
    stream = cohort[list(BASE_FEATURES)].to_numpy(dtype=np.float64)
    patients = cohort["eye_id"].str.rsplit("-", n=1).str[0].to_numpy()
    ref_conf, ref_review = ocr_stream(args.ocr_kind, args.ocr_exams, 21, "train")
    same_conf, same_review = ocr_stream(args.ocr_kind, args.ocr_exams, 22, "train")
    font_conf, font_review = ocr_stream(args.ocr_kind, args.ocr_exams // 2, 23, "eval")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("wb") as handle:
        np.savez_compressed(
            handle,
            feature_names=np.array(BASE_FEATURES),
            reference=reference,
            stream=stream,
            stream_patients=patients.astype(str),
            ocr_kind=np.array(args.ocr_kind),
            ocr_reference=np.column_stack([ref_conf, ref_review]),
            ocr_same_font=np.column_stack([same_conf, same_review]),
            ocr_new_font=np.column_stack([font_conf, font_review]),
        )
    print(
        f"wrote {args.out}: {len(reference)} reference eyes, {len(stream)} stream eyes,"
        f" {len(ref_conf)}/{len(same_conf)}/{len(font_conf)} OCR fields"
    )


if __name__ == "__main__":
    main()
