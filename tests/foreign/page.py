"""The foreign renderer's page: everything but the values drawn in a design (frame, title band, logo,
eye badge, table furniture, labels, units, footer, picture), then each value in its box; a fixed
design (--fixed-design) drawn from a seed of the kind alone."""

from __future__ import annotations

import datetime as dt
import zlib

import cv2
import numpy as np
from PIL import Image, ImageDraw

from eyeops.devices.layout import DeviceLayout, FieldSpec
from tests.foreign.design import (
    LABELS,
    SECTIONS,
    TITLES,
    UNITS,
    VENDORS,
    Design,
    _free_panel,
    _label_face,
    _lum,
    _mix,
    _rows,
    draw_text_in,
    page_geometry,
    pick_theme,
    pick_value_style,
)
from tests.foreign.fonts import Face, supports
from tests.foreign.glyphs import Rect, composite, fit_value
from tests.foreign.panel import draw_panel


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
