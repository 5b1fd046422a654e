"""Alignment cost, side by side in one run: the frame-only alignment the service used before
(find the frame, warp) against today's `align` (frame, then the layout search when the frame is
missing or scores low, every result scored), on the same decoded images.

    .venv/bin/python -m bench.alignment [--exams 120] [--repeat 3]

In distribution every exam has its frame, so the new path pays only for the quality score; on
borderless stress exams (tests/stress/render.py) only the new path finds the screen at all.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from eyeops.align import _frame_matrix, align, decode_grey, warp_to_template
from eyeops.devices import load_layouts
from eyeops.devices.layout import DeviceLayout
from eyeops.errors import AlignmentFailed
from eyeops.synth.exams import synthesize_exams


def frame_only(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
    matrix = _frame_matrix(grey, layout)
    return None if matrix is None else warp_to_template(grey, matrix, layout)


def new(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
    try:
        return align(grey, layout).aligned
    except AlignmentFailed:
        return None


def timed(images: list[tuple[np.ndarray, DeviceLayout]], fn, repeat: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    best, found = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = sum(fn(g, lay) is not None for g, lay in images)
        best = min(best, time.perf_counter() - t0)
    return best / len(images) * 1e3, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exams", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    layouts = load_layouts()
    sets = {
        "in distribution": [
            (decode_grey(e.image), layouts[e.device_kind])
            for e in synthesize_exams(list(layouts), args.exams, 1000, split="eval")
        ]
    }
    from tests.stress import render

    with tempfile.TemporaryDirectory() as tmp:
        import json

        truth = render.render_stress_set(args.exams, 31, Path(tmp), border=False, damage="full")
        rows = [json.loads(line) for line in truth.read_text().splitlines()]
        sets["borderless stress"] = [
            (decode_grey((Path(tmp) / r["file"]).read_bytes()), layouts[r["device_kind"]]) for r in rows
        ]
    print(
        f"{'set':20s} {'old ms/exam':>12s} {'new ms/exam':>12s} {'new/old':>8s}"
        f" {'old aligned':>12s} {'new aligned':>12s}"
    )
    for name, images in sets.items():
        old_ms, old_n = timed(images, frame_only, args.repeat)
        new_ms, new_n = timed(images, new, args.repeat)
        n = len(images)
        ratio = new_ms / old_ms
        print(f"{name:20s} {old_ms:12.1f} {new_ms:12.1f} {ratio:8.2f} {old_n:8d}/{n:<3d} {new_n:8d}/{n:<3d}")


if __name__ == "__main__":
    main()
