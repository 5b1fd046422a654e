"""The foreign renderer's page design: a vendor's look. Vendor names, titles, section headings, label
and unit spellings; the theme's colours and the value style; text fitted into a zone; and the page's
geometry, worked out from the layout's boxes alone (where a frame, a title block, labels, units and a
picture may go)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import ImageDraw

from eyeops.devices.layout import DeviceLayout
from tests.foreign.fonts import FACES, LABEL_FACES, Face, _font, supports
from tests.foreign.glyphs import RGB, DotStyle, Rect, SegStyle, ValueStyle

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
