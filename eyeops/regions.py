"""From an aligned exam to the recogniser's input: each field's region cut from the template-sized
image, dark on light, with its value's ink moved to one size and place (`prepare_crop`), so a device
that draws its values larger, smaller or elsewhere in their boxes reads like the training data.
Training and serving both cut crops here (eyeops.ocr.dataset, eyeops.ocr.pipeline)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.devices.layout import FieldSpec


def grey_percentiles(grey: np.ndarray, qs: Sequence[float]) -> list[float]:
    """np.percentile(grey, qs) (linear interpolation), equal to the last bit, from a histogram: for
    8-bit pixels a count of 256 values instead of a sort of every pixel. A crop's medians and
    percentiles were a tenth of the OCR service's CPU per exam; other dtypes take np.percentile.
    The 50th is np.median's value too (its mean of the two middle pixels is numpy's lerp at t = ½)."""
    if grey.dtype != np.uint8 or grey.size == 0:
        return [float(v) for v in np.percentile(grey, list(qs))]
    cumulative = np.cumsum(np.bincount(grey.ravel(), minlength=256))
    last = grey.size - 1

    def ranked(k: int) -> float:  # the k-th smallest pixel (0-based)
        return float(np.searchsorted(cumulative, k, side="right"))

    out = []
    for q in qs:
        at = q / 100.0 * last
        lo = int(np.floor(at))
        hi = min(lo + 1, last)
        a, b, t = ranked(lo), ranked(hi), at - lo
        # numpy's own lerp, so the result is the same float
        out.append(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def normalize_polarity(region: np.ndarray) -> np.ndarray:
    """Dark text on a light ground, whatever the screen drew: a value box's ground covers most of
    it, so when its median sits on the dark side of the box's range the box is inverted. Devices
    with light-on-dark screens then read like the printouts the recogniser learnt from."""
    if region.size == 0:
        return region
    low, high, median = grey_percentiles(region, (2, 98, 50))
    if high - low < 24 or median >= (low + high) / 2:
        return region
    return np.asarray(255 - region, dtype=np.uint8)


# Where a value's ink goes in the recogniser's input, whatever size and place the device drew it at
# (as a share of CROP_HEIGHT / CROP_WIDTH): the median of what the training renderer draws.
INK_HEIGHT = 0.44
INK_MIDDLE = 0.5
INK_MARGIN = 0.0625


def value_ink(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1) of a value's ink in a dark-on-light field region: strokes
    darker than the ground, less rules and the box's own outline along its edges, less specks; None
    for an empty (or featureless) region."""
    h, w = region.shape
    ground, dark = grey_percentiles(region, (50, 1))
    if ground - dark < 20:
        return None
    mask = (region < ground - 0.45 * (ground - dark)).astype(np.uint8)
    # rules, underlines and the box's outline, even where they touch a digit: long straight runs
    across = cv2.morphologyEx(
        mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, w // 3), 1))
    )
    down = cv2.morphologyEx(
        mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(3, int(h * 0.8))))
    )
    mask[(np.asarray(across) > 0) | (np.asarray(down) > 0)] = 0
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    cx, cy, cw, ch, area = (stats[:, i] for i in range(5))
    keep = area >= max(4.0, 0.04 * float(area[1:].max(initial=0)))  # specks of noise are not ink
    keep &= ~((ch <= 3) & (cw > 0.3 * w))  # a rule across the box
    keep &= ~((cw <= 3) & (ch > 0.6 * h))  # the box's side
    keep &= ~((ch > 0.95 * h) & (cw > 0.9 * w))  # the box's whole outline
    # slivers along the region's edges: a neighbour's ink or an edge cut by the alignment
    keep &= ~(((cy <= 1) | (cy + ch >= h - 1)) & (ch <= 3))
    keep &= ~(((cx <= 1) | (cx + cw >= w - 1)) & (cw <= 3))
    keep[0] = False
    if not keep.any():
        return None
    ys, xs = np.nonzero(keep[labels])
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def prepare_crop(region: np.ndarray, side: str) -> np.ndarray:
    """A field region as the recogniser's input (CROP_HEIGHT × CROP_WIDTH, uint8 grey), dark on
    light, with the value's ink moved to one place and size: INK_HEIGHT of the crop's height (less
    for a value too long to fit), centred on INK_MIDDLE, INK_MARGIN in from the `side` the layout
    aligns values to. A device that draws its values larger, smaller, centred or left where its
    layout says right then reads like the training data; ink much flatter than text (a "---") keeps
    its flat shape."""
    flat = normalize_polarity(region)
    ink = value_ink(flat)
    if ink is None:
        return cv2.resize(flat, (CROP_WIDTH, CROP_HEIGHT), interpolation=cv2.INTER_AREA)
    y0, y1, x0, x1 = ink
    h, w = flat.shape
    # crop pixels per region pixel, across and down, if the ink were drawn at INK_HEIGHT
    tall = INK_HEIGHT * CROP_HEIGHT / max(y1 - y0, 0.3 * h)
    wide = tall * (CROP_WIDTH / w) / (CROP_HEIGHT / h)
    margin = round(INK_MARGIN * CROP_WIDTH)
    fit = min(1.0, (CROP_WIDTH - 2 * margin) / ((x1 - x0) * wide))  # too long: shrink both ways
    th, tw = max(1, round((y1 - y0) * tall * fit)), max(1, round((x1 - x0) * wide * fit))
    out = np.full((CROP_HEIGHT, CROP_WIDTH), int(grey_percentiles(flat, (50,))[0]), np.uint8)
    top = int(np.clip(round(INK_MIDDLE * CROP_HEIGHT - th / 2), 0, CROP_HEIGHT - th))
    left = margin if side == "left" else CROP_WIDTH - margin - tw
    out[top : top + th, left : left + tw] = cv2.resize(
        flat[y0:y1, x0:x1], (tw, th), interpolation=cv2.INTER_AREA
    )
    return out


def crop_regions(aligned: np.ndarray, fields: Sequence[FieldSpec], side: str) -> np.ndarray:
    """Stack of prepared crops, one per field, in the order given: (N, 32, 128) uint8; `side` is
    the layout's value_align."""
    crops = []
    for spec in fields:
        x, y, w, h = spec.box
        crops.append(prepare_crop(aligned[y : y + h, x : x + w], side))
    return np.stack(crops)
