"""An independent renderer of the six device layouts, for measuring how the OCR generalises.

Written apart from the project's own renderers: it reads only the layout files (where each field's box
sits, what text is legal in it) and draws each exam the way another vendor might draw the same screen
or printout: its own page design, font families the project uses nowhere (Debian packages listed in
FOREIGN_FONT_PACKAGES), its own seven-segment and 5x7 dot-matrix readouts, and its own photo and scan
damage.

    .venv/bin/python -m tests.foreign.render --count 120 --seed 4242 --out /tmp/foreign/light --damage light
    [--damage none|light|full] [--no-border] [--layouts DIR]... [--kinds K...] [--page-scale S]
    [--fixed-design] [--start N]

Writes DIR/<name>.png (.jpg where the damage ends in a JPEG encoding) and DIR/truth.jsonl, one line per
exam: {"file": ..., "device_kind": ..., "fields": {name: exact text drawn in that field's box}}.
Everything random comes from numpy Generators seeded by --seed (exam i from the seed pair [seed, i]), so
an exam is the same whatever --count is; exam i is of kind kinds[i % len(kinds)].

--layouts adds folders of layout YAMLs (device kinds the project does not ship) and --kinds draws only
the kinds named. The page design keeps off the layout's boxes and inside the page for any template size,
frame_inset and title (none, or no room for one: none drawn). --page-scale fixes the page pixels per
template pixel: with 1 and --damage none an exam is template.width x template.height pixels with every
value inside its box at the layout's coordinates, fit to serve as the device's onboarding sample.
--fixed-design draws every exam of a kind with one design, seeded by --seed and the kind alone (so the
same whatever --count, --start or --kinds): fonts, theme, frame, labels, rules, picture and each value's
size; it draws nothing from the values outside their boxes (no eye badge, no value-driven picture), so
undamaged exams at one scale differ only inside the boxes. --start N begins at exam N, e.g. a stress set
that leaves out exam 0 when exam 0 was the onboarding sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import re._parser as sre_parse
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from eyeops.devices.layout import BLANK_MARKER, DeviceLayout, FieldSpec, load_layouts
from eyeops.errors import LayoutError

RGB = tuple[int, int, int]
Rect = tuple[float, float, float, float]  # x, y, w, h in page pixels

# ----------------------------------------------------------------------------------------------------
# Fonts: families from Debian packages the project installs nowhere.
# ----------------------------------------------------------------------------------------------------

FOREIGN_FONT_PACKAGES: tuple[str, ...] = (
    "fonts-tiresias",
    "fonts-national-park",
    "fonts-roadgeek",
    "fonts-sora",
    "fonts-quattrocento",
    "fonts-opendyslexic",
    "fonts-yrsa-rasa",
    "fonts-cardo",
    "fonts-ocr-a",
    "fonts-monofur",
    "fonts-glasstty",
    "fonts-sixtyfour",
    "fonts-gnutypewriter",
    "fonts-pc",
)


@dataclass(frozen=True)
class Face:
    package: str
    path: str
    family: str
    kind: str  # sans | serif | mono | pixel
    bold: bool = False


_T = "/usr/share/fonts/truetype"
_O = "/usr/share/fonts/opentype"

FACES: tuple[Face, ...] = (
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_infofont.ttf", "Tiresias Infofont", "sans"),
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_infofont_bold.ttf", "Tiresias Infofont", "sans", True),
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_pcfont.ttf", "Tiresias PCfont", "sans"),
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_signfont_bold.ttf", "Tiresias Signfont", "sans", True),
    Face("fonts-national-park", f"{_O}/national-park/NationalPark-Regular.otf", "National Park", "sans"),
    Face("fonts-national-park", f"{_O}/national-park/NationalPark-Heavy.otf", "National Park", "sans", True),
    Face("fonts-roadgeek", f"{_T}/roadgeek/RG2014C.ttf", "Roadgeek 2014 Series C", "sans"),
    Face("fonts-roadgeek", f"{_T}/roadgeek/RG2014D.ttf", "Roadgeek 2014 Series D", "sans"),
    Face("fonts-roadgeek", f"{_T}/roadgeek/RG2014E.ttf", "Roadgeek 2014 Series E", "sans", True),
    Face("fonts-sora", f"{_O}/sora/Sora-Light.otf", "Sora", "sans"),
    Face("fonts-sora", f"{_O}/sora/Sora-Regular.otf", "Sora", "sans"),
    Face("fonts-sora", f"{_O}/sora/Sora-SemiBold.otf", "Sora", "sans", True),
    Face("fonts-quattrocento", f"{_O}/quattrocento/Quattrocento-Regular.otf", "Quattrocento", "serif"),
    Face("fonts-opendyslexic", f"{_O}/opendyslexic/OpenDyslexic-Regular.otf", "OpenDyslexic", "sans"),
    Face("fonts-opendyslexic", f"{_O}/opendyslexic/OpenDyslexic-Bold.otf", "OpenDyslexic", "sans", True),
    Face("fonts-opendyslexic", f"{_O}/opendyslexic/OpenDyslexicMono-Regular.otf", "OpenDyslexicMono", "mono"),
    Face("fonts-yrsa-rasa", f"{_T}/fonts-yrsa-rasa/Yrsa-Regular.ttf", "Yrsa", "serif"),
    Face("fonts-yrsa-rasa", f"{_T}/fonts-yrsa-rasa/Yrsa-Bold.ttf", "Yrsa", "serif", True),
    Face("fonts-yrsa-rasa", f"{_T}/fonts-yrsa-rasa/Rasa-Medium.ttf", "Rasa", "serif"),
    Face("fonts-cardo", f"{_T}/cardo/Cardo104s.ttf", "Cardo", "serif"),
    Face("fonts-cardo", f"{_T}/cardo/Cardob101.ttf", "Cardo", "serif", True),
    Face("fonts-ocr-a", f"{_T}/ocr-a/OCRA.ttf", "OCRA", "mono"),
    Face("fonts-ocr-a", f"{_T}/ocr-a/OCRACondensed.ttf", "OCRACondensed", "mono"),
    Face("fonts-monofur", f"{_T}/monofur/monof55.ttf", "monofur", "mono"),
    Face("fonts-glasstty", f"{_T}/glasstty/Glass_TTY_VT220.ttf", "Glass TTY VT220", "pixel"),
    Face("fonts-sixtyfour", f"{_T}/sixtyfour/C-64-Regular.ttf", "C-64", "pixel"),
    Face("fonts-gnutypewriter", f"{_T}/gnutypewriter/GNUTypewriter.ttf", "GNUTypewriter", "mono"),
    Face("fonts-pc", "/usr/share/fonts/pc/Px_IBM_VGA8.ttf", "Px IBM VGA8", "pixel"),
    Face("fonts-pc", "/usr/share/fonts/pc/Px_IBM_MDA.ttf", "Px IBM MDA", "pixel"),
)

# Faces drawn for labels, titles and units (readable at small sizes).
LABEL_FACES = tuple(f for f in FACES if f.family not in ("C-64", "Glass TTY VT220"))


def missing_font_packages() -> list[str]:
    return sorted({f.package for f in FACES if not Path(f.path).is_file()})


def require_fonts() -> None:
    missing = missing_font_packages()
    if missing:
        raise SystemExit(
            f"tests.foreign.render: missing font packages {' '.join(missing)} "
            f"(apt-get install -y {' '.join(missing)})"
        )


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(4, size))


@lru_cache(maxsize=64)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(path, lazy=True).getBestCmap())


def supports(face: Face, text: str) -> bool:
    cmap = _cmap(face.path)
    return all(ord(c) in cmap for c in text if c != " ")


@lru_cache(maxsize=64)
def _digit_ratio(path: str) -> float:
    """Ink height of a zero per pixel of font size."""
    _, top, _, bottom = _font(path, 200).getbbox("0", anchor="ls")
    return (bottom - top) / 200.0


# ----------------------------------------------------------------------------------------------------
# Values: legal, plausible and consistent across fields.
# ----------------------------------------------------------------------------------------------------


def _gen_from_parse(items: object, rng: np.random.Generator) -> str:
    out = []
    for op, arg in items:  # type: ignore[attr-defined]
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "IN":
            choices: list[str] = []
            for sub_op, sub_arg in arg:
                sub = str(sub_op)
                if sub == "LITERAL":
                    choices.append(chr(sub_arg))
                elif sub == "RANGE":
                    choices.extend(chr(c) for c in range(sub_arg[0], sub_arg[1] + 1))
                elif sub == "CATEGORY" and str(sub_arg) == "CATEGORY_DIGIT":
                    choices.extend("0123456789")
                else:
                    raise ValueError(f"pattern element {sub} not supported")
            out.append(choices[int(rng.integers(len(choices)))])
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            lo, hi, sub_items = arg
            hi = min(hi, lo + 3)
            for _ in range(int(rng.integers(lo, hi + 1))):
                out.append(_gen_from_parse(sub_items, rng))
        elif name == "BRANCH":
            _, branches = arg
            out.append(_gen_from_parse(branches[int(rng.integers(len(branches)))], rng))
        elif name == "SUBPATTERN":
            out.append(_gen_from_parse(arg[-1], rng))
        else:
            raise ValueError(f"pattern element {name} not supported")
    return "".join(out)


def text_from_pattern(pattern: str, rng: np.random.Generator) -> str:
    return _gen_from_parse(sre_parse.parse(pattern), rng)


def format_number(spec: FieldSpec, value: float) -> str:
    text = f"{value + 0.0:{'+' if spec.show_plus else ''}.{spec.decimals}f}"
    if text.lstrip("+-").strip("0.") == "":  # a zero never carries a minus
        text = ("+" if spec.show_plus else "") + text.lstrip("+-")
    return text


def _quantum(spec: FieldSpec) -> float:
    return spec.step if spec.step is not None else 10.0**-spec.decimals


def _snap(spec: FieldSpec, value: float) -> float:
    assert spec.range is not None
    lo, hi = spec.range
    q = _quantum(spec)
    v = round(value / q) * q
    while v > hi + 1e-9:
        v -= q
    while v < lo - 1e-9:
        v += q
    return round(v, spec.decimals)


def sample_number(spec: FieldSpec, rng: np.random.Generator) -> float:
    assert spec.range is not None
    lo, hi = spec.range
    mean, sd = spec.typical if spec.typical is not None else ((lo + hi) / 2, (hi - lo) / 6)
    return _snap(spec, float(np.clip(rng.normal(mean, sd), lo, hi)))


def sample_values(layout: DeviceLayout, rng: np.random.Generator) -> dict[str, str]:
    """One exam's field texts: header from the patterns and date format, numbers on their grid, and
    the layout's cross-field relations made to hold (reciprocal, ordered, mean)."""
    texts: dict[str, str] = {}
    numbers: dict[str, float] = {}
    for spec in layout.all_fields():
        if spec.kind == "date":
            assert spec.date_format is not None
            day = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
            texts[spec.name] = day.strftime(spec.date_format)
        elif spec.kind == "text":
            assert spec.pattern is not None
            texts[spec.name] = text_from_pattern(spec.pattern, rng)
        else:
            numbers[spec.name] = sample_number(spec, rng)
    checks = sorted(layout.checks, key=lambda c: ["reciprocal", "ordered", "mean"].index(c.rule))
    for check in checks:
        names = check.fields
        if check.rule == "reciprocal":
            target, source = (layout.field(n) for n in names)
            assert check.constant is not None and target.range is not None
            for _ in range(50):
                k = check.constant / numbers[source.name]
                if target.range[0] <= k <= target.range[1]:
                    break
                numbers[source.name] = sample_number(source, rng)
            numbers[target.name] = _snap(target, check.constant / numbers[source.name])
        elif check.rule == "ordered":
            low, high = names
            if numbers[high] < numbers[low]:
                numbers[low], numbers[high] = numbers[high], numbers[low]
                partner = {c.fields[0]: c.fields[1] for c in layout.checks if c.rule == "reciprocal"}
                if low in partner and high in partner:  # keep each K with its radius
                    a, b = partner[low], partner[high]
                    numbers[a], numbers[b] = numbers[b], numbers[a]
        else:
            target_name, *sources = names
            target = layout.field(target_name)
            numbers[target_name] = _snap(target, sum(numbers[s] for s in sources) / len(sources))
    for spec in layout.all_fields():
        if spec.name not in numbers:
            continue
        if spec.optional and rng.random() < 0.25:
            texts[spec.name] = BLANK_MARKER
            continue
        text = format_number(spec, numbers[spec.name])
        if "axis" in spec.name and spec.decimals == 0 and rng.random() < 0.2:
            text = text.zfill(3)  # some devices print axes with three digits
        texts[spec.name] = text
    return {spec.name: texts[spec.name] for spec in layout.all_fields()}


# ----------------------------------------------------------------------------------------------------
# Glyph runs: TrueType, seven-segment and 5x7 dot matrix, as float masks with a known baseline.
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Page design: a vendor's look drawn around the layout's boxes.
# ----------------------------------------------------------------------------------------------------

VENDORS = (
    "LUMERIS",
    "Optavue",
    "KERALINE",
    "Visiocore",
    "NORDLICHT MEDICAL",
    "Halden Optics",
    "IRISTEK",
    "Meridian Eye Systems",
    "OCULAB",
    "Seravis",
)

TITLES = {
    "optical_biometer": ("Optical Biometry", "BIOMETRY REPORT", "Axial Length / Keratometry", "IOL Data"),
    "autorefractor": ("AUTO REFRACTION / KERATOMETRY", "Refraction & K-Readings", "REF / KRT PRINT"),
    "noncontact_tonometer": ("NCT  Air-Puff Tonometry", "TONOMETRY", "IOP Measurement"),
    "scheimpflug_tomographer": ("Corneal Tomography", "Scheimpflug Overview", "TOPO / PACHY"),
    "specular_microscope": ("Endothelial Cell Analysis", "SPECULAR", "Cornea Endothelium"),
    "anterior_segment_oct": ("Anterior Segment OCT", "ANGLE / LENS ANALYSIS", "AS-OCT Report"),
}

SECTIONS = {
    "optical_biometer": ("Measurements", "BIOMETRY", "Results"),
    "autorefractor": ("REF", "Refraction / Keratometry", "Results"),
    "noncontact_tonometer": ("IOP", "Readings", "Measurement"),
    "scheimpflug_tomographer": ("Cornea Front", "Indices", "Summary"),
    "specular_microscope": ("Analysis", "Endothelium", "Cell statistics"),
    "anterior_segment_oct": ("Angle / Lens", "Biometry", "Parameters"),
}

LABELS = {
    "patient_id": ("Patient ID", "ID", "Pat. ID", "Patient", "PID"),
    "laterality": ("Eye", "Side", "Lat.", "Eye:"),
    "exam_date": ("Date", "Exam date", "Examined", "Date:"),
    "al_mm": ("AL", "Axial length", "AL axial"),
    "acd_mm": ("ACD", "Ant. chamber", "ACD ext."),
    "lt_mm": ("LT", "Lens thickn.", "Lens"),
    "wtw_mm": ("WTW", "White-to-white"),
    "k1_d": ("K1", "K flat", "Kf"),
    "k2_d": ("K2", "K steep", "Ks"),
    "km_d": ("Km", "K mean"),
    "cct_um": ("CCT", "Central pachy", "Pachymetry"),
    "sphere_d": ("S", "SPH", "Sphere"),
    "cyl_d": ("C", "CYL", "Cylinder"),
    "axis_deg": ("A", "AX", "Axis"),
    "r1_mm": ("R1", "r flat"),
    "r2_mm": ("R2", "r steep"),
    "iop1_mmhg": ("IOP 1", "#1", "Meas. 1"),
    "iop2_mmhg": ("IOP 2", "#2", "Meas. 2"),
    "iop3_mmhg": ("IOP 3", "#3", "Meas. 3"),
    "iop_mmhg": ("IOP avg", "AVG", "Mean"),
    "ata_mm": ("ATA", "Angle-to-angle"),
    "acd_endo_mm": ("ACD endo", "ACD (endo)"),
    "clr_um": ("CLR", "Lens rise"),
    "sts_mm": ("STS", "Sulcus-sulcus"),
    "vault_um": ("ICL vault", "Vault"),
    "pachy_min_um": ("Pachy min", "Thinnest"),
    "acv_ul": ("ACV", "Chamber vol."),
    "hwtw_mm": ("HWTW", "Hor. WTW"),
    "ecd_cells_mm2": ("CD", "ECD", "Cell density"),
    "cv_pct": ("CV", "Polymeg."),
    "hex_pct": ("HEX", "6A", "Hexagonality"),
}

UNITS = {
    "um": ("um", "µm", "microns"),
    "uL": ("uL", "µL", "µl"),
    "deg": ("deg", "°"),
    "cells/mm2": ("cells/mm2", "cells/mm²", "/mm²"),
    "D": ("D", "dpt", "D"),
}


@dataclass
class Theme:
    dark: bool
    bg: RGB
    ink: RGB  # values
    label: RGB
    accent: RGB
    rule: RGB
    fill: RGB  # value field fill


def _jitter(rng: np.random.Generator, c: RGB, amount: int = 8) -> RGB:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)  # type: ignore[return-value]


def _lum(c: RGB) -> float:
    return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def pick_theme(rng: np.random.Generator, style: str) -> Theme:
    dark = rng.random() < (0.4 if style == "screen" else 0.08)
    if dark:
        bg = _jitter(
            rng,
            [(12, 12, 16), (16, 26, 44), (22, 30, 34), (0, 34, 42), (32, 32, 32), (28, 18, 40)][
                int(rng.integers(6))
            ],
        )
        ink = _jitter(
            rng,
            [(250, 250, 250), (245, 232, 120), (130, 230, 255), (130, 255, 150), (255, 190, 80)][
                int(rng.integers(5))
            ],
        )
        label = _jitter(rng, [(170, 180, 190), (150, 200, 220), (200, 200, 200)][int(rng.integers(3))])
        accent = _jitter(
            rng,
            [(40, 110, 190), (0, 140, 140), (170, 60, 60), (90, 90, 160), (60, 140, 70)][
                int(rng.integers(5))
            ],
        )
        rule = _mix(bg, label, 0.35)
        fill = _mix(bg, (255, 255, 255), float(rng.uniform(0.05, 0.14)))
    else:
        if style == "print":
            bg = _jitter(
                rng,
                [(255, 255, 255), (250, 248, 240), (246, 244, 236), (252, 252, 250)][int(rng.integers(4))],
                4,
            )
        else:
            bg = _jitter(
                rng,
                [(255, 255, 255), (244, 246, 248), (236, 242, 250), (232, 235, 238), (246, 243, 232)][
                    int(rng.integers(5))
                ],
                4,
            )
        ink = _jitter(
            rng,
            [(0, 0, 0), (20, 30, 90), (10, 70, 30), (120, 20, 20), (45, 45, 45), (0, 60, 120)][
                int(rng.integers(6))
            ],
            10,
        )
        label = _jitter(
            rng, [(90, 90, 90), (60, 70, 90), (110, 110, 120), (20, 20, 20)][int(rng.integers(4))]
        )
        accent = _jitter(
            rng,
            [(20, 80, 160), (0, 120, 130), (150, 30, 40), (60, 60, 70), (40, 120, 60), (200, 110, 20)][
                int(rng.integers(6))
            ],
        )
        rule = _mix(bg, label, 0.4)
        fill = _mix(
            bg, [(255, 255, 255), (0, 0, 0), accent][int(rng.integers(3))], float(rng.uniform(0.05, 0.12))
        )
        if _lum(fill) < 0.75:
            fill = _mix(bg, (255, 255, 255), 0.5)
    return Theme(bool(dark), bg, ink, label, accent, rule, fill)


def pick_value_style(rng: np.random.Generator, layout: DeviceLayout, theme: Theme) -> ValueStyle:
    style = layout.template.style
    roll = rng.random()
    if style == "screen":
        engine = "seg7" if roll < 0.14 else "dots" if roll < 0.22 else "ttf"
    else:
        engine = "dots" if roll < 0.13 else "seg7" if roll < 0.18 else "ttf"
    packages = sorted({f.package for f in FACES})  # each package (design family) equally likely
    package = packages[int(rng.integers(len(packages)))]
    in_package = [f for f in FACES if f.package == package]
    face = in_package[int(rng.integers(len(in_package)))]
    narrow = [
        f for f in FACES if f.family in ("Roadgeek 2014 Series C", "OCRACondensed", "Tiresias PCfont", "Yrsa")
    ]
    fallback = narrow[int(rng.integers(len(narrow)))]
    seg = SegStyle(
        width=float(rng.uniform(0.48, 0.62)),
        thick=float(rng.uniform(0.1, 0.16)),
        gap=float(rng.uniform(0.08, 0.25)),
        slant=float(rng.choice([0.0, rng.uniform(4, 10)])),
        spacing=float(rng.uniform(0.15, 0.3)),
        ghost=float(rng.choice([0.0, 0.0, rng.uniform(0.06, 0.14)])),
    )
    dots = DotStyle(
        radius=float(rng.uniform(0.34, 0.5)),
        square=bool(rng.random() < 0.35),
        advance=6.0,
        ghost=float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.12)])),
    )
    lo = float(rng.uniform(0.45, 0.7))
    hi = min(0.9, lo + float(rng.uniform(0.05, 0.2)))
    align_roll = rng.random()
    align = (
        layout.template.value_align
        if align_roll < 0.5
        else ("centre" if align_roll < 0.75 else ("left", "right")[int(rng.integers(2))])
    )
    weight = int(rng.choice([0, 0, 0, 1, 2])) if not face.bold else 0
    color = theme.ink
    if rng.random() < 0.2:
        color = (
            _jitter(rng, theme.accent, 0) if abs(_lum(theme.accent) - _lum(theme.bg)) > 0.35 else theme.ink
        )
    return ValueStyle(
        engine, face, fallback, seg, dots, (lo, hi), float(rng.uniform(-0.01, 0.18)), weight, align, color
    )


def _label_face(rng: np.random.Generator, text: str) -> Face:
    for _ in range(20):
        face = LABEL_FACES[int(rng.integers(len(LABEL_FACES)))]
        if supports(face, text):
            return face
    return FACES[0]


def draw_text_in(
    draw: ImageDraw.ImageDraw,
    text: str,
    face: Face,
    px: float,
    zone: Rect,
    align: str,
    fill: RGB,
    anchor_y: float | None = None,
) -> None:
    """Text of about px pixels, shrunk to fit the zone, aligned in it, centred on anchor_y."""
    x, y, w, h = zone
    if w < 6 or h < 5:
        return
    size = max(5, round(px))
    while size > 5:
        font = _font(face.path, size)
        left, top, right, bottom = font.getbbox(text, anchor="ls")
        if right - left <= w and bottom - top <= h:
            break
        size -= 1
    font = _font(face.path, size)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    if right - left > w or bottom - top > h:
        return
    tx = (
        x - left
        if align == "left"
        else x + w - right
        if align == "right"
        else x + (w - (right - left)) / 2 - left
    )
    cy = y + h / 2 if anchor_y is None else anchor_y
    ty = cy - (top + bottom) / 2
    ty = min(max(ty, y - top), y + h - bottom)
    draw.text((round(tx), round(ty)), text, font=font, fill=fill, anchor="ls")


@dataclass
class Design:
    scale: float
    theme: Theme
    value: ValueStyle
    border: str
    label_face: Face
    unit_face: Face
    title_face: Face
    extras: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Geometry:
    """Where a page design may draw, in template pixels, worked out from the layout's boxes alone, so a
    layout of any size, with any frame_inset and with or without a title, gets a design that keeps off
    its boxes and inside the page. The shipped layouts (1000x700, boxes >= 64 px from every edge, the
    highest at y 100) get the nominal geometry: a frame within 22 px of the edge, content from 26 px,
    the title block at y 26-86."""

    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    frame_k: float  # frame drawn at this fraction of its nominal 22 px (0: no room for a frame)
    margin: float  # where content (title band, rules, label spans) may start, from each edge
    title_k: float  # the title block (nominal y 26-86) scaled into [margin, highest box - 6]

    def y(self, v: float) -> float:
        """A nominal title-block y (26..86) on this page."""
        return self.margin + (v - 26) * self.title_k

    def x(self, v: float) -> float:
        """A nominal title-block x offset from the left (or right) edge on this page."""
        return self.margin + (v - 26) * self.title_k

    @property
    def title_bottom(self) -> float:
        return self.y(86)

    def clear(self, rect: Rect, pad: float = 2.0) -> bool:
        """Whether rect (x, y, w, h) is inside the page and at least pad away from every box."""
        x, y, w, h = rect
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            return False
        for bx, by, bw, bh in self.boxes:
            if x < bx + bw + pad and bx - pad < x + w and y < by + bh + pad and by - pad < y + h:
                return False
        return True


def page_geometry(layout: DeviceLayout) -> Geometry:
    t = layout.template
    boxes = tuple(tuple(float(v) for v in spec.box) for spec in layout.all_fields())
    edge = min(min(x, y, t.width - x - w, t.height - y - h) for x, y, w, h in boxes)
    frame_k = min(1.0, max(0.0, (edge - 4) / 22))
    if frame_k < 0.25:
        frame_k = 0.0
    margin = max(2.0, min(26.0, edge - 4))
    top = min(y for _, y, _, _ in boxes)
    title_k = min(1.0, max(0.0, (top - 6 - margin) / 60))
    return Geometry(t.width, t.height, boxes, frame_k, margin, title_k)  # type: ignore[arg-type]


def _rows(
    boxes: dict[str, Rect], with_unit: set[str], left: float = 30.0, right: float = 970.0
) -> dict[str, tuple[float, float]]:
    """For each box, the free span left (for its label) and right (for its unit) on its row: a gap
    between two boxes is shared when the left one has a unit, else it is all the right one's label's."""
    spans: dict[str, tuple[float, float]] = {}
    for name, (x, y, w, h) in boxes.items():
        left_limit, right_limit = left, right
        for other, (ox, oy, ow, oh) in boxes.items():
            if other == name or oy >= y + h or oy + oh <= y:
                continue
            if ox + ow <= x:
                share = 0.45 if other in with_unit else 0.0
                left_limit = max(left_limit, ox + ow + 12 + share * (x - ox - ow))
            elif ox >= x + w:
                right_limit = min(right_limit, x + w + 0.5 * (ox - x - w))
        spans[name] = (left_limit, right_limit)
    return spans


def _free_panel(layout: DeviceLayout, geo: Geometry) -> tuple[float, float, float, float] | None:
    """A free area right of the measurement table (template pixels): x0, y0, x1, y1. On the shipped
    layouts: x 570-966 from below the header to y 636."""
    w, h = geo.width, geo.height
    left_column = [s.box[0] + s.box[2] for s in layout.fields if s.box[0] < w / 2]
    x0 = max(0.57 * w, max(left_column, default=0) + 130)
    x1 = w - geo.margin - 8
    y0 = max((s.box[1] + s.box[3] for s in layout.header), default=geo.title_bottom) + 26
    y1 = h - 64.0
    for spec in layout.fields:
        bx, by, bw, bh = spec.box
        if bx + bw + 90 > x0 and bx - 170 < x1 and by < y1:
            if by < (y0 + y1) / 2:
                y0 = max(y0, by + bh + 22)
            else:
                y1 = min(y1, by - 22)
    if x1 - x0 < 150 or y1 - y0 < 150 or not geo.clear((x0, y0, x1 - x0, y1 - y0), 10):
        return None
    return x0, y0, x1, y1


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    small = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def draw_panel(
    kind: str,
    rect: tuple[int, int, int, int],
    theme: Theme,
    rng: np.random.Generator,
    values: dict[str, str],
    page: np.ndarray,
) -> None:
    """A device picture in the free area: a map, a mosaic, a scan, a waveform, mires or bars."""
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    if w < 40 or h < 40:
        return
    region = page[y0:y1, x0:x1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "scheimpflug_tomographer":
        cx, cy, rad = w / 2, h / 2, min(w, h) * 0.44
        r = np.hypot(xx - cx, yy - cy) / rad
        ang = np.arctan2(yy - cy, xx - cx)
        field_ = (
            0.35 + 0.3 * r**2 + 0.15 * np.cos(2 * ang + rng.uniform(0, 3)) * r + 0.04 * _lowfreq(rng, h, w)
        )
        v8 = np.clip(field_ * 255, 0, 255).astype(np.uint8)
        cmap = [cv2.COLORMAP_JET, cv2.COLORMAP_TURBO, cv2.COLORMAP_RAINBOW][int(rng.integers(3))]
        colored = cv2.applyColorMap(v8, cmap)[:, :, ::-1]
        inside = r <= 1
        region[inside] = colored[inside]
        cv2.circle(region, (round(cx), round(cy)), round(rad), theme.label, 1, cv2.LINE_AA)
        for a in (0, 90):
            t = math.radians(a)
            p = (round(cx - rad * math.cos(t)), round(cy - rad * math.sin(t)))
            q = (round(cx + rad * math.cos(t)), round(cy + rad * math.sin(t)))
            cv2.line(region, p, q, theme.label, 1, cv2.LINE_AA)
    elif kind == "specular_microscope":
        cell = rng.uniform(14, 24) * max(1.0, w / 400)
        pts = []
        for j in range(int(h / (cell * 0.87)) + 2):
            for i in range(int(w / cell) + 2):
                px = (i + 0.5 * (j % 2)) * cell + rng.normal(0, cell * 0.12)
                py = j * cell * 0.87 + rng.normal(0, cell * 0.12)
                pts.append((float(np.clip(px, 0, w - 1)), float(np.clip(py, 0, h - 1))))
        sub = cv2.Subdiv2D((0, 0, w, h))
        sub.insert(pts)
        facets, _ = sub.getVoronoiFacetList([])
        mosaic = np.zeros((h, w), np.uint8)
        for facet in facets:
            grey = int(rng.integers(120, 200))
            cv2.fillConvexPoly(mosaic, np.round(facet).astype(np.int32), grey, cv2.LINE_AA)
            cv2.polylines(
                mosaic, [np.round(facet).astype(np.int32)], True, 30, max(1, round(cell / 9)), cv2.LINE_AA
            )
        mosaic = cv2.GaussianBlur(mosaic, (0, 0), 0.8)
        region[:] = np.repeat(mosaic[:, :, None], 3, axis=2)
    elif kind == "anterior_segment_oct":
        img = np.zeros((h, w), np.float32)
        cx, cy = w / 2, h * 0.95
        axes = (round(w * 0.55), round(h * 0.75))
        cv2.ellipse(img, (round(cx), round(cy)), axes, 0, 200, 340, 0.9, max(2, h // 40), cv2.LINE_AA)
        cv2.ellipse(
            img, (round(cx), round(cy + h * 0.05)), axes, 0, 205, 335, 0.5, max(1, h // 60), cv2.LINE_AA
        )
        cv2.line(
            img, (0, round(h * 0.62)), (round(w * 0.35), round(h * 0.55)), 0.7, max(2, h // 45), cv2.LINE_AA
        )
        cv2.line(
            img, (w, round(h * 0.62)), (round(w * 0.65), round(h * 0.55)), 0.7, max(2, h // 45), cv2.LINE_AA
        )
        cv2.ellipse(
            img, (round(cx), round(h * 0.75)), (round(w * 0.18), round(h * 0.12)), 0, 180, 360, 0.45, 2
        )
        img = cv2.GaussianBlur(img, (0, 0), 1.2) * rng.gamma(4.0, 0.25, img.shape).astype(np.float32)
        grey = np.clip(img * 255, 0, 255).astype(np.uint8)
        region[:] = np.repeat(grey[:, :, None], 3, axis=2)
    elif kind == "optical_biometer":
        region[:] = _mix(theme.bg, theme.label, 0.06)
        for i in range(1, 5):
            cv2.line(region, (0, i * h // 5), (w, i * h // 5), theme.rule, 1)
        peaks = sorted(rng.uniform(0.05, 0.95, 5))
        signal = 0.05 * _lowfreq(rng, 1, w, 12)[0] + 0.05
        for p in peaks:
            signal += rng.uniform(0.3, 0.9) * np.exp(-(((np.arange(w) / w) - p) ** 2) / (2 * 0.004**2))
        ys = h - 8 - np.clip(signal, 0, 1) * (h - 20)
        pts = np.stack([np.arange(w), ys], axis=1).astype(np.int32)
        cv2.polylines(region, [pts], False, theme.accent, 1 + w // 400, cv2.LINE_AA)
    elif kind == "autorefractor":
        region[:] = theme.bg
        cx, cy = w // 2, h // 2
        for i, rr in enumerate(np.linspace(0.1, 0.45, 7)):
            cv2.circle(region, (cx, cy), round(rr * min(w, h)), theme.label, 2 if i % 2 else 1, cv2.LINE_AA)
        axis = float(values.get("axis_deg", "90").lstrip("0") or "0")
        t = math.radians(axis)
        rr = 0.48 * min(w, h)
        p = (round(cx - rr * math.cos(t)), round(cy + rr * math.sin(t)))
        q = (round(cx + rr * math.cos(t)), round(cy - rr * math.sin(t)))
        cv2.line(region, p, q, theme.accent, 2, cv2.LINE_AA)
    elif kind == "noncontact_tonometer":
        region[:] = theme.bg
        names = [n for n in ("iop1_mmhg", "iop2_mmhg", "iop3_mmhg") if n in values]
        base = h - 10
        for i, n in enumerate(names):
            v = float(values[n])
            bh = int((h - 30) * v / 40)
            bx = int(w * (0.15 + 0.25 * i))
            cv2.rectangle(region, (bx, base - bh), (bx + int(w * 0.14), base), theme.accent, -1)
        cv2.line(region, (0, base), (w, base), theme.label, 1)
        if "iop_mmhg" in values:
            yv = base - int((h - 30) * float(values["iop_mmhg"]) / 40)
            for xs in range(0, w, 12):
                cv2.line(region, (xs, yv), (min(w, xs + 6), yv), theme.label, 1)
    else:  # a kind without a picture of its own: a target of rings and a cross, an axis line if any
        region[:] = theme.bg
        cx, cy, rad = w // 2, h // 2, 0.45 * min(w, h)
        rings = int(rng.integers(3, 7))
        for i in range(1, rings + 1):
            colour = theme.label if i % 2 else theme.rule
            cv2.circle(region, (cx, cy), round(rad * i / rings), colour, 1, cv2.LINE_AA)
        arm = round(rad * 1.05)
        cv2.line(region, (cx - arm, cy), (cx + arm, cy), theme.rule, 1, cv2.LINE_AA)
        cv2.line(region, (cx, cy - arm), (cx, cy + arm), theme.rule, 1, cv2.LINE_AA)
        axis_text = values.get("axis_deg", "")
        if re.fullmatch(r"\d+", axis_text):
            t = math.radians(float(axis_text))
            p = (round(cx - rad * math.cos(t)), round(cy + rad * math.sin(t)))
            q = (round(cx + rad * math.cos(t)), round(cy - rad * math.sin(t)))
            cv2.line(region, p, q, theme.accent, 2, cv2.LINE_AA)
    border = _mix(theme.bg, theme.label, 0.5)
    cv2.rectangle(region, (0, 0), (w - 1, h - 1), border, 1)


def _label_for(spec: FieldSpec, rng: np.random.Generator) -> str:
    options = LABELS.get(spec.name, (spec.label,))
    return options[int(rng.integers(len(options)))] if rng.random() < 0.7 else spec.label


def _unit_for(spec: FieldSpec, face: Face, rng: np.random.Generator, chosen: dict[str, str]) -> str:
    """The unit as this vendor spells it, the same for every field of an exam."""
    if spec.unit is None:
        return ""
    if spec.unit not in chosen:
        options = [u for u in UNITS.get(spec.unit, (spec.unit,)) if supports(face, u)] or [spec.unit]
        chosen[spec.unit] = options[int(rng.integers(len(options)))]
    return chosen[spec.unit]


DESIGN_TAG = 0x7E51D


def design_seed(seed: int, kind: str) -> list[int]:
    """The seed of a kind's fixed design (--fixed-design): the same for every exam of the kind whatever
    --count, --start or --kinds, and never an exam's own seed pair [seed, i]."""
    return [seed, DESIGN_TAG, zlib.crc32(kind.encode("utf-8")) or 1]


def _titles(layout: DeviceLayout) -> tuple[str, ...]:
    if layout.kind in TITLES:
        return TITLES[layout.kind]
    words = layout.kind.replace("_", " ")
    options = [layout.template.title, layout.description, words.title(), words.upper()]
    return tuple(dict.fromkeys(o for o in options if o))


def draw_static(
    layout: DeviceLayout,
    rng: np.random.Generator,
    border: bool,
    s: float,
    values: dict[str, str],
    template_panel: bool = False,
) -> tuple[np.ndarray, Design, dict[str, Rect], str]:
    """Everything but the values, at page scale s: the page as RGB uint8, its design, the field boxes
    in page pixels and how the boxes are decorated. values feeds what a device draws from its readings
    outside the boxes (eye badge, pictures); {} draws none of that. template_panel draws the picture at
    template scale and resizes it, so it is the same picture at any s."""
    t = layout.template
    geo = page_geometry(layout)
    width, height = round(t.width * s), round(t.height * s)
    theme = pick_theme(rng, t.style)
    vstyle = pick_value_style(rng, layout, theme)
    design = Design(
        scale=s,
        theme=theme,
        value=vstyle,
        border=(
            ["rule", "double", "band", "card", "corners", "rounded"][int(rng.integers(6))]
            if border
            else "none"
        ),
        label_face=_label_face(rng, "Patient ID Axial length"),
        unit_face=_label_face(rng, "mm"),
        title_face=_label_face(rng, "TITLE"),
    )
    if geo.frame_k == 0:  # boxes too near the edge for any frame
        design.border = "none"

    def sc(v: float) -> float:
        return v * s

    def fr(v: float) -> float:  # frame geometry, shrunk where the boxes come near the edge
        return v * geo.frame_k * s

    def ln(v: float) -> float:  # a length in the title block
        return v * geo.title_k * s

    def clear(rect: Rect, pad: float = 2.0) -> bool:  # rect in page pixels
        return geo.clear((rect[0] / s, rect[1] / s, rect[2] / s, rect[3] / s), pad)

    img = Image.new("RGB", (width, height), theme.bg)
    draw = ImageDraw.Draw(img)
    cm = geo.margin

    # -- frame (within 22 template px of the edge, where the layout draws nothing) -----------------
    dark_rule = (30, 30, 34) if not theme.dark else (150, 158, 168)
    if design.border == "rule":
        inset, lw = float(rng.uniform(5, 14)), max(1, round(fr(float(rng.uniform(2, 6)))))
        draw.rectangle(
            (fr(inset), fr(inset), width - 1 - fr(inset), height - 1 - fr(inset)), outline=dark_rule, width=lw
        )
    elif design.border == "double":
        c = theme.accent if rng.random() < 0.5 else dark_rule
        draw.rectangle(
            (fr(5), fr(5), width - 1 - fr(5), height - 1 - fr(5)), outline=c, width=max(1, round(fr(3)))
        )
        draw.rectangle(
            (fr(13), fr(13), width - 1 - fr(13), height - 1 - fr(13)), outline=c, width=max(1, round(fr(1)))
        )
    elif design.border == "band":
        m = fr(float(rng.uniform(8, 18)))
        draw.rectangle((0, 0, width - 1, height - 1), outline=theme.accent, width=max(2, round(m)))
    elif design.border == "card":
        outer = _mix(
            theme.bg, (0, 0, 0) if not theme.dark else (255, 255, 255), float(rng.uniform(0.15, 0.35))
        )
        m = max(1, round(fr(float(rng.uniform(8, 16)))))
        draw.rectangle((0, 0, width - 1, height - 1), outline=outer, width=m)
        draw.line(
            (m, height - m, width - m, height - m),
            fill=_mix(outer, (0, 0, 0), 0.3),
            width=max(1, round(fr(2))),
        )
        draw.line(
            (width - m, m, width - m, height - m),
            fill=_mix(outer, (0, 0, 0), 0.3),
            width=max(1, round(fr(2))),
        )
    elif design.border == "corners":
        c, arm, i = dark_rule, fr(60), fr(10)
        lw = max(1, round(fr(3)))
        for cx, cy, dx, dy in (
            (i, i, 1, 1),
            (width - 1 - i, i, -1, 1),
            (i, height - 1 - i, 1, -1),
            (width - 1 - i, height - 1 - i, -1, -1),
        ):
            draw.line((cx, cy, cx + dx * arm, cy), fill=c, width=lw)
            draw.line((cx, cy, cx, cy + dy * arm), fill=c, width=lw)
        draw.rectangle((fr(16), fr(16), width - 1 - fr(16), height - 1 - fr(16)), outline=theme.rule, width=1)
    elif design.border == "rounded":
        draw.rounded_rectangle(
            (fr(9), fr(9), width - 1 - fr(9), height - 1 - fr(9)),
            radius=fr(18),
            outline=theme.accent,
            width=max(1, round(fr(2))),
        )

    # -- title band, logo, eye badge (above the highest box; none where there is no room) -------------
    title_room = geo.title_k >= 0.3

    def ty(v: float) -> float:
        return sc(geo.y(v))

    def tx(v: float) -> float:
        return sc(geo.x(v))

    vendor = VENDORS[int(rng.integers(len(VENDORS)))]
    titles = _titles(layout)
    title = titles[int(rng.integers(len(titles)))]
    band = rng.random() < 0.5
    band_rect = (sc(cm), ty(26), width - sc(cm), ty(86))
    title_color = theme.label if not band else ((255, 255, 255) if _lum(theme.accent) < 0.6 else (0, 0, 0))
    if band and title_room:
        draw.rectangle(band_rect, fill=theme.accent)
    logo_left = rng.random() < 0.6
    lx = tx(36) if logo_left else width - tx(36) - ln(44)
    logo_c = theme.accent if not band else title_color
    shape = int(rng.integers(3))
    if not title_room:
        pass
    elif shape == 0:
        draw.ellipse((lx, ty(34), lx + ln(44), ty(78)), outline=logo_c, width=max(1, round(ln(3))))
        draw.ellipse((lx + ln(14), ty(48), lx + ln(30), ty(64)), fill=logo_c)
    elif shape == 1:
        draw.polygon(
            [(lx, ty(76)), (lx + ln(22), ty(34)), (lx + ln(44), ty(76))],
            outline=logo_c,
            width=max(1, round(ln(3))),
        )
        draw.line((lx + ln(8), ty(64), lx + ln(36), ty(64)), fill=logo_c, width=max(1, round(ln(2))))
    else:
        draw.rounded_rectangle((lx, ty(36), lx + ln(44), ty(76)), radius=ln(8), fill=logo_c)
        draw_text_in(
            draw,
            vendor[:2].upper(),
            design.title_face,
            ln(20),
            (lx + ln(4), ty(40), ln(36), ln(32)),
            "centre",
            theme.bg if not band else theme.accent,
        )
    tx0 = tx(92) if logo_left else tx(40)
    bx1 = width - tx(40) - (ln(56) if not logo_left else 0)
    title_zone = (tx0, ty(32), min(ln(600), bx1 - ln(208) - tx0), ln(46))
    title_text = f"{vendor}  {title}" if rng.random() < 0.6 else title
    title_px = ln(float(rng.uniform(22, 30)))
    if title_room:
        draw_text_in(draw, title_text, design.title_face, title_px, title_zone, "left", title_color)
    lat = values.get("laterality", "")
    if lat in ("OD", "OS") and rng.random() < 0.7:
        badge = {"OD": ("R", "RIGHT", "Right eye", "OD (R)"), "OS": ("L", "LEFT", "Left eye", "OS (L)")}[lat]
        btext = badge[int(rng.integers(len(badge)))]
        if title_room:
            draw_text_in(
                draw,
                btext,
                design.title_face,
                ln(24),
                (bx1 - ln(200), ty(36), ln(200), ln(40)),
                "right",
                title_color,
            )

    boxes = {
        spec.name: (sc(spec.box[0]), sc(spec.box[1]), sc(spec.box[2]), sc(spec.box[3]))
        for spec in layout.all_fields()
    }
    spans = _rows(
        {spec.name: tuple(float(v) for v in spec.box) for spec in layout.all_fields()},  # type: ignore[misc]
        {spec.name for spec in layout.all_fields() if spec.unit},
        cm + 4,
        t.width - cm - 4,
    )

    # -- table furniture (each piece only where it keeps off the boxes) -----------------------------------
    header_strip = rng.random() < 0.4
    if header_strip:
        ys = [spec.box[1] for spec in layout.header]
        ye = [spec.box[1] + spec.box[3] for spec in layout.header]
        top = max(min(ys) - 8, geo.title_bottom + 2 if title_room else cm)
        draw.rectangle(
            (sc(cm), sc(top), width - sc(cm), sc(max(ye) + 8)),
            fill=_mix(theme.bg, theme.accent, float(rng.uniform(0.06, 0.14))),
        )
    field_rows = sorted({spec.box[1] for spec in layout.fields})
    first_row = field_rows[0] if field_rows else 180
    last_bottom = max((spec.box[1] + spec.box[3] for spec in layout.fields), default=first_row)
    if rng.random() < 0.75:
        heading = SECTIONS.get(layout.kind, ("Results", "Measurements", "Readings"))
        htext = heading[int(rng.integers(len(heading)))]
        if rng.random() < 0.4:
            htext = htext.upper()
        zone = (sc(cm + 4), sc(first_row - 33), sc(300), sc(19))
        if clear(zone):
            draw_text_in(
                draw,
                htext,
                design.label_face,
                sc(15),
                zone,
                "left",
                theme.accent if abs(_lum(theme.accent) - _lum(theme.bg)) > 0.3 else theme.label,
            )

    def rule(x0: float, y0: float, x1: float, y1: float, lw: int = 1) -> None:  # page pixels
        if clear((x0 - lw, y0 - lw, x1 - x0 + 2 * lw, y1 - y0 + 2 * lw)):
            draw.line((x0, y0, x1, y1), fill=theme.rule, width=lw)

    grid = rng.random() < 0.55
    table_right = sc(min(540.0, t.width - cm - 4))
    if grid:
        for ry in field_rows:
            rule(sc(cm + 4), sc(ry - 12), table_right, sc(ry - 12))
        rule(sc(cm + 4), sc(last_bottom + 12), table_right, sc(last_bottom + 12))
        if rng.random() < 0.5:
            col_x = min(spec.box[0] for spec in layout.fields) - 10
            rule(sc(col_x), sc(first_row - 12), sc(col_x), sc(last_bottom + 12))
    elif rng.random() < 0.5:
        y = sc(first_row - 16)
        rule(sc(cm + 4), y, width - sc(cm + 4), y, max(1, round(sc(1.5))))

    box_deco = ["none", "none", "fill", "outline", "underline", "fill_outline"][int(rng.integers(6))]
    for bx, by, bw, bh in boxes.values():
        e = sc(float(rng.uniform(0, 3)))
        if box_deco in ("fill", "fill_outline"):
            draw.rectangle(
                (bx - e, by - e, bx + bw + e, by + bh + e),
                fill=theme.fill,
                outline=theme.rule if box_deco == "fill_outline" else None,
            )
        elif box_deco == "outline":
            draw.rectangle((bx - e - 1, by - e - 1, bx + bw + e + 1, by + bh + e + 1), outline=theme.rule)
        elif box_deco == "underline":
            draw.line((bx, by + bh + sc(3), bx + bw, by + bh + sc(3)), fill=theme.rule, width=1)

    # -- labels and units --------------------------------------------------------------------------------
    label_px = sc(float(rng.uniform(15, 22)))
    upper = rng.random() < 0.3
    colon = rng.random() < 0.25
    label_align = "right" if rng.random() < 0.6 else "left"
    unit_in_label = rng.random() < 0.12
    unit_brackets = ["[{}]", "({})", "/ {}"][int(rng.integers(3))]
    units: dict[str, str] = {}
    gap = sc(float(rng.uniform(8, 18)) + (10 if grid else 0))
    for spec in layout.all_fields():
        bx, by, bw, bh = boxes[spec.name]
        left_limit, right_limit = spans[spec.name]
        text = _label_for(spec, rng)
        if upper:
            text = text.upper()
        unit = _unit_for(spec, design.unit_face, rng, units)
        if unit and unit_in_label:
            text = f"{text} {unit_brackets.format(unit)}"
            unit = ""
        if colon and not text.endswith(":"):
            text += ":"
        if not supports(design.label_face, text):
            continue
        zone = (sc(left_limit), by, bx - gap - sc(left_limit), bh)
        draw_text_in(draw, text, design.label_face, label_px, zone, label_align, theme.label)
        if unit and rng.random() < 0.93:
            ugap = max(gap * 0.8, sc(8))
            uzone = (bx + bw + ugap, by, sc(right_limit) - (bx + bw + ugap), bh)
            draw_text_in(
                draw,
                unit,
                design.unit_face,
                label_px * float(rng.uniform(0.8, 1.05)),
                uzone,
                "left",
                theme.label,
            )

    # -- footer (below the lowest field, inside the frame) -------------------------------------------------
    if rng.random() < 0.7:
        fy = max(last_bottom + 14, t.height - 56)
        fbottom = t.height - max(2.0, cm - 2)
        rule(sc(cm + 4), sc(fy), width - sc(cm + 4), sc(fy))
        stamp = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
        footer = [
            f"SW {int(rng.integers(1, 6))}.{int(rng.integers(0, 10))}.{int(rng.integers(0, 30))}",
            f"Operator {chr(65 + int(rng.integers(26)))}{chr(65 + int(rng.integers(26)))}",
            f"Printed {stamp.isoformat()}",
            "Page 1/1",
        ]
        sep = ["   |   ", "  -  ", "     ", "  /  "][int(rng.integers(4))]
        ftext = sep.join(footer[: int(rng.integers(2, 5))])
        if not supports(design.label_face, ftext):
            ftext = "     ".join(footer[:2])
        zone = (sc(cm + 4), sc(fy + 4), sc(min(700, t.width - 2 * cm - 8)), sc(min(26, fbottom - fy - 4)))
        if zone[3] >= sc(8) and clear(zone):
            draw_text_in(draw, ftext, design.label_face, sc(12), zone, "left", theme.label)

    page = np.array(img)

    # -- picture in the free area -----------------------------------------------------------------------
    panel = _free_panel(layout, geo)
    if panel is not None and rng.random() < 0.8:
        px0, py0, px1, py1 = panel
        rect = (round(sc(px0)), round(sc(py0)), round(sc(px1)), round(sc(py1)))
        if template_panel:
            tw, th = round(px1 - px0), round(py1 - py0)
            tile = np.empty((th, tw, 3), np.uint8)
            tile[:] = theme.bg
            draw_panel(layout.kind, (0, 0, tw, th), theme, rng, values, tile)
            size = (rect[2] - rect[0], rect[3] - rect[1])
            interpolation = cv2.INTER_AREA if size[0] < tw else cv2.INTER_LINEAR
            page[rect[1] : rect[3], rect[0] : rect[2]] = cv2.resize(tile, size, interpolation=interpolation)
        else:
            draw_panel(layout.kind, rect, theme, rng, values, page)
    return page, design, boxes, box_deco


def render_page(
    layout: DeviceLayout,
    values: dict[str, str],
    rng: np.random.Generator,
    border: bool,
    page_scale: float | None = None,
    fixed: list[int] | None = None,
) -> tuple[np.ndarray, Design, dict[str, Rect], float]:
    """The undamaged page as RGB uint8, its design, the field boxes in page pixels and the smallest
    digit height drawn. page_scale fixes the scale (else random 0.8-1.6). fixed: a design seed (see
    design_seed); the static drawing then comes from it alone, shows nothing drawn from the values, and
    each value's size from it and the field, so every exam of the kind shows the same screen."""
    s = float(rng.uniform(0.8, 1.6))  # drawn even when fixed, so the rest of the exam is unchanged
    if page_scale is not None:
        s = page_scale
    if fixed is None:
        page, design, boxes, box_deco = draw_static(layout, rng, border, s, values)
    else:
        page, design, boxes, box_deco = draw_static(
            layout, np.random.default_rng(fixed), border, s, {}, template_panel=True
        )
    theme, vstyle = design.theme, design.value

    # -- values --------------------------------------------------------------------------------------------
    min_digit = float("inf")
    for j, spec in enumerate(layout.all_fields()):
        size_rng = None if fixed is None else np.random.default_rng([*fixed, 1 + j])
        placed = fit_value(values[spec.name], boxes[spec.name], vstyle, rng, s, size_rng)
        color = vstyle.color
        if box_deco in ("fill", "fill_outline") and abs(_lum(color) - _lum(theme.fill)) < 0.4:
            color = theme.ink
        composite(page, placed, color)
        min_digit = min(min_digit, placed.digit_h)
    return page, design, boxes, min_digit


# ----------------------------------------------------------------------------------------------------
# Damage
# ----------------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    data: bytes
    ext: str
    notes: list[str]


def _bg_estimate(img: np.ndarray) -> tuple[int, int, int]:
    corners = np.concatenate(
        [
            img[:4, :4].reshape(-1, 3),
            img[:4, -4:].reshape(-1, 3),
            img[-4:, :4].reshape(-1, 3),
            img[-4:, -4:].reshape(-1, 3),
        ]
    )
    return tuple(int(v) for v in np.median(corners, axis=0))  # type: ignore[return-value]


def _affine(img: np.ndarray, angle: float, dx: float, dy: float, fill: tuple[int, int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, 2] += dx
    m[1, 2] += dy
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )


def _encode(img: np.ndarray, jpeg_quality: int | None) -> tuple[bytes, str]:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if jpeg_quality is None:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        ext = ".png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        ext = ".jpg"
    assert ok
    return buf.tobytes(), ext


def damage_light(img: np.ndarray, rng: np.random.Generator, scale: float) -> Encoded:
    angle = float(rng.uniform(-2, 2))
    dx, dy = (float(v) for v in rng.uniform(-10, 10, 2) * scale)
    out = _affine(img, angle, dx, dy, _bg_estimate(img))
    notes = [f"rot {angle:.2f}", f"shift {dx:.0f},{dy:.0f}"]
    roll = rng.random()
    quality = None
    if roll < 0.45 or roll >= 0.8:
        quality = int(rng.integers(70, 96))
        notes.append(f"jpeg {quality}")
    if roll >= 0.45:
        sigma = float(rng.uniform(0.4, 0.9))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        notes.append(f"blur {sigma:.2f}")
    data, ext = _encode(out, quality)
    return Encoded(data, ext, notes)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = np.array(
        [(120, 84, 52), (70, 70, 74), (180, 170, 150), (30, 30, 34), (92, 110, 130), (150, 120, 95)][
            int(rng.integers(6))
        ],
        np.float32,
    )
    texture = 18 * _lowfreq(rng, h, w, 5)[:, :, None]
    if rng.random() < 0.5:  # wood / fabric streaks
        streaks = _lowfreq(rng, 1, w, 60)[0] * 10
        texture = texture + np.repeat(streaks[None, :, None], h, axis=0)
    grain = rng.normal(0, 5, (h, w, 1)).astype(np.float32)
    return np.clip(base + texture + grain, 0, 255)


def _curl(page: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = page.shape[:2]
    amp = float(rng.uniform(0.006, 0.018)) * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:  # a bow across the width
        dy = amp * (2 * xx / w - 1) ** 2
    else:  # one edge lifting
        edge = rng.random() < 0.5
        u = xx / w if edge else 1 - xx / w
        dy = amp * np.clip((u - 0.6) / 0.4, 0, 1) ** 2 * 2
    map_y = yy - dy + amp
    shade = 1 - 0.12 * (dy / (2 * amp))
    warped = cv2.remap(page.astype(np.float32), xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = cv2.remap(alpha, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return warped * shade[:, :, None], a


def _photo(img: np.ndarray, rng: np.random.Generator, style: str, notes: list[str]) -> np.ndarray:
    h, w = img.shape[:2]
    page = img.astype(np.float32)
    alpha = np.ones((h, w), np.float32)
    if style == "screen" and rng.random() < 0.7:
        period = int(rng.integers(2, 5))
        depth = float(rng.uniform(0.06, 0.16))
        page[::period] *= 1 - depth
        notes.append(f"scanlines {period}px")
    if style == "print" and rng.random() < 0.6:
        page, alpha = _curl(page, alpha, rng)
        notes.append("curl")
    fill = float(rng.uniform(0.74, 0.9))
    cw, ch = round(w / fill), round(h / fill * float(rng.uniform(0.95, 1.1)))
    angle = math.radians(float(rng.uniform(-5, 5)))
    cx, cy = cw / 2 + rng.uniform(-0.04, 0.04) * cw, ch / 2 + rng.uniform(-0.04, 0.04) * ch
    src = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float32)
    dst = []
    for x, y in src:
        rx, ry = x - w / 2, y - h / 2
        qx = cx + rx * math.cos(angle) - ry * math.sin(angle)
        qy = cy + rx * math.sin(angle) + ry * math.cos(angle)
        dst.append((qx + rng.uniform(-0.045, 0.045) * w, qy + rng.uniform(-0.045, 0.045) * h))
    m = cv2.getPerspectiveTransform(src, np.array(dst, np.float32))
    warped = cv2.warpPerspective(page, m, (cw, ch), flags=cv2.INTER_LINEAR)
    a = cv2.warpPerspective(alpha, m, (cw, ch), flags=cv2.INTER_LINEAR)[:, :, None]
    bg = _background(rng, ch, cw)
    if style == "print":  # the sheet's shadow on the desk
        shadow = cv2.GaussianBlur(a[:, :, 0], (0, 0), 6)
        shadow = np.roll(shadow, (6, 6), axis=(0, 1))
        bg = bg * (1 - 0.35 * shadow[:, :, None])
    out = bg * (1 - a) + warped * a
    if style == "screen" and rng.random() < 0.7:
        yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
        f1 = float(rng.uniform(0.18, 0.33))
        t1 = float(rng.uniform(0, math.pi))
        f2 = f1 * float(rng.uniform(0.92, 1.08))
        t2 = t1 + float(rng.uniform(0.02, 0.12))
        wave = np.sin(f1 * (xx * math.cos(t1) + yy * math.sin(t1))) + np.sin(
            f2 * (xx * math.cos(t2) + yy * math.sin(t2))
        )
        out *= (1 + float(rng.uniform(0.03, 0.08)) * wave)[:, :, None] * 1.0
        notes.append("moire")
    notes.append(f"photo rot {math.degrees(angle):.1f} fill {fill:.2f}")
    return out


def damage_full(
    img: np.ndarray, rng: np.random.Generator, style: str, scale: float, min_digit: float
) -> Encoded:
    notes: list[str] = []
    if rng.random() < 0.55:
        out = _photo(img, rng, style, notes)
    else:
        bg = _bg_estimate(img)
        pad = round(0.05 * max(img.shape[:2]))
        padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=bg)
        angle = float(rng.uniform(-5, 5))
        out = _affine(
            padded, angle, *(float(v) for v in rng.uniform(-0.02, 0.02, 2) * img.shape[1]), bg
        ).astype(np.float32)
        notes.append(f"scan rot {angle:.1f}")
        if style == "screen" and rng.random() < 0.3:
            out[:: int(rng.integers(2, 5))] *= float(rng.uniform(0.86, 0.94))
            notes.append("scanlines")
    h, w = out.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.65:  # uneven light
        t = float(rng.uniform(0, 2 * math.pi))
        g = (xx / w - 0.5) * math.cos(t) + (yy / h - 0.5) * math.sin(t)
        lo = float(rng.uniform(0.62, 0.85))
        light = lo + (1 - lo) * (g - g.min()) / (np.ptp(g) + 1e-6)
        if rng.random() < 0.5:
            r = np.hypot(xx / w - 0.5, yy / h - 0.5)
            light *= 1 - 0.25 * r**2
        out *= light[:, :, None]
        notes.append(f"light {lo:.2f}")
    if rng.random() < 0.35:  # shadow band
        t = float(rng.uniform(0, math.pi))
        d = (xx - rng.uniform(0.2, 0.8) * w) * math.cos(t) + (yy - rng.uniform(0.2, 0.8) * h) * math.sin(t)
        half = float(rng.uniform(0.05, 0.15)) * min(h, w)
        soft = float(rng.uniform(0.02, 0.06)) * min(h, w)
        band = 1 / (1 + np.exp((np.abs(d) - half) / soft))
        depth = float(rng.uniform(0.2, 0.42))
        out *= (1 - depth * band)[:, :, None]
        notes.append(f"shadow {depth:.2f}")
    if rng.random() < 0.3:  # glare
        gx, gy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        sigma = float(rng.uniform(0.05, 0.12)) * min(h, w)
        strength = float(rng.uniform(0.3, 0.55))
        glare = strength * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma**2))
        out = out + (255 - out) * glare[:, :, None]
        notes.append(f"glare {strength:.2f}")
    out = np.clip(out, 0, 255)
    severity = 0
    blur_roll = rng.random()
    if blur_roll < 0.25:
        length = int(rng.integers(3, 8))
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1)
        k = cv2.warpAffine(k, rot, (length, length))
        out = cv2.filter2D(out, -1, k / k.sum())
        notes.append(f"motion {length}")
        severity += 1
    elif blur_roll < 0.45:
        radius = float(rng.uniform(1.0, 2.2)) * max(1.0, scale / 1.2)
        size = int(2 * math.ceil(radius) + 1)
        k = np.zeros((size, size), np.float32)
        cv2.circle(k, (size // 2, size // 2), round(radius), 1.0, -1, cv2.LINE_AA)
        out = cv2.filter2D(out, -1, k / k.sum())
        notes.append(f"defocus {radius:.1f}")
        severity += 1
    elif blur_roll < 0.6:
        sigma = float(rng.uniform(0.6, 1.3))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        notes.append(f"gauss {sigma:.1f}")
    if rng.random() < 0.4:
        f = float(rng.uniform(0.5, 0.7))
        f = max(f, 11.0 / max(min_digit, 1.0), 0.62 if severity else 0.0)  # digits stay >= 11 px
        if f <= 0.75:
            small = cv2.resize(
                out, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
            )
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            notes.append(f"resample {f:.2f}")
            severity += 1
    if rng.random() < 0.5:
        sigma = float(rng.uniform(2, 9))
        out = out + rng.normal(0, sigma, out.shape).astype(np.float32)
        notes.append(f"noise {sigma:.1f}")
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:
        density = float(rng.uniform(0.001, 0.006))
        u = rng.random(out.shape[:2])
        out[u < density / 2] = 0
        out[u > 1 - density / 2] = 255
        notes.append(f"s&p {density:.3f}")
    quality = None
    if rng.random() < 0.75:
        quality = int(rng.integers(20, 91)) if severity == 0 else int(rng.integers(35, 91))
        notes.append(f"jpeg {quality}")
    data, ext = _encode(out, quality)
    return Encoded(data, ext, notes)


# ----------------------------------------------------------------------------------------------------
# Exams
# ----------------------------------------------------------------------------------------------------


@dataclass
class Exam:
    name: str
    kind: str
    fields: dict[str, str]
    data: bytes
    notes: list[str]


def render_exam(
    layout: DeviceLayout,
    seed: int,
    index: int,
    damage: str,
    border: bool,
    show_boxes: bool = False,
    page_scale: float | None = None,
    fixed_design: bool = False,
) -> Exam:
    """Exam index of the set seeded by seed: its values, scale and damage from the seed pair [seed,
    index]; its design from the same pair, or with fixed_design from the kind's design seed."""
    rng = np.random.default_rng([seed, index])
    values = sample_values(layout, rng)
    fixed = design_seed(seed, layout.kind) if fixed_design else None
    page, design, boxes, min_digit = render_page(layout, values, rng, border, page_scale, fixed)
    if show_boxes:  # inspection only: the layout's boxes in red, before any damage
        for bx, by, bw, bh in boxes.values():
            cv2.rectangle(page, (round(bx), round(by)), (round(bx + bw), round(by + bh)), (255, 0, 0), 1)
    notes = [
        f"scale {design.scale:.2f}",
        f"engine {design.value.engine}",
        f"face {design.value.face.family}",
        f"border {design.border}",
        f"dark {design.theme.dark}",
    ]
    if damage == "none":
        data, ext = _encode(page, None)
    elif damage == "light":
        enc = damage_light(page, rng, design.scale)
        data, ext, notes = enc.data, enc.ext, notes + enc.notes
    elif damage == "full":
        enc = damage_full(page, rng, layout.template.style, design.scale, min_digit)
        data, ext, notes = enc.data, enc.ext, notes + enc.notes
    else:
        raise ValueError(f"unknown damage {damage!r}")
    name = f"foreign_{seed}_{index:05d}{ext}"
    return Exam(name, layout.kind, values, data, notes)


def render_set(
    out: Path,
    count: int,
    seed: int,
    damage: str,
    border: bool,
    show_boxes: bool = False,
    verbose: bool = False,
    *,
    layout_dirs: Sequence[Path] = (),
    kinds: Sequence[str] | None = None,
    page_scale: float | None = None,
    fixed_design: bool = False,
    start: int = 0,
) -> list[Exam]:
    """Exams start .. start+count-1; exam i is of kind kinds[i % len(kinds)] (default: every kind
    known, the shipped ones and those in layout_dirs, sorted). An unknown kind raises UnknownDeviceKind."""
    require_fonts()
    cv2.setNumThreads(1)
    registry = load_layouts(extra=list(layout_dirs))
    chosen = list(kinds) if kinds else registry.kinds()
    layouts = [registry[k] for k in chosen]
    out.mkdir(parents=True, exist_ok=True)
    exams = []
    with (out / "truth.jsonl").open("w", encoding="utf-8") as truth:
        for i in range(start, start + count):
            layout = layouts[i % len(layouts)]
            exam = render_exam(layout, seed, i, damage, border, show_boxes, page_scale, fixed_design)
            (out / exam.name).write_bytes(exam.data)
            truth.write(
                json.dumps(
                    {"file": exam.name, "device_kind": exam.kind, "fields": exam.fields, "notes": exam.notes}
                )
                + "\n"
            )
            if verbose:
                print(exam.name, exam.kind, "; ".join(exam.notes), file=sys.stderr)
            exams.append(exam)
    return exams


def _page_scale(text: str) -> float:
    value = float(text)
    if not 0.25 <= value <= 4:
        raise argparse.ArgumentTypeError(f"page scale {text} is outside 0.25-4")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--damage", choices=("none", "light", "full"), default="none")
    parser.add_argument("--no-border", action="store_true", help="no frame of any kind around the page")
    parser.add_argument(
        "--layouts",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of extra layout YAMLs (device kinds the project does not ship); repeatable",
    )
    parser.add_argument("--kinds", nargs="+", metavar="K", help="draw only these kinds (default: all known)")
    parser.add_argument(
        "--page-scale",
        type=_page_scale,
        metavar="S",
        help="page pixels per template pixel (default: random 0.8-1.6 per exam); with 1 and --damage "
        "none an exam is template.width x template.height with every value in its box",
    )
    parser.add_argument(
        "--fixed-design",
        action="store_true",
        help="one design per kind (from --seed and the kind): every exam of a kind shows the same screen, "
        "only values (and damage, and the scale unless --page-scale) change",
    )
    parser.add_argument("--start", type=int, default=0, help="index of the first exam (default 0)")
    parser.add_argument("--show-boxes", action="store_true", help="inspection only: outline the layout boxes")
    parser.add_argument("--verbose", action="store_true", help="print each exam's design and damage")
    args = parser.parse_args(argv)
    if args.count < 0 or args.start < 0:
        parser.error("--count and --start take a number >= 0")
    try:
        registry = load_layouts(extra=list(args.layouts))
    except LayoutError as exc:
        print(f"tests.foreign.render: {exc}", file=sys.stderr)
        return 2
    unknown = [k for k in args.kinds or () if k not in registry]
    if unknown:
        print(
            f"tests.foreign.render: unknown device kind {', '.join(unknown)} "
            f"(known: {', '.join(registry.kinds())})",
            file=sys.stderr,
        )
        return 2
    exams = render_set(
        args.out,
        args.count,
        args.seed,
        args.damage,
        not args.no_border,
        args.show_boxes,
        args.verbose,
        layout_dirs=args.layouts,
        kinds=args.kinds,
        page_scale=args.page_scale,
        fixed_design=args.fixed_design,
        start=args.start,
    )
    print(f"wrote {len(exams)} exams to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
