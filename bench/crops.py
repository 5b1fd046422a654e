"""Crop cost, side by side in one run: a field region resized as it was drawn (before round 9)
against today's `crop_regions`, which first moves the value's ink to one size and place
(eyeops.regions.prepare_crop), on the same aligned exams.

    .venv/bin/python -m bench.crops [--exams 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from eyeops.align import align, decode_grey
from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.devices import load_layouts
from eyeops.devices.layout import DeviceLayout
from eyeops.regions import crop_regions, normalize_polarity
from eyeops.synth.exams import synthesize_exams


def as_drawn(aligned: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    size = (CROP_WIDTH, CROP_HEIGHT)
    boxes = (s.box for s in layout.all_fields())
    return np.stack(
        [
            cv2.resize(normalize_polarity(aligned[y : y + h, x : x + w]), size, interpolation=cv2.INTER_AREA)
            for x, y, w, h in boxes
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exams", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    layouts = load_layouts()
    aligned = []
    for exam in synthesize_exams(list(layouts), args.exams, seed=1000, split="eval"):
        layout = layouts[exam.device_kind]
        aligned.append((layout, align(decode_grey(exam.image), layout).aligned))
    before, after = [], []
    for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits both alike
        t0 = time.perf_counter()
        for layout, image in aligned:
            as_drawn(image, layout)
        t1 = time.perf_counter()
        for layout, image in aligned:
            crop_regions(image, list(layout.all_fields()), layout.template.value_align)
        t2 = time.perf_counter()
        before.append((t1 - t0) / len(aligned) * 1e3)
        after.append((t2 - t1) / len(aligned) * 1e3)
    b, a = float(np.median(before)), float(np.median(after))
    print(
        json.dumps(
            {
                "exams": len(aligned),
                "as_drawn_ms_per_exam": round(b, 2),
                "normalised_ms_per_exam": round(a, 2),
                "ratio": round(a / b, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
