"""The foreign renderer's glyph runs: a value drawn as TrueType text, as a seven-segment or as a 5x7
dot-matrix readout, each a float mask with a known baseline; then sized, spaced and placed so that its
ink lies wholly inside the field's box, and composited onto the page."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from tests.foreign.fonts import Face, _digit_ratio, _font, supports

RGB = tuple[int, int, int]
Rect = tuple[float, float, float, float]  # x, y, w, h in page pixels


@dataclass(frozen=True)
class Run:
    mask: np.ndarray  # float32, 0..1
    baseline: int  # row of the baseline in mask
    digit_h: float  # ink height of a digit, in pixels


def ttf_run(text: str, face: Face, digit_h: float, tracking: float) -> Run:
    px = max(5, round(digit_h / _digit_ratio(face.path)))
    font = _font(face.path, px)
    advances = [font.getlength(c) for c in text]
    width = int(sum(advances) + max(0.0, tracking) * len(text) + 2 * px)
    height = int(px * 2.4)
    baseline = int(px * 1.7)
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    x = px * 0.5
    for char, advance in zip(text, advances, strict=True):
        draw.text((round(x), baseline), char, font=font, fill=255, anchor="ls")
        x += advance + tracking
    return Run(np.asarray(image, dtype=np.float32) / 255.0, baseline, _digit_ratio(face.path) * px)


SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abged",
    "3": "abgcd",
    "4": "fgbc",
    "5": "afgcd",
    "6": "afgedc",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "-": "g",
}


@dataclass(frozen=True)
class SegStyle:
    width: float  # digit width / height
    thick: float  # segment thickness / height
    gap: float  # gap at segment ends / thickness
    slant: float  # degrees
    spacing: float  # extra space between cells / height
    ghost: float  # alpha of unlit segments (0: none)


def _seg_poly(p: tuple[float, float], q: tuple[float, float], half: float, gap: float) -> np.ndarray:
    (px, py), (qx, qy) = p, q
    length = math.hypot(qx - px, qy - py)
    ux, uy = (qx - px) / length, (qy - py) / length
    nx, ny = -uy, ux
    px, py = px + ux * gap, py + uy * gap
    qx, qy = qx - ux * gap, qy - uy * gap
    return np.array(
        [
            (px, py),
            (px + ux * half + nx * half, py + uy * half + ny * half),
            (qx - ux * half + nx * half, qy - uy * half + ny * half),
            (qx, qy),
            (qx - ux * half - nx * half, qy - uy * half - ny * half),
            (px + ux * half - nx * half, py + uy * half - ny * half),
        ]
    )


def seg7_run(text: str, style: SegStyle, digit_h: float) -> Run:
    ss = 4  # supersampling
    h = digit_h * ss
    w = style.width * h
    t = style.thick * h
    half, gap = t / 2, style.gap * t
    slant = math.tan(math.radians(style.slant))
    margin = 0.3 * h
    cells: list[tuple[str, float]] = []
    for char in text:
        cw = {".": 1.7 * t, "/": 0.55 * w + t}.get(char, w)
        cells.append((char, cw))
    total = sum(cw for _, cw in cells) + style.spacing * h * (len(cells) - 1) + 2 * margin + h * slant
    height = h + 2 * margin
    lit = np.zeros((int(height) + 1, int(total) + 1), np.uint8)
    ghost = np.zeros_like(lit)
    baseline = margin + h

    def fill(target: np.ndarray, poly: np.ndarray, x0: float) -> None:
        pts = poly.copy()
        pts[:, 0] += x0 + (h - pts[:, 1]) * slant
        pts[:, 1] += margin
        cv2.fillPoly(target, [np.round(pts).astype(np.int32)], 255, lineType=cv2.LINE_AA)

    ends = {
        "a": ((half, half), (w - half, half)),
        "g": ((half, h / 2), (w - half, h / 2)),
        "d": ((half, h - half), (w - half, h - half)),
        "f": ((half, half), (half, h / 2)),
        "b": ((w - half, half), (w - half, h / 2)),
        "e": ((half, h / 2), (half, h - half)),
        "c": ((w - half, h / 2), (w - half, h - half)),
    }
    x = margin
    for char, cw in cells:
        if char in SEGMENTS:
            if style.ghost > 0 and char != "-":
                for seg in "abcdefg":
                    fill(ghost, _seg_poly(*ends[seg], half, gap), x)
            for seg in SEGMENTS[char]:
                fill(lit, _seg_poly(*ends[seg], half, gap), x)
        elif char == "+":
            fill(lit, _seg_poly(*ends["g"], half, gap), x)
            arm = w / 2 - half
            fill(lit, _seg_poly((w / 2, h / 2 - arm), (w / 2, h / 2 + arm), half, gap), x)
        elif char == ".":
            dot = np.array([(0.3 * t, h - 1.1 * t), (1.4 * t, h - 1.1 * t), (1.4 * t, h), (0.3 * t, h)])
            fill(lit, dot, x)
        elif char == "/":
            x1 = 0.55 * w
            fill(lit, np.array([(0, h), (0.8 * t, h), (x1 + t, 0), (x1 + 0.2 * t, 0)]), x)
        else:
            raise ValueError(f"seven-segment has no glyph for {char!r}")
        x += cw + style.spacing * h
    mask = np.maximum(lit.astype(np.float32), ghost.astype(np.float32) * style.ghost) / 255.0
    small = cv2.resize(
        mask, (max(1, mask.shape[1] // ss), max(1, mask.shape[0] // ss)), interpolation=cv2.INTER_AREA
    )
    return Run(small, round(baseline / ss), digit_h)


DOTS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "S": "01111 10000 10000 01110 00001 00001 11110",
}


@dataclass(frozen=True)
class DotStyle:
    radius: float  # dot radius / pitch
    square: bool
    advance: float  # cell advance in pitches (>= 5.6)
    ghost: float


def dots_run(text: str, style: DotStyle, digit_h: float) -> Run:
    ss = 4
    pitch = digit_h * ss / (6 + 2 * style.radius)
    r = style.radius * pitch
    margin = 2 * pitch
    width = int(2 * margin + style.advance * pitch * len(text)) + 1
    height = int(2 * margin + digit_h * ss) + 1
    lit = np.zeros((height, width), np.uint8)
    ghost = np.zeros_like(lit)
    for i, char in enumerate(text):
        rows = DOTS[char].split()
        x0 = margin + i * style.advance * pitch
        for row, bits in enumerate(rows):
            for col, bit in enumerate(bits):
                cx, cy = x0 + r + col * pitch, margin + r + row * pitch
                target = lit if bit == "1" else ghost
                if bit == "0" and style.ghost <= 0:
                    continue
                if style.square:
                    cv2.rectangle(
                        target,
                        (round(cx - r), round(cy - r)),
                        (round(cx + r), round(cy + r)),
                        255,
                        -1,
                    )
                else:
                    cv2.circle(target, (round(cx), round(cy)), max(1, round(r)), 255, -1, cv2.LINE_AA)
    mask = np.maximum(lit.astype(np.float32), ghost.astype(np.float32) * style.ghost) / 255.0
    small = cv2.resize(mask, (max(1, width // ss), max(1, height // ss)), interpolation=cv2.INTER_AREA)
    return Run(small, round((margin + digit_h * ss) / ss), digit_h)


@dataclass
class ValueStyle:
    engine: str  # ttf | seg7 | dots
    face: Face
    fallback: Face
    seg: SegStyle
    dots: DotStyle
    frac: tuple[float, float]  # digit ink height / box height
    tracking: float  # em fraction
    weight: int  # dilation in px at scale 1
    align: str  # left | right | centre
    color: RGB


def make_run(text: str, style: ValueStyle, engine: str, face: Face, digit_h: float, tracking: float) -> Run:
    if engine == "seg7":
        seg = style.seg
        return seg7_run(
            text, SegStyle(seg.width, seg.thick, seg.gap, seg.slant, tracking, seg.ghost), digit_h
        )
    if engine == "dots":
        d = style.dots
        return dots_run(text, DotStyle(d.radius, d.square, 5.6 + max(0.0, tracking) * 6, d.ghost), digit_h)
    return ttf_run(text, face, digit_h, tracking * digit_h / 0.7)


def _ink_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    cols = np.flatnonzero(mask.max(axis=0) > 0.03)
    rows = np.flatnonzero(mask.max(axis=1) > 0.03)
    return int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])


@dataclass
class Placed:
    mask: np.ndarray
    x: int
    y: int
    digit_h: float


def fit_value(
    text: str,
    box: Rect,
    style: ValueStyle,
    rng: np.random.Generator,
    scale: float,
    size_rng: np.random.Generator | None = None,
) -> Placed:
    """Size, space and place one value so its ink lies wholly inside the box; its size and spacing from
    size_rng when given (a fixed design: the same for every exam), its position jitter from rng."""
    bx, by, bw, bh = box
    engine = style.engine
    if engine == "seg7" and not all(c in SEGMENTS or c in "+./" for c in text):
        engine = "ttf"
    if engine == "dots" and not all(c in DOTS for c in text):
        engine = "ttf"
    face = style.face if supports(style.face, text) else style.fallback
    pad = max(2.0, 0.06 * bh)
    sizing = rng if size_rng is None else size_rng
    frac = float(sizing.uniform(*style.frac))
    tracking = style.tracking + float(sizing.uniform(-0.02, 0.02))
    if engine == "seg7":
        tracking = style.seg.spacing
    digit_h = frac * bh
    weight = style.weight
    if engine == "ttf" and face.family == "Glass TTY VT220":  # its scanline strokes are thin
        weight = max(weight, 1)
    for attempt in range(12):
        run = make_run(text, style, engine, face, digit_h, tracking)
        mask = run.mask
        k = round(weight * scale)
        if k > 0 and digit_h > 14:
            mask = cv2.dilate(mask, np.ones((k + 1, k + 1), np.uint8))
        x0, x1, y0, y1 = _ink_bounds(mask)
        ink_w, ink_h = x1 - x0 + 1, y1 - y0 + 1
        if ink_w <= bw - 2 * pad and ink_h <= bh - 2:
            break
        if attempt < 2 and tracking > 0.0:
            tracking = 0.0 if engine != "seg7" else 0.12
            continue
        if engine == "ttf" and face != style.fallback and digit_h < 0.45 * bh:
            face = style.fallback
            digit_h = frac * bh
            continue
        shrink = min((bw - 2 * pad) / ink_w, (bh - 2) / ink_h, 0.97)
        digit_h *= shrink
        if weight and digit_h < 0.5 * bh:
            weight = 0
    jx = float(rng.uniform(-3, 3)) * scale
    jy = float(rng.uniform(-0.08, 0.08)) * (bh - run.digit_h)
    align = style.align
    if align == "left":
        ox = bx + pad + abs(jx) - x0
    elif align == "right":
        ox = bx + bw - pad - abs(jx) - x1
    else:
        ox = bx + (bw - ink_w) / 2 + jx - x0
    oy = by + (bh - run.digit_h) / 2 + jy - (run.baseline - run.digit_h)
    ox = min(max(ox, bx + 1 - x0), bx + bw - 2 - x1)
    oy = min(max(oy, by + 1 - y0), by + bh - 2 - y1)
    sub = mask[y0 : y1 + 1, x0 : x1 + 1]
    return Placed(sub, round(ox + x0), round(oy + y0), run.digit_h)


def composite(page: np.ndarray, placed: Placed, color: RGB) -> None:
    h, w = placed.mask.shape
    region = page[placed.y : placed.y + h, placed.x : placed.x + w].astype(np.float32)
    a = placed.mask[: region.shape[0], : region.shape[1], None]
    region = region * (1 - a) + np.array(color, np.float32) * a
    page[placed.y : placed.y + h, placed.x : placed.x + w] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
