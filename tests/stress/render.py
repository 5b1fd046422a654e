"""A second, independent renderer of the device layouts, for measuring how the OCR generalises.

It reads only the layout YAML files (eyeops/devices/layouts/*.yaml, the public contract of a device
kind) and draws each exam with its own code: other font families than the project uses anywhere,
other colours, decorations and placements, and real-world damage (photos of screens, blur, JPEG...).

    python -m tests.stress.render --count 60 --seed 1 --out /tmp/stress [--no-border] [--damage full]

writes ``<index>-<device_kind>.png`` (or ``.jpg`` when the damage model chose JPEG compression) and
``truth.jsonl``: one line per exam, ``{"file", "device_kind", "fields": {name: text as drawn}, "meta"}``.
An optional field left blank on screen is absent from ``fields``; one drawn as ``---`` is ``"---"``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from PIL import Image, ImageDraw, ImageFont

LAYOUT_DIR = Path(__file__).resolve().parents[2] / "eyeops" / "devices" / "layouts"
FONT_ROOT = Path("/usr/share/fonts")
BLANK = "---"
DAMAGE_LEVELS = ("none", "light", "full")

# Debian packages holding the stress fonts: families the project's training and evaluation never use.
STRESS_FONT_PACKAGES = (
    "fonts-b612",
    "fonts-ocr-b",
    "fonts-mononoki",
    "fonts-anonymous-pro",
    "fonts-oxygen",
    "fonts-cabin",
    "fonts-comfortaa",
    "fonts-league-spartan",
    "fonts-linuxlibertine",
    "fonts-crosextra-caladea",
    "fonts-sil-charis",
    "fonts-inter",
    "fonts-clear-sans",
    "fonts-hermit",
    "fonts-fantasque-sans",
    "fonts-3270",
    "fonts-adf-gillius",
    "fonts-routed-gothic",
    "fonts-dseg",
)

# Families the project uses for training or evaluation: a stress face must belong to none of them.
FORBIDDEN_FAMILIES = (
    "DejaVu",
    "Roboto",
    "Carlito",
    "Noto Sans Mono",
    "Open Sans",
    "Lato",
    "Cantarell",
    "URW Gothic",
    "URW Bookman",
    "Go",
    "C059",
    "P052",
    "Fira Code",
    "JetBrains Mono",
    "Inconsolata",
    "Hack",
    "Arimo",
    "Liberation",
    "FreeSans",
    "FreeSerif",
    "FreeMono",
    "Tinos",
    "Cousine",
    "Nimbus",
)


@dataclass(frozen=True)
class FontFamily:
    family: str
    package: str
    category: str  # sans | serif | mono | condensed | ocr | lcd
    files: str  # regex on the file name


FONT_FAMILIES = (
    FontFamily("B612", "fonts-b612", "sans", r"B612-(Regular|Bold)\.otf"),
    FontFamily("B612 Mono", "fonts-b612", "mono", r"B612Mono-(Regular|Bold)\.otf"),
    FontFamily("OCR B", "fonts-ocr-b", "ocr", r"OCRB\.otf"),
    FontFamily("mononoki", "fonts-mononoki", "mono", r"mononoki-(Regular|Bold)\.ttf"),
    FontFamily("Anonymous Pro", "fonts-anonymous-pro", "mono", r"Anonymous Pro( B)?\.ttf"),
    FontFamily("Oxygen", "fonts-oxygen", "sans", r"Oxygen-Sans(-Bold)?\.ttf"),
    FontFamily("Oxygen Mono", "fonts-oxygen", "mono", r"OxygenMono-Regular\.ttf"),
    FontFamily("Cabin", "fonts-cabin", "sans", r"Cabin-(Regular|Medium|Bold)\.otf"),
    FontFamily("Comfortaa", "fonts-comfortaa", "sans", r"Comfortaa-(Regular|Bold)\.ttf"),
    FontFamily("League Spartan", "fonts-league-spartan", "sans", r"LeagueSpartan-(Regular|Medium)\.otf"),
    FontFamily("Linux Libertine", "fonts-linuxlibertine", "serif", r"LinLibertine_(R|RB)\.otf"),
    FontFamily("Linux Biolinum", "fonts-linuxlibertine", "sans", r"LinBiolinum_(R|RB)\.otf"),
    FontFamily("Caladea", "fonts-crosextra-caladea", "serif", r"Caladea-(Regular|Bold)\.ttf"),
    FontFamily("Charis SIL", "fonts-sil-charis", "serif", r"CharisSIL-(Regular|Bold)\.ttf"),
    FontFamily("Inter", "fonts-inter", "sans", r"Inter-(Regular|Medium|SemiBold)\.otf"),
    FontFamily("Clear Sans", "fonts-clear-sans", "sans", r"ClearSans-(Regular|Medium|Bold)\.ttf"),
    FontFamily("Hermit", "fonts-hermit", "mono", r"Hermit-(medium|bold)\.otf"),
    FontFamily(
        "Fantasque Sans Mono", "fonts-fantasque-sans", "mono", r"FantasqueSansMono-(Regular|Bold)\.ttf"
    ),
    FontFamily("IBM 3270", "fonts-3270", "mono", r"3270-Regular\.ttf"),
    FontFamily("IBM 3270 Condensed", "fonts-3270", "condensed", r"3270(Semi)?Condensed-Regular\.ttf"),
    FontFamily("Gillius ADF Cond", "fonts-adf-gillius", "condensed", r"GilliusADF(No2)?-(Bold)?Cond\.otf"),
    FontFamily("Routed Gothic Narrow", "fonts-routed-gothic", "condensed", r"routed-gothic-narrow\.ttf"),
    FontFamily("DSEG7 Classic", "fonts-dseg", "lcd", r"DSEG7Classic-(Regular|Bold)\.ttf"),
    FontFamily("DSEG14 Classic", "fonts-dseg", "lcd", r"DSEG14Classic-(Regular|Bold)\.ttf"),
)


class StressFontsMissing(RuntimeError):
    """The stress fonts are not installed."""


@dataclass(frozen=True)
class Face:
    family: str
    category: str
    path: Path


# ---------------------------------------------------------------------------------------------- fonts


@lru_cache(maxsize=1)
def _all_font_files() -> tuple[Path, ...]:
    if not FONT_ROOT.is_dir():
        return ()
    return tuple(sorted(p for p in FONT_ROOT.rglob("*") if p.suffix.lower() in (".ttf", ".otf")))


def find_font_files(family: str) -> list[Path]:
    """The font files of one stress family under /usr/share/fonts (one per file name)."""
    spec = next((f for f in FONT_FAMILIES if f.family == family), None)
    if spec is None:
        raise KeyError(f"{family!r} is not a stress font family; known: {[f.family for f in FONT_FAMILIES]}")
    pattern = re.compile(spec.files)
    found: dict[str, Path] = {}
    for path in _all_font_files():
        if pattern.fullmatch(path.name) and path.name not in found:
            found[path.name] = path
    return sorted(found.values())


@lru_cache(maxsize=1)
def stress_faces() -> tuple[Face, ...]:
    """Every installed stress face; a clear error naming the apt-get command when any family is missing
    (a set drawn on a machine with fewer fonts would not be the same set)."""
    faces: list[Face] = []
    missing: list[FontFamily] = []
    for spec in FONT_FAMILIES:
        files = find_font_files(spec.family)
        if not files:
            missing.append(spec)
        faces.extend(Face(spec.family, spec.category, p) for p in files)
    if missing:
        packages = sorted({m.package for m in missing})
        raise StressFontsMissing(
            f"stress font families not found under {FONT_ROOT}: {', '.join(m.family for m in missing)}; "
            f"install them with: apt-get install -y {' '.join(packages)}"
            f" (all of them: apt-get install -y {' '.join(STRESS_FONT_PACKAGES)})"
        )
    return tuple(faces)


@lru_cache(maxsize=256)
def _cmap(path: Path) -> frozenset[int]:
    font = TTFont(str(path), lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def font_family_names(path: Path) -> set[str]:
    """The family names (name IDs 1 and 16) a font file declares."""
    font = TTFont(str(path), lazy=True)
    try:
        names = {font["name"].getDebugName(i) for i in (1, 16)}
    finally:
        font.close()
    return {n for n in names if n}


def covers(face: Face, text: str) -> bool:
    cmap = _cmap(face.path)
    return all(ord(c) in cmap for c in text if c != " ")


@lru_cache(maxsize=2048)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


# --------------------------------------------------------------------------------------------- layouts


@lru_cache(maxsize=1)
def load_stress_layouts() -> dict[str, dict[str, Any]]:
    """The layout YAML files as plain dicts, read directly (not through the project's loader)."""
    layouts = {}
    for path in sorted(LAYOUT_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        layouts[raw["kind"]] = raw
    if not layouts:
        raise FileNotFoundError(f"no layouts in {LAYOUT_DIR}")
    return layouts


def all_fields(layout: dict[str, Any]) -> list[dict[str, Any]]:
    return list(layout["header"]) + list(layout["fields"])


# ---------------------------------------------------------------------------------------------- values


def format_number(spec: dict[str, Any], value: float) -> str:
    decimals = int(spec.get("decimals", 0))
    q = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if q == 0:
        q = abs(q)
    return format(q, f"{'+' if spec.get('show_plus') else ''}.{decimals}f")


def _sample_number(spec: dict[str, Any], rng: np.random.Generator) -> float:
    lo, hi = (float(x) for x in spec["range"])
    mean, sd = spec.get("typical") or ((lo + hi) / 2, (hi - lo) / 6)
    v = float(rng.normal(mean, sd))
    for _ in range(30):  # a truncated normal; clip only when it keeps missing
        if lo <= v <= hi:
            break
        v = float(rng.normal(mean, sd))
    v = min(max(v, lo), hi)
    step = spec.get("step")
    if step:
        v = round(v / step) * step
        v = min(max(v, math.ceil(lo / step - 1e-9) * step), math.floor(hi / step + 1e-9) * step)
    return v


def _sample_regex(pattern: str, rng: np.random.Generator) -> str:
    """A string matching a simple pattern: alternation, literals, escapes, [classes], \\d, {n} / {n,m}."""
    alternatives = pattern.split("|") if "(" not in pattern else [pattern]
    pat = alternatives[int(rng.integers(len(alternatives)))]
    out: list[str] = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "\\":
            nxt = pat[i + 1]
            choices = "0123456789" if nxt == "d" else nxt
            i += 2
        elif c == "[":
            end = pat.index("]", i)
            body, choices = pat[i + 1 : end], ""
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    choices += "".join(chr(k) for k in range(ord(body[j]), ord(body[j + 2]) + 1))
                    j += 3
                else:
                    choices += body[j]
                    j += 1
            i = end + 1
        else:
            choices = c
            i += 1
        n = 1
        m = re.match(r"\{(\d+)(?:,(\d+))?\}", pat[i:])
        if m:
            lo_n = int(m.group(1))
            hi_n = int(m.group(2)) if m.group(2) else lo_n
            n = int(rng.integers(lo_n, hi_n + 1))
            i += m.end()
        out.extend(choices[int(rng.integers(len(choices)))] for _ in range(n))
    text = "".join(out)
    if not re.fullmatch(pattern, text):
        raise ValueError(f"cannot draw a value for pattern {pattern!r} (got {text!r})")
    return text


def _sample_date(spec: dict[str, Any], rng: np.random.Generator) -> str:
    start = dt.datetime(2012, 1, 1, 8, 0)
    span = (dt.datetime(2025, 12, 31) - start).days + 1
    day = start + dt.timedelta(days=int(rng.integers(0, span)), minutes=int(rng.integers(0, 600)))
    text = day.strftime(spec["date_format"])
    if spec.get("pattern") and not re.fullmatch(spec["pattern"], text):
        raise ValueError(f"date {text!r} does not match {spec['pattern']!r}")
    return text


def check_violations(layout: dict[str, Any], texts: dict[str, str]) -> list[str]:
    """What in a set of drawn texts breaks the layout's ranges or cross-field checks."""
    bad = []
    specs = {f["name"]: f for f in all_fields(layout)}
    for name, text in texts.items():
        spec = specs[name]
        if text == BLANK or spec.get("kind", "number") != "number":
            continue
        lo, hi = spec["range"]
        if not lo <= float(text) <= hi:
            bad.append(f"{name}={text} outside {lo}..{hi}")
    for check in layout.get("checks") or []:
        names = check["fields"]
        if any(texts.get(n, BLANK) == BLANK for n in names):
            continue
        vals = [float(texts[n]) for n in names]
        target_dec = int(specs[names[0]].get("decimals", 0))
        slack = float(check.get("tolerance") or 0.0) + 0.5 * 10**-target_dec + 1e-9
        if check["rule"] == "ordered" and vals[0] > vals[1]:
            bad.append(f"{names[0]} > {names[1]}")
        elif check["rule"] == "mean" and abs(vals[0] - sum(vals[1:]) / len(vals[1:])) > slack:
            bad.append(f"{names[0]} is not the mean of {names[1:]}")
        elif check["rule"] == "reciprocal" and abs(vals[0] - check["constant"] / vals[1]) > slack:
            bad.append(f"{names[0]} != {check['constant']} / {names[1]}")
    return bad


def sample_exam_values(layout: dict[str, Any], rng: np.random.Generator) -> dict[str, str | None]:
    """Every field's text as the device shows it; None for an optional field left blank on screen."""
    derived = {c["fields"][0]: c for c in layout.get("checks") or [] if c["rule"] in ("mean", "reciprocal")}
    in_checks = {n for c in layout.get("checks") or [] for n in c["fields"]}
    for _ in range(1000):
        texts: dict[str, str | None] = {}
        for spec in all_fields(layout):
            name, kind = spec["name"], spec.get("kind", "number")
            if spec.get("optional") and name not in in_checks and rng.random() < 0.12:
                texts[name] = BLANK if rng.random() < 0.5 else None
            elif kind == "date":
                texts[name] = _sample_date(spec, rng)
            elif kind == "text":
                texts[name] = _sample_regex(spec["pattern"], rng)
            elif name not in derived:
                texts[name] = format_number(spec, _sample_number(spec, rng))
        pending = dict(derived)
        while pending:
            progressed = False
            for name, check in list(pending.items()):
                sources = check["fields"][1:]
                if any(s not in texts or s in pending for s in sources):
                    continue
                vals = [float(texts[s]) for s in sources]  # type: ignore[arg-type]
                value = sum(vals) / len(vals) if check["rule"] == "mean" else check["constant"] / vals[0]
                specs = {f["name"]: f for f in all_fields(layout)}
                texts[name] = format_number(specs[name], value)
                del pending[name]
                progressed = True
            if not progressed:
                raise ValueError(f"{layout['kind']}: circular checks among {sorted(pending)}")
        drawn = {k: v for k, v in texts.items() if v is not None}
        if not check_violations(layout, drawn):
            return texts
    raise RuntimeError(f"{layout['kind']}: could not draw values that pass its checks")


# ------------------------------------------------------------------------------------------ drawing

RGB = tuple[int, int, int]
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1


def _lum(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shift(c: RGB, d: int) -> RGB:
    return (
        int(np.clip(c[0] + d, 0, 255)),
        int(np.clip(c[1] + d, 0, 255)),
        int(np.clip(c[2] + d, 0, 255)),
    )


def _rgb(rng: np.random.Generator, lo: int, hi: int, tint: int = 0) -> RGB:
    base = int(rng.integers(lo, hi + 1))
    return tuple(int(np.clip(base + rng.integers(-tint, tint + 1), 0, 255)) for _ in range(3))  # type: ignore[return-value]


@dataclass
class Theme:
    dark: bool
    bg: RGB
    text: RGB
    label: RGB
    accent: RGB
    line: RGB
    frame: RGB
    margin: RGB


def _theme(rng: np.random.Generator, style: str, border: bool) -> Theme:
    dark = rng.random() < (0.5 if style == "screen" else 0.15)
    if dark:
        bg = _rgb(rng, 22, 60, tint=14)
        palette = [(235, 235, 235), (120, 255, 140), (255, 190, 70), (140, 220, 255), (250, 250, 200)]
        text = palette[int(rng.integers(len(palette)))]
        text = _shift(text, -int(rng.integers(0, 30)))
        label = _shift(text, -int(rng.integers(20, 70)))
        accent = [(90, 170, 255), (255, 210, 90), (120, 230, 200), text][int(rng.integers(4))]
        line = _shift(bg, int(rng.integers(30, 70)))
        frame = _rgb(rng, 0, 12)
        # the dark frame of an export sits on a lighter surround, or it could not be seen
        margin = _rgb(rng, 120, 200, tint=8) if border else _shift(bg, int(rng.integers(-8, 15)))
    else:
        bg = _rgb(rng, 205, 255, tint=10)
        text = _rgb(rng, 0, 70, tint=25)
        label = _shift(text, int(rng.integers(10, 80)))
        accent = [(20, 50, 130), (120, 20, 20), (0, 90, 80), text][int(rng.integers(4))]
        line = _shift(bg, -int(rng.integers(40, 90)))
        frame = _rgb(rng, 0, 45)
        margin = _shift(bg, int(rng.integers(-15, 8))) if rng.random() < 0.5 else bg
    return Theme(dark, bg, text, label, accent, line, frame, margin)


@dataclass
class Look:
    """The fonts and habits of one (imagined) device or export."""

    label_face: Face
    value_face: Face
    title_face: Face
    label_size: float  # fraction of the box height
    value_size: float  # fraction of the box height: 0.55-0.85
    label_mode: str  # "flush": right-aligned against the box; "column": left-aligned in a column
    label_colon: bool
    label_upper: bool
    show_units: bool
    micro_sign: bool
    box_fill: bool
    box_outline: bool
    grid: bool
    title_bar: bool
    title_center: bool
    faces_used: set[str] = field(default_factory=set)


def _pick(rng: np.random.Generator, items: list[Face]) -> Face:
    """A family uniformly (not weighted by how many weights it ships), then one of its files."""
    families = sorted({f.family for f in items})
    family = families[int(rng.integers(len(families)))]
    files = [f for f in items if f.family == family]
    return files[int(rng.integers(len(files)))]


def _look(rng: np.random.Generator, signed: bool) -> Look:
    faces = list(stress_faces())
    text_faces = [f for f in faces if f.category != "lcd"]
    label_face = _pick(rng, text_faces)
    value_face = label_face if rng.random() < 0.3 else _pick(rng, text_faces)
    if rng.random() < 0.15:  # an LCD readout: seven segments, or fourteen where a '+' must show
        lcd = "DSEG14 Classic" if signed or rng.random() < 0.3 else "DSEG7 Classic"
        value_face = _pick(rng, [f for f in faces if f.family == lcd])
    title_face = label_face if rng.random() < 0.5 else _pick(rng, text_faces)
    return Look(
        label_face=label_face,
        value_face=value_face,
        title_face=title_face,
        label_size=float(rng.uniform(0.38, 0.55)),
        value_size=float(rng.uniform(0.55, 0.85)),
        label_mode="flush" if rng.random() < 0.6 else "column",
        label_colon=bool(rng.random() < 0.35),
        label_upper=bool(rng.random() < 0.25),
        show_units=bool(rng.random() < 0.7),
        micro_sign=bool(rng.random() < 0.4),
        box_fill=bool(rng.random() < 0.3),
        box_outline=bool(rng.random() < 0.35),
        grid=bool(rng.random() < 0.3),
        title_bar=bool(rng.random() < 0.4),
        title_center=bool(rng.random() < 0.5),
    )


def _face_for(text: str, preferred: Face, look: Look) -> Face:
    for face in (preferred, look.label_face, *stress_faces()):
        if (face.category != "lcd" or face is preferred) and covers(face, text):
            return face
    raise RuntimeError(f"no stress face covers {text!r}")


def _fit_font(
    draw: ImageDraw.ImageDraw, face: Face, text: str, size: int, max_w: float, max_h: float
) -> tuple[ImageFont.FreeTypeFont, Rect]:
    size = max(size, 6)
    while True:
        font = _font(face.path, size)
        x0, y0, x1, y1 = (round(v) for v in draw.textbbox((0, 0), text, font=font))
        if (x1 - x0 <= max_w and y1 - y0 <= max_h) or size <= 6:
            return font, (x0, y0, x1, y1)
        size -= 1


def _draw_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    face: Face,
    size: int,
    area: Rect,
    align: str,
    colour: RGB,
    rng: np.random.Generator,
    jitter: int = 0,
) -> Rect:
    """Draw text inside area (x0, y0, x1, y1), vertically centred; returns the ink's rectangle."""
    x0, y0, x1, y1 = area
    font, bbox = _fit_font(draw, face, text, size, x1 - x0, y1 - y0)
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    spare_x, spare_y = (x1 - x0) - w, (y1 - y0) - h
    dx = int(rng.integers(-jitter, jitter + 1)) if jitter else 0
    dy = int(rng.integers(-jitter, jitter + 1)) if jitter else 0
    if align == "left":
        left = x0 + min(max(dx, 0), spare_x)
    elif align == "right":
        left = x1 - w - min(max(-dx, 0), spare_x)
    else:
        left = x0 + spare_x // 2 + max(min(dx, spare_x // 2), -(spare_x // 2))
    top = y0 + spare_y // 2 + max(min(dy, spare_y // 2), -(spare_y // 2))
    draw.text((left - bbox[0], top - bbox[1]), text, font=font, fill=colour)
    return (left, top, left + w, top + h)


def _overlaps(a: Rect, b: Rect, pad: int = 0) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


FOOTERS = (
    "Printed {date}  Operator: {op}",
    "Software v{ver}  Serial {ser}",
    "For clinical reference only. Verify before use.",
    "Exam quality: {q}   SN {ser}",
    "{clinic}  Ophthalmology",
)
LOGOS = ("OPTIVUE", "Ocu-Tek", "Visionometrics", "CORNEA LAB", "LUMEN-3", "iScope", "EYE CENTER")
CLINICS = ("St. Lucia Eye Clinic", "Northside Vision", "City Eye Hospital", "Lakeview Ophthalmics")


def draw_screen(
    layout: dict[str, Any], values: dict[str, str | None], rng: np.random.Generator, border: bool
) -> tuple[Image.Image, dict[str, Any]]:
    """The clean device screen at the template's size, and what was chosen to draw it."""
    t = layout["template"]
    W, H, inset, fw = t["width"], t["height"], t["frame_inset"], t["frame_width"]  # noqa: N806
    theme = _theme(rng, t.get("style", "screen"), border)
    look = _look(rng, any(f.get("show_plus") for f in layout["fields"]))
    img = Image.new("RGB", (W, H), theme.margin)
    draw = ImageDraw.Draw(img)
    draw.rectangle([inset, inset, W - 1 - inset, H - 1 - inset], fill=theme.bg)
    if border:
        outer = inset - fw
        draw.rectangle([outer, outer, W - 1 - outer, H - 1 - outer], outline=theme.frame, width=fw)
    inner: Rect = (inset, inset, W - inset, H - inset)
    fields = all_fields(layout)
    align = t.get("value_align", "left")
    boxes: dict[str, Rect] = {}
    for f in fields:
        x, y, w, h = f["box"]
        boxes[f["name"]] = (x, y, x + w, y + h)
    occupied: list[Rect] = list(boxes.values())

    # title, optionally on a coloured bar
    tx, ty, tw, th = t["title_box"]
    title_rect: Rect = (tx, ty, tx + tw, ty + th)
    title_colour = theme.accent
    if look.title_bar:
        draw.rectangle(title_rect, fill=theme.accent)
        title_colour = theme.bg if abs(_lum(theme.bg) - _lum(theme.accent)) > 90 else theme.text
        if abs(_lum(title_colour) - _lum(theme.accent)) < 90:
            title_colour = (255, 255, 255) if _lum(theme.accent) < 128 else (0, 0, 0)
    title = t["title"] if rng.random() < 0.8 else t["title"].title()
    face = _face_for(title, look.title_face, look)
    look.faces_used.add(face.family)
    _draw_text(
        draw,
        title,
        face,
        int(th * rng.uniform(0.5, 0.75)),
        (tx + 10, ty + 2, tx + tw - 10, ty + th - 2),
        "center" if look.title_center else "left",
        title_colour,
        rng,
        jitter=6,
    )
    occupied.append(title_rect)

    # value boxes: fill and outline
    for rect in boxes.values():
        if look.box_fill:
            draw.rectangle(rect, fill=_shift(theme.bg, 18 if theme.dark else -16))
        if look.box_outline:
            draw.rectangle(rect, outline=theme.line, width=1)

    # values inside their boxes; units to the right of measurement boxes
    header_names = {f["name"] for f in layout["header"]}
    for f in fields:
        name, text = f["name"], values.get(f["name"])
        x0, y0, x1, y1 = boxes[name]
        h = y1 - y0
        if text is not None:
            preferred = look.value_face
            if preferred.category == "lcd" and name in header_names:
                preferred = look.label_face  # the header is printed text, not a readout
            face = _face_for(text, preferred, look)
            look.faces_used.add(face.family)
            pad = int(rng.integers(3, 9))
            _draw_text(
                draw,
                text,
                face,
                round(h * look.value_size),
                (x0 + pad, y0 + 3, x1 - pad, y1 - 3),
                align,
                theme.text,
                rng,
                jitter=3,
            )
        if look.show_units and f.get("unit") and name not in header_names:
            unit = f["unit"].replace("um", "\u00b5m") if look.micro_sign else f["unit"]
            unit = unit.replace("uL", "\u00b5L") if look.micro_sign else unit
            face = _face_for(unit, look.label_face, look)
            look.faces_used.add(face.family)
            gap = int(rng.integers(6, 14))
            area = (x1 + gap, y0 + 4, min(x1 + gap + 90, inner[2] - 6), y1 - 4)
            occupied.append(
                _draw_text(draw, unit, face, int(h * look.label_size * 0.9), area, "left", theme.label, rng)
            )

    # labels to the left of their boxes
    for f in fields:
        name = f["name"]
        x0, y0, x1, y1 = boxes[name]
        label = f["label"].upper() if look.label_upper else f["label"]
        label += ":" if look.label_colon else ""
        row = [r for r in occupied if r[2] <= x0 and r[1] < y1 and r[3] > y0]
        left_limit = max([inner[0] + 8, *[r[2] + 10 for r in row]])
        gap = int(rng.integers(8, 18))
        area = (left_limit, y0 - 2, x0 - gap, y1 + 2)
        if area[2] - area[0] < 12:
            continue
        face = _face_for(label, look.label_face, look)
        look.faces_used.add(face.family)
        mode = "right" if (look.label_mode == "flush" or name in header_names) else "left"
        occupied.append(
            _draw_text(
                draw, label, face, int((y1 - y0) * look.label_size), area, mode, theme.label, rng, jitter=3
            )
        )

    # thin grid lines between rows, never through a box, label or unit
    if look.grid:
        ys = sorted({b[1] for b in boxes.values()} | {b[3] for b in boxes.values()})
        for ya, yb in itertools.pairwise(ys):
            if yb - ya < 12:
                continue
            y = (ya + yb) // 2
            line: Rect = (inner[0] + 10, y, inner[2] - 10, y + 1)
            if not any(_overlaps(line, r, 2) for r in occupied):
                draw.line([(line[0], y), (line[2], y)], fill=theme.line, width=1)

    extras: list[str] = []
    # a footer line of static text below everything else
    if rng.random() < 0.45:
        bottom = max(r[3] for r in occupied)
        area = (inner[0] + 14, bottom + 10, inner[2] - 14, inner[3] - 6)
        if area[3] - area[1] >= 14:
            text = FOOTERS[int(rng.integers(len(FOOTERS)))].format(
                date=_sample_date({"date_format": "%d %b %Y %H:%M"}, rng),
                op=_sample_regex("[A-Z]{2}", rng),
                ver=_sample_regex(r"\d\.\d{1,2}\.\d", rng),
                ser=_sample_regex(r"[A-Z]{2}\d{6}", rng),
                q=_sample_regex(r"\d\.\d", rng),
                clinic=CLINICS[int(rng.integers(len(CLINICS)))],
            )
            face = _face_for(text, look.label_face, look)
            look.faces_used.add(face.family)
            occupied.append(
                _draw_text(
                    draw,
                    text,
                    face,
                    int(rng.integers(13, 19)),
                    area,
                    "left" if rng.random() < 0.6 else "right",
                    theme.label,
                    rng,
                )
            )
            extras.append("footer")
    # a logo or an image panel in free space
    if rng.random() < 0.45:
        for _ in range(40):
            w, h = int(rng.integers(150, 330)), int(rng.integers(50, 220))
            x = int(rng.integers(inner[0] + 10, max(inner[0] + 11, inner[2] - w - 10)))
            y = int(rng.integers(inner[1] + 10, max(inner[1] + 11, inner[3] - h - 10)))
            rect = (x, y, x + w, y + h)
            if rect[2] > inner[2] - 8 or rect[3] > inner[3] - 8:
                continue
            if any(_overlaps(rect, r, 12) for r in occupied):
                continue
            if rng.random() < 0.5:
                text = LOGOS[int(rng.integers(len(LOGOS)))]
                face = _face_for(text, _pick(rng, [f for f in stress_faces() if f.category != "lcd"]), look)
                look.faces_used.add(face.family)
                _draw_text(draw, text, face, int(min(h, 60) * 0.8), rect, "center", theme.accent, rng)
                extras.append("logo")
            else:
                _draw_panel(draw, rect, theme, rng)
                extras.append("panel")
            occupied.append(rect)
            break

    meta = {
        "theme": "dark" if theme.dark else "light",
        "background": list(theme.bg),
        "fonts": sorted(look.faces_used),
        "value_size": round(look.value_size, 3),
        "extras": extras,
    }
    return img, meta


def _draw_panel(draw: ImageDraw.ImageDraw, rect: Rect, theme: Theme, rng: np.random.Generator) -> None:
    """A stand-in for the device's picture: an eye section or map drawn as rings on a dark panel."""
    panel = _rgb(rng, 10, 40) if rng.random() < 0.7 else _shift(theme.bg, -30)
    draw.rectangle(rect, fill=panel, outline=theme.line)
    cx, cy = (rect[0] + rect[2]) // 2, (rect[1] + rect[3]) // 2
    rx, ry = (rect[2] - rect[0]) // 2 - 6, (rect[3] - rect[1]) // 2 - 6
    for k in range(int(rng.integers(3, 7))):
        f = 1 - k / 7
        tone = int(rng.integers(70, 230))
        ring = [cx - rx * f, cy - ry * f, cx + rx * f, cy + ry * f]
        draw.ellipse(ring, outline=(tone, tone, tone), width=2)


# ------------------------------------------------------------------------------------------- damage


def _warp(
    img: np.ndarray,
    rng: np.random.Generator,
    angle: float,
    scale: float,
    persp: float,
    margin: tuple[int, int],
    fill: RGB,
) -> np.ndarray:
    """Rotate, scale and (mildly) tilt the picture, placed on a larger canvas so that none is lost."""
    h, w = img.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    dst = (src - np.array([w / 2, h / 2], dtype=np.float32)) @ rot.T
    if persp:
        dst = dst + rng.uniform(-persp, persp, size=(4, 2)) * [w * scale, h * scale]
    dst = dst - dst.min(axis=0) + [margin[0], margin[0]]
    out_w = math.ceil(dst[:, 0].max()) + margin[1]
    out_h = math.ceil(dst[:, 1].max()) + margin[1]
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    return cv2.warpPerspective(
        img,
        m,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(c) for c in fill),
    )


def _illumination(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lo, hi = rng.uniform(0.62, 0.88), rng.uniform(1.0, 1.15)
    if rng.random() < 0.5:
        phi = rng.uniform(0, 2 * math.pi)
        d = xx * math.cos(phi) + yy * math.sin(phi)
        d = (d - d.min()) / max(float(d.max() - d.min()), 1.0)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        d = np.hypot(xx - cx, yy - cy)
        d = (d / max(float(d.max()), 1.0)) ** 2
    gain = hi - (hi - lo) * d
    out: np.ndarray = np.clip(img.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)
    return out


def _shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phi = rng.uniform(0, math.pi)
    px, py = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    dist = np.abs((xx - px) * math.sin(phi) - (yy - py) * math.cos(phi))
    half = rng.uniform(0.05, 0.15) * min(h, w)
    mask = (dist < half).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), float(rng.uniform(4, 20)))
    factor = 1 - (1 - rng.uniform(0.55, 0.85)) * mask
    out: np.ndarray = np.clip(img.astype(np.float32) * factor[..., None], 0, 255).astype(np.uint8)
    return out


def _motion_blur(img: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    kernel = np.zeros((k, k), np.float32)
    a = rng.uniform(0, math.pi)
    c = (k - 1) / 2
    for t in np.linspace(-c, c, 4 * k):
        kernel[round(c + t * math.sin(a)), round(c + t * math.cos(a))] = 1
    return cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def _salt_pepper(img: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    out = img.copy()
    hit = rng.random(img.shape[:2])
    out[hit < p / 2] = 0
    out[(hit >= p / 2) & (hit < p)] = 255
    return out


def _moire(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = np.zeros((h, w), np.float32)
    phi, period = rng.uniform(0, math.pi), rng.uniform(3.0, 9.0)
    # two close gratings (the screen's pixel grid and the camera's) beat into wavy bands
    for dphi, dperiod in ((0.0, 1.0), (rng.uniform(-0.06, 0.06), rng.uniform(0.94, 1.06))):
        p = phi + dphi
        pattern += np.sin(2 * math.pi * (xx * math.cos(p) + yy * math.sin(p)) / (period * dperiod))
    amp = rng.uniform(2.0, 6.0)
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    return np.clip(img.astype(np.float32) + amp * pattern[..., None] * tint, 0, 255).astype(np.uint8)


def apply_damage(
    img: Image.Image, rng: np.random.Generator, level: str, fill: RGB
) -> tuple[Image.Image, int | None, list[str]]:
    """The damaged picture, the JPEG quality to save it with (None: PNG), and what was done."""
    if level not in DAMAGE_LEVELS:
        raise ValueError(f"damage must be one of {DAMAGE_LEVELS}, not {level!r}")
    if level == "none":
        return img, None, []
    arr = np.asarray(img)
    if level == "light":
        angle = float(rng.uniform(-1, 1))
        arr = _warp(arr, rng, angle, 1.0, 0.0, (4, 4), fill)
        return Image.fromarray(arr), 90, [f"rotate {angle:+.2f}", "jpeg q90"]

    probs = {
        "rotate": 0.6,
        "scale_offset": 0.5,
        "perspective": 0.35,
        "illumination": 0.45,
        "shadow": 0.25,
        "blur": 0.45,
        "resolution": 0.35,
        "salt_pepper": 0.3,
        "moire": 0.2,
        "jpeg": 0.5,
    }
    chosen = [k for k, p in probs.items() if rng.random() < p]
    if not chosen:
        chosen = [list(probs)[int(rng.integers(len(probs)))]]
    done: list[str] = []
    if {"rotate", "scale_offset", "perspective"} & set(chosen):
        angle = float(rng.uniform(-5, 5)) if "rotate" in chosen else 0.0
        scale = float(rng.uniform(0.8, 1.25)) if "scale_offset" in chosen else 1.0
        persp = float(rng.uniform(0.01, 0.035)) if "perspective" in chosen else 0.0
        margin = (6, 6)
        if "scale_offset" in chosen:
            margin = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
        canvas = fill if rng.random() < 0.5 else _rgb(rng, 60, 200, tint=20)
        arr = _warp(arr, rng, angle, scale, persp, margin, canvas)
        done += [f"rotate {angle:+.2f}"] if angle else []
        done += [f"scale {scale:.2f} offset {margin[0]}"] if "scale_offset" in chosen else []
        done += [f"perspective {persp:.3f}"] if persp else []
    if "illumination" in chosen:
        arr = _illumination(arr, rng)
        done.append("illumination")
    if "shadow" in chosen:
        arr = _shadow(arr, rng)
        done.append("shadow")
    if "moire" in chosen:
        arr = _moire(arr, rng)
        done.append("moire")
    if "blur" in chosen:
        if rng.random() < 0.5:
            k = int(rng.integers(3, 10))
            arr = _motion_blur(arr, rng, k)
            done.append(f"motion_blur k{k}")
        else:
            sigma = float(rng.uniform(0.5, 1.5))
            arr = cv2.GaussianBlur(arr, (0, 0), sigma)
            done.append(f"defocus s{sigma:.2f}")
    if "resolution" in chosen:
        f = float(rng.uniform(0.5, 0.8))
        h, w = arr.shape[:2]
        small = cv2.resize(arr, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        up = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST][int(rng.integers(3))]
        arr = cv2.resize(small, (w, h), interpolation=up)
        done.append(f"resolution {f:.2f}")
    if "salt_pepper" in chosen:
        p = float(rng.uniform(0.001, 0.01))
        arr = _salt_pepper(arr, rng, p)
        done.append(f"salt_pepper {p:.4f}")
    quality = int(rng.integers(25, 91)) if "jpeg" in chosen else None
    if quality:
        done.append(f"jpeg q{quality}")
    return Image.fromarray(np.ascontiguousarray(arr)), quality, done


# ---------------------------------------------------------------------------------------------- set


def render_exam(
    layout: dict[str, Any], seed: int, index: int, border: bool = True, damage: str = "full"
) -> tuple[Image.Image, int | None, dict[str, str], dict[str, Any]]:
    """One exam: the picture, its JPEG quality (None: PNG), the truth fields and what was chosen."""
    rng = np.random.default_rng([seed, index])
    values = sample_exam_values(layout, rng)
    img, meta = draw_screen(layout, values, rng, border)
    r, g, b = (int(c) for c in np.asarray(img)[0, 0])
    corner = (r, g, b)
    img, quality, done = apply_damage(img, rng, damage, corner)
    meta.update(border=border, damage=done)
    truth = {k: v for k, v in values.items() if v is not None}
    return img, quality, truth, meta


def render_stress_set(count: int, seed: int, out: Path, border: bool = True, damage: str = "full") -> Path:
    """Render count exams (device kinds in turn) into out; returns the path of out/truth.jsonl."""
    if damage not in DAMAGE_LEVELS:
        raise ValueError(f"damage must be one of {DAMAGE_LEVELS}, not {damage!r}")
    stress_faces()  # fail early, with the apt-get line, when fonts are missing
    layouts = load_stress_layouts()
    kinds = sorted(layouts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        img, quality, truth, meta = render_exam(layouts[kind], seed, index, border, damage)
        name = f"{index:05d}-{kind}.{'jpg' if quality else 'png'}"
        if quality:
            img.save(out / name, format="JPEG", quality=quality)
        else:
            img.save(out / name, format="PNG", compress_level=6)
        lines.append(json.dumps({"file": name, "device_kind": kind, "fields": truth, "meta": meta}))
    truth_path = out / "truth.jsonl"
    truth_path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return truth_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.render", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-border", dest="border", action="store_false", help="screen captures: no frame")
    parser.add_argument("--damage", choices=DAMAGE_LEVELS, default="full")
    args = parser.parse_args(argv)
    try:
        truth = render_stress_set(args.count, args.seed, args.out, border=args.border, damage=args.damage)
    except StressFontsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.count} exams in {args.out}; truth: {truth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
