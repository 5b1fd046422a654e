"""The stress renderer's drawing: one clean device screen at its template's size, in a theme and with
the fonts and habits of an imagined device (a Look): the title, each value inside its box, units and
labels beside the boxes, grid lines, and a footer, a logo or a picture panel in the free space."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.stress.fonts import Face, _font, covers, stress_faces
from tests.stress.values import _sample_date, _sample_regex, all_fields

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
