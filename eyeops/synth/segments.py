"""Seven- and fourteen-segment readouts drawn as polygons: the LCD/LED "font" of the broad renderer.

No segment font file is used (the independent stress renderer draws with DSEG; training must not see
it). Each exam draws its own segment geometry: stroke thickness, slant, the gap between segments,
bevelled or square ends, cell width and spacing, and optionally the unlit segments as a faint ghost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

# A cell is 1 wide and 2 high (y down). Segments: a top, b top right, c bottom right, d bottom,
# e bottom left, f top left, g1/g2 middle halves, and the fourteen-segment extras: h top-left
# diagonal, i top centre, j top-right diagonal, k bottom-left diagonal, l bottom centre,
# m bottom-right diagonal.
_SEVEN = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "-": "g",
    "P": "abefg",
    "O": "abcdef",
    "S": "acdfg",
}
_FOURTEEN = {
    **{k: v.replace("g", "GH") for k, v in _SEVEN.items()},
    "+": "GHil",
    "/": "jk",
    "D": "abcdil",
}
_DIAGONAL_SEVEN = "ajk"  # a fourteen-segment variant of 7; most faces keep the plain one
SEGMENT_CHARS = frozenset(_FOURTEEN) | {".", ":"}


@dataclass(frozen=True)
class SegmentStyle:
    """One readout's geometry, in fractions of the cell height unless noted."""

    fourteen: bool
    thickness: float  # stroke, as a fraction of the cell width
    gap: float  # between neighbouring segments, fraction of the cell width
    slant_deg: float
    bevel: bool
    aspect: float  # cell width / cell height
    spacing: float  # between cells, fraction of the cell width
    ghost: float  # 0: unlit segments invisible; else their ink strength (0..1)
    diagonal_seven: bool


def sample_segment_style(rng: np.random.Generator, fourteen: bool) -> SegmentStyle:
    return SegmentStyle(
        fourteen=fourteen,
        thickness=float(rng.uniform(0.1, 0.24)),
        gap=float(rng.uniform(0.0, 0.06)),
        slant_deg=float(rng.uniform(0, 12)) if rng.random() < 0.7 else 0.0,
        bevel=bool(rng.random() < 0.7),
        aspect=float(rng.uniform(0.42, 0.62)),
        spacing=float(rng.uniform(0.12, 0.45)),
        ghost=float(rng.uniform(0.06, 0.22)) if rng.random() < 0.25 else 0.0,
        diagonal_seven=bool(rng.random() < 0.3),
    )


def _bar(x0: float, y0: float, x1: float, y1: float, t: float, bevel: bool) -> list[tuple[float, float]]:
    """A segment from (x0, y0) to (x1, y1) of thickness t: a hexagon with pointed ends, or a
    rectangle."""
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    nx, ny = -uy * t / 2, ux * t / 2
    if bevel:
        e = t / 2
        return [
            (x0, y0),
            (x0 + ux * e + nx, y0 + uy * e + ny),
            (x1 - ux * e + nx, y1 - uy * e + ny),
            (x1, y1),
            (x1 - ux * e - nx, y1 - uy * e - ny),
            (x0 + ux * e - nx, y0 + uy * e - ny),
        ]
    return [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)]


def _segments(style: SegmentStyle, w: float, h: float) -> dict[str, list[tuple[float, float]]]:
    t = style.thickness * w
    g = style.gap * w + t * 0.15
    left, right, top, mid, bottom = t / 2, w - t / 2, t / 2, h / 2, h - t / 2
    cx = w / 2
    bar = style.bevel
    segs = {
        "a": _bar(left + g, top, right - g, top, t, bar),
        "d": _bar(left + g, bottom, right - g, bottom, t, bar),
        "g": _bar(left + g, mid, right - g, mid, t, bar),
        "G": _bar(left + g, mid, cx - g, mid, t, bar),
        "H": _bar(cx + g, mid, right - g, mid, t, bar),
        "f": _bar(left, top + g, left, mid - g, t, bar),
        "b": _bar(right, top + g, right, mid - g, t, bar),
        "e": _bar(left, mid + g, left, bottom - g, t, bar),
        "c": _bar(right, mid + g, right, bottom - g, t, bar),
        "i": _bar(cx, top + g + t / 2, cx, mid - g, t, bar),
        "l": _bar(cx, mid + g, cx, bottom - g - t / 2, t, bar),
    }
    d = g + t * 0.6  # diagonals run from beside the centre to the inner corners
    segs["j"] = _bar(cx + d * 0.5, mid - d * 0.7, right - t * 0.8, top + t * 0.9, t * 0.9, False)
    segs["k"] = _bar(left + t * 0.8, bottom - t * 0.9, cx - d * 0.5, mid + d * 0.7, t * 0.9, False)
    segs["h"] = _bar(left + t * 0.8, top + t * 0.9, cx - d * 0.5, mid - d * 0.7, t * 0.9, False)
    segs["m"] = _bar(cx + d * 0.5, mid + d * 0.7, right - t * 0.8, bottom - t * 0.9, t * 0.9, False)
    return segs


def _lit(style: SegmentStyle, char: str) -> str:
    if char == "7" and style.diagonal_seven and style.fourteen:
        return _DIAGONAL_SEVEN
    table = _FOURTEEN if style.fourteen or char in "+/D" else _SEVEN
    return table.get(char, "")


def segment_mask(text: str, height: int, style: SegmentStyle) -> np.ndarray:
    """The readout of `text` as a uint8 mask (255 ink) `height` pixels high; its width follows."""
    ss = 4  # supersampling: drawn 4× larger, then reduced with area averaging
    h = float(height * ss)
    w = h * style.aspect
    spacing = w * style.spacing
    dot_w = max(style.thickness * w * 1.6, h * 0.08)
    slant = math.tan(math.radians(style.slant_deg))
    x = 0.0
    placed: list[tuple[float, str]] = []
    for char in text:
        if char in ".:":
            placed.append((x - spacing * 0.5, char))
            x += dot_w + spacing * 0.3
        else:
            placed.append((x, char))
            x += w + spacing
    total_w = max(x - spacing, 1.0) + slant * h + 2 * ss
    img = Image.new("L", (math.ceil(total_w), math.ceil(h) + 2 * ss), 0)
    draw = ImageDraw.Draw(img)
    segs = _segments(style, w, h)
    ghost = round(255 * style.ghost)

    def shear(points: list[tuple[float, float]], ox: float) -> list[tuple[float, float]]:
        return [(ox + px + slant * (h - py) + ss, py + ss) for px, py in points]

    t = style.thickness * w
    for ox, char in placed:
        if char in ".:":
            side = t * 1.1
            dots = [h - side / 2] if char == "." else [h * 0.3, h * 0.7]
            for cy in dots:
                sq = [
                    (0.0, cy - side / 2),
                    (side, cy - side / 2),
                    (side, cy + side / 2),
                    (0.0, cy + side / 2),
                ]
                draw.polygon(shear(sq, ox), fill=255)
            continue
        lit = _lit(style, char)
        names = "abcdefGHijklm" if style.fourteen else "abcdefg"
        for name in names:
            on = name in lit or (name == "g" and ("G" in lit or "H" in lit))
            if name in ("G", "H") and "g" in lit:
                on = True
            if on:
                draw.polygon(shear(segs[name], ox), fill=255)
            elif ghost:
                draw.polygon(shear(segs[name], ox), fill=ghost)
        # Characters a seven-segment readout lacks borrow fourteen-segment strokes.
        if not style.fourteen:
            for name in lit:
                if name in "GHijklm":
                    draw.polygon(shear(segs[name], ox), fill=255)
    arr = np.asarray(img)
    out_w = max(1, round(arr.shape[1] / ss))
    return np.asarray(cv2.resize(arr, (out_w, height + 2), interpolation=cv2.INTER_AREA), dtype=np.uint8)
