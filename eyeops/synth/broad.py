"""The broad training renderer (`eyeops ocr train --variety broad`): more fonts, screens and damage.

The classic renderer (eyeops.synth.render) draws every exam in one look: dark ink on a light ground,
values at one size class flush to one side. A recogniser trained only on it reads its own exams
almost perfectly and other renderings poorly. This one varies what a value crop can look like:

- faces: the broad pool (dozens of families, weights and widths; eyeops.synth.fonts), chosen by
  family, and procedural seven/fourteen-segment readouts (eyeops.synth.segments);
- screens: light-on-dark and dark-on-light, coloured text (drawn as its luminance: the service reads
  grey), box outlines and filled box grounds, labels and units in another face, now and then a
  label or unit close enough to bleed into the value box's edge;
- values: ink 45–95 % of the box height, glyph stretch, faux bold, left/right/centre placement with a
  few pixels of jitter;
- damage: perspective, uneven light, a shadow band, defocus or motion blur, resolution loss
  (0.5–0.8, then upsampled), moiré, sensor noise, salt-and-pepper, JPEG 20–95.

Only the training split uses it; held-out evaluation keeps the classic renderer and EVAL_FONTS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from eyeops.devices.layout import DeviceLayout, FieldSpec
from eyeops.synth.fonts import BROAD_TRAIN_FAMILIES, TRAIN_FONTS, font_paths
from eyeops.synth.segments import SegmentStyle, sample_segment_style, segment_mask

LCD_SHARE = 0.1  # exams whose measurement values are a segment readout


@dataclass(frozen=True)
class BroadStyle:
    """What is random about one broad exam's screen (the damage is drawn while applying it)."""

    value_font: Path
    label_font: Path
    segments: SegmentStyle | None
    dark: bool
    background: int
    ink: int
    label_ink: int
    frame: int
    margin: int
    box_fill: int | None
    box_outline: int | None
    ink_fraction: tuple[float, float]  # value ink height as a share of the box height: low, high
    placement: str  # "layout" (the device's own alignment), "left", "right" or "center"
    stretch: float
    stroke: int
    label_size: float
    bleed: float  # chance per field that its label or unit reaches into the box
    jpeg_quality: int | None


@lru_cache(maxsize=1)
def _families() -> tuple[tuple[Path, ...], ...]:
    """Training faces grouped by family: the classic 45 as one group per file-name family, then the
    broad families."""
    index = {p.name: p for p in font_paths("broad")}
    groups: dict[str, list[Path]] = {}
    for name in TRAIN_FONTS:
        groups.setdefault(name.split("-")[0].split(".")[0].rstrip("0123456789"), []).append(index[name])
    for family, files in BROAD_TRAIN_FAMILIES.items():
        groups[family] = [index[n] for n in files]
    return tuple(tuple(g) for g in groups.values())


def _pick_face(rng: np.random.Generator) -> Path:
    """A family uniformly, then one of its faces: a family with eleven widths is not eleven times
    as likely as one with a single face."""
    families = _families()
    group = families[int(rng.integers(len(families)))]
    return group[int(rng.integers(len(group)))]


def _lum(r: int, g: int, b: int) -> int:
    return round(0.299 * r + 0.587 * g + 0.114 * b)


def sample_broad_style(rng: np.random.Generator, signed: bool) -> BroadStyle:
    dark = bool(rng.random() < 0.4)
    if dark:
        background = int(rng.integers(8, 75))
        palette = [(235, 235, 235), (120, 255, 140), (255, 190, 70), (140, 220, 255), (250, 250, 200)]
        r, g, b = palette[int(rng.integers(len(palette)))]
        ink = _lum(r, g, b) - int(rng.integers(0, 60))
        label_ink = ink - int(rng.integers(0, 80))
        frame = int(rng.integers(0, 14))
        margin = int(rng.integers(110, 215))
    else:
        background = int(rng.integers(170, 256))
        colour = rng.integers(0, 140, size=3) if rng.random() < 0.3 else np.repeat(rng.integers(0, 90), 3)
        ink = _lum(*(int(c) for c in colour))
        label_ink = min(ink + int(rng.integers(0, 90)), background - 60)
        frame = int(rng.integers(0, 50))
        margin = (
            background if rng.random() < 0.5 else int(np.clip(background + rng.integers(-25, 10), 0, 255))
        )
    label_ink = max(label_ink, background + 50) if dark else label_ink
    shade = int(rng.integers(10, 30)) * (1 if dark else -1)
    box_fill = background + shade if rng.random() < 0.3 else None
    box_outline = (
        int(np.clip(background + (1 if dark else -1) * rng.integers(40, 110), 0, 255))
        if rng.random() < 0.35
        else None
    )
    value_font = _pick_face(rng)
    label_font = value_font if rng.random() < 0.3 else _pick_face(rng)
    segments = None
    if rng.random() < LCD_SHARE:
        segments = sample_segment_style(rng, fourteen=signed or bool(rng.random() < 0.3))
    lo = float(rng.uniform(0.45, 0.85))
    placement = ["layout", "left", "right", "center"][int(rng.choice(4, p=[0.55, 0.15, 0.15, 0.15]))]
    return BroadStyle(
        value_font=value_font,
        label_font=label_font,
        segments=segments,
        dark=dark,
        background=background,
        ink=int(np.clip(ink, 0, 255)),
        label_ink=int(np.clip(label_ink, 0, 255)),
        frame=frame,
        margin=margin,
        box_fill=box_fill,
        box_outline=box_outline,
        ink_fraction=(lo, min(0.95, lo + float(rng.uniform(0.0, 0.15)))),
        placement=placement,
        stretch=float(rng.uniform(0.8, 1.2)) if rng.random() < 0.5 else 1.0,
        stroke=1 if rng.random() < 0.12 else 0,
        label_size=float(rng.uniform(0.36, 0.6)),
        bleed=float(rng.uniform(0.1, 0.4)) if rng.random() < 0.3 else 0.0,
        jpeg_quality=int(rng.integers(20, 96)) if rng.random() < 0.7 else None,
    )


@lru_cache(maxsize=4096)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _text_mask(text: str, path: Path, size: int, stroke: int) -> np.ndarray:
    """The ink of `text` in one face, cut to its bounding box (uint8, 255 ink)."""
    font = _font(path, size)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    mask = Image.new("L", (max(1, int(right - left) + 2), max(1, int(bottom - top) + 2)), 0)
    ImageDraw.Draw(mask).text((1 - left, 1 - top), text, fill=255, font=font, stroke_width=stroke)
    return np.asarray(mask)


def _value_mask(text: str, style: BroadStyle, box_h: int, max_w: int, rng: np.random.Generator) -> np.ndarray:
    """The value's ink, ink height a drawn share of the box height, no wider than max_w."""
    target_h = max(8, round(box_h * rng.uniform(*style.ink_fraction)))
    if style.segments is not None and any(c.isdigit() for c in text) and not text.startswith("P"):
        mask = segment_mask(text, target_h, style.segments)
    else:
        probe = _text_mask(text, style.value_font, 48, 0)
        size = max(6, round(48 * target_h / max(probe.shape[0] - 2, 1)))
        mask = _text_mask(text, style.value_font, size, style.stroke)
    h, w = mask.shape
    new_w = max(1, round(w * style.stretch))
    if new_w > max_w:  # too wide for the box: shrink as a device's auto-fit would, keeping the aspect
        scale = max_w / new_w
        new_w, h = max_w, max(6, round(h * scale))
    if (new_w, h) != (w, mask.shape[0]):
        mask = cv2.resize(mask, (new_w, h), interpolation=cv2.INTER_AREA)
    return mask


def _paste(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, ink: int) -> None:
    """Blend ink into the canvas through the mask (clipped at the canvas edge)."""
    h, w = mask.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    alpha = mask[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32) / 255.0
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + ink * alpha, 0, 255).astype(np.uint8)


def place_value(
    canvas: np.ndarray, spec: FieldSpec, text: str, style: BroadStyle, align: str, rng: np.random.Generator
) -> None:
    x, y, w, h = spec.box
    pad = int(rng.integers(3, 10))
    mask = _value_mask(text, style, h, w - 2 * pad, rng)
    mh, mw = mask.shape
    mode = align if style.placement == "layout" else style.placement
    jitter = int(rng.integers(-3, 4))
    if mode == "left":
        tx = x + pad + max(jitter, 0)
    elif mode == "right":
        tx = x + w - pad - mw - max(-jitter, 0)
    else:
        tx = x + (w - mw) // 2 + jitter
    tx = int(np.clip(tx, x + 2, max(x + 2, x + w - mw - 2)))
    ty = y + (h - mh) // 2 + int(rng.integers(-3, 4))
    ty = int(np.clip(ty, y + 1, max(y + 1, y + h - mh - 1)))
    _paste(canvas, mask, tx, ty, style.ink)


def render_broad_clean(
    layout: DeviceLayout, texts: dict[str, str], style: BroadStyle, rng: np.random.Generator
) -> np.ndarray:
    """The screen in template pixels, greyscale uint8."""
    t = layout.template
    img = Image.new("L", (t.width, t.height), color=style.margin)
    draw = ImageDraw.Draw(img)
    inset, fw = t.frame_inset, t.frame_width
    draw.rectangle((inset, inset, t.width - inset - 1, t.height - inset - 1), fill=style.background)
    draw.rectangle(
        (inset - fw, inset - fw, t.width - inset + fw - 1, t.height - inset + fw - 1),
        outline=style.frame,
        width=fw,
    )
    tx, ty, tw, th = t.title_box
    title_ink = style.label_ink
    if rng.random() < 0.4:
        bar = int(np.clip(style.background + (60 if style.dark else -70), 0, 255))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=bar)
        title_ink = style.background if abs(bar - style.background) > 60 else style.ink
    title_size = int(th * rng.uniform(0.45, 0.7))
    draw.text(
        (tx + 14, ty + (th - title_size) // 2),
        t.title,
        fill=title_ink,
        font=_font(style.label_font, title_size),
    )
    for spec in layout.all_fields():
        x, y, w, h = spec.box
        if style.box_fill is not None:
            draw.rectangle((x, y, x + w, y + h), fill=style.box_fill)
        if style.box_outline is not None:
            draw.rectangle((x, y, x + w, y + h), outline=style.box_outline, width=1)
    label_font = _font(style.label_font, max(10, round(44 * style.label_size)))
    header = list(layout.header)
    for spec in layout.all_fields():
        x, y, w, h = spec.box
        bleed = rng.random() < style.bleed
        label = spec.label.upper() if rng.random() < 0.2 else spec.label
        lw = draw.textlength(label, font=label_font)
        gap = int(rng.integers(-4, 3)) if bleed and spec in header else int(rng.integers(8, 18))
        label_x = x - gap - lw if spec in header else x - 200
        draw.text((label_x, y + h * 0.2), label, fill=style.label_ink, font=label_font)
        if spec.unit and rng.random() < 0.8:
            gap = int(rng.integers(-5, 2)) if bleed else int(rng.integers(6, 14))
            draw.text((x + w + gap, y + h * 0.22), spec.unit, fill=style.label_ink, font=label_font)
    canvas = np.array(img)
    for spec in layout.all_fields():
        place_value(canvas, spec, texts[spec.name], style, t.value_align, rng)
    return canvas


# ------------------------------------------------------------------------------------------- damage


def _warp(clean: np.ndarray, rng: np.random.Generator, surround: int) -> np.ndarray:
    h, w = clean.shape
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    theta = np.deg2rad(rng.uniform(-3.5, 3.5))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (corners - corners.mean(axis=0)) @ rot.T * rng.uniform(0.75, 1.3)
    if rng.random() < 0.4:
        moved += rng.uniform(-0.03, 0.03, size=(4, 2)) * [w, h]
    margin = rng.uniform(12, 70, size=4)
    moved -= moved.min(axis=0) - margin[:2]
    size = (int(moved[:, 0].max() + margin[2]), int(moved[:, 1].max() + margin[3]))
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    return np.asarray(
        cv2.warpPerspective(
            clean, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=surround
        )
    )


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates as a column and a row vector (they broadcast to the image)."""
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    return yy, xx


def _motion_kernel(rng: np.random.Generator, k: int) -> np.ndarray:
    kernel: np.ndarray = np.zeros((k, k), np.float32)
    a = rng.uniform(0, math.pi)
    c = (k - 1) / 2
    for s in np.linspace(-c, c, 4 * k):
        kernel[round(c + s * math.sin(a)), round(c + s * math.cos(a))] = 1
    return np.asarray(kernel / kernel.sum(), dtype=np.float32)


def damage(clean: np.ndarray, style: BroadStyle, rng: np.random.Generator) -> np.ndarray:
    """Photograph or scan the screen: warp, light, blur, resolution, moiré, noise (grey uint8)."""
    surround = int(rng.integers(20, 120)) if rng.random() < 0.3 else int(rng.integers(140, 256))
    img: np.ndarray = _warp(clean, rng, surround).astype(np.float32)
    shape = (img.shape[0], img.shape[1])
    yy: np.ndarray | None = None
    xx: np.ndarray | None = None
    if rng.random() < 0.4:  # uneven light: a linear or radial gain
        yy, xx = _grid(shape)
        lo, hi = rng.uniform(0.6, 0.9), rng.uniform(1.0, 1.15)
        if rng.random() < 0.5:
            phi = rng.uniform(0, 2 * math.pi)
            d = xx * math.cos(phi) + yy * math.sin(phi)
            d = (d - d.min()) / max(float(d.max() - d.min()), 1.0)
        else:
            d = np.hypot(xx - rng.uniform(0, shape[1]), yy - rng.uniform(0, shape[0]))
            d = (d / max(float(d.max()), 1.0)) ** 2
        img *= hi - (hi - lo) * d
    if rng.random() < 0.2:  # a shadow band
        if yy is None or xx is None:
            yy, xx = _grid(shape)
        phi = rng.uniform(0, math.pi)
        px, py = rng.uniform(0.2, 0.8) * shape[1], rng.uniform(0.2, 0.8) * shape[0]
        dist = np.abs((xx - px) * math.sin(phi) - (yy - py) * math.cos(phi))
        band = (dist < rng.uniform(0.05, 0.15) * min(shape)).astype(np.float32)
        band = cv2.GaussianBlur(band, (0, 0), float(rng.uniform(4, 20)))
        img *= 1 - (1 - rng.uniform(0.55, 0.85)) * band
    if rng.random() < 0.2:  # moiré: two close gratings beating
        if yy is None or xx is None:
            yy, xx = _grid(shape)
        phi, period = rng.uniform(0, math.pi), rng.uniform(3.0, 9.0)
        amp = rng.uniform(2.0, 9.0)
        for dphi, dper in ((0.0, 1.0), (rng.uniform(-0.06, 0.06), rng.uniform(0.94, 1.06))):
            p = phi + dphi
            img += amp * np.sin(2 * math.pi * (xx * math.cos(p) + yy * math.sin(p)) / (period * dper))
    roll = rng.random()
    if roll < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.5)))
    elif roll < 0.5:
        img = cv2.filter2D(
            img, -1, _motion_kernel(rng, int(rng.integers(3, 8))), borderType=cv2.BORDER_REPLICATE
        )
    if rng.random() < 0.3:  # resolution loss, then back up
        f = float(rng.uniform(0.5, 0.8))
        small = cv2.resize(
            img, (max(1, int(shape[1] * f)), max(1, int(shape[0] * f))), interpolation=cv2.INTER_AREA
        )
        up = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST][int(rng.integers(3))]
        img = cv2.resize(small, (shape[1], shape[0]), interpolation=up)
    img = (img - 128.0) * rng.uniform(0.75, 1.15) + 128.0 + rng.uniform(-20, 20)
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(rng.uniform(0.5, 8.0))
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:  # salt and pepper
        p = float(rng.uniform(0.001, 0.01))
        hit = rng.random(shape)
        out[hit < p / 2] = 0
        out[(hit >= p / 2) & (hit < p)] = 255
    return out


def encode_grey(grey: np.ndarray, jpeg_quality: int | None) -> bytes:
    """PNG when quality is None, else JPEG at that quality (OpenCV's encoders: faster than PIL's)."""
    if jpeg_quality is None:
        ok, buf = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError("image encoding failed")
    return bytes(buf)
