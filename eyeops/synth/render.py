"""Render a device's result screen with true values, then photograph/scan it with realistic damage."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from eyeops.devices.layout import DeviceLayout, FieldSpec

if TYPE_CHECKING:
    from eyeops.synth.broad import BroadStyle


@dataclass(frozen=True)
class ExamStyle:
    """Everything random about one rendered exam, drawn from a seed."""

    font: Path
    value_size: int
    background: int
    ink: int
    scale: float
    rotation_deg: float
    perspective: float
    canvas_gray: int
    blur_sigma: float
    noise_sigma: float
    brightness: float
    contrast: float
    moire: float
    jpeg_quality: int | None
    stroke: int = 0
    stretch: float = 1.0


def sample_style(rng: np.random.Generator, fonts: list[Path], *, clean: bool = False) -> ExamStyle:
    """Draw a style. Ranges follow the OCR issue: ±3° rotation, JPEG 30–95, blur, noise, moiré."""
    font = fonts[int(rng.integers(0, len(fonts)))]
    if clean:
        return ExamStyle(font, 26, 250, 20, 1.0, 0.0, 0.0, 255, 0.0, 0.0, 1.0, 1.0, 0.0, None)
    photo = rng.random() < 0.3
    style = ExamStyle(
        font=font,
        value_size=int(rng.integers(21, 29)),
        background=int(rng.integers(215, 256)),
        ink=int(rng.integers(0, 70)),
        scale=float(rng.uniform(0.75, 1.35)),
        rotation_deg=float(rng.uniform(-3.0, 3.0)),
        perspective=float(rng.uniform(0.0, 0.035)) if photo else 0.0,
        canvas_gray=int(rng.integers(20, 120)) if photo else int(rng.integers(150, 256)),
        blur_sigma=float(rng.uniform(0.0, 1.3)),
        noise_sigma=float(rng.uniform(1.0, 9.0)),
        brightness=float(rng.uniform(-25, 20)),
        contrast=float(rng.uniform(0.75, 1.15)),
        moire=float(rng.uniform(4, 14)) if photo and rng.random() < 0.6 else 0.0,
        jpeg_quality=int(rng.integers(30, 96)) if rng.random() < 0.8 else None,
    )
    # Glyph variation (faux bold, condensed/expanded), drawn last so earlier draws stay put.
    stroke = 1 if rng.random() < 0.2 else 0
    return replace(style, stroke=stroke, stretch=float(rng.uniform(0.85, 1.15)))


@lru_cache(maxsize=256)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _fit_font(
    draw: ImageDraw.ImageDraw, path: Path, size: int, text: str, width: int
) -> ImageFont.FreeTypeFont:
    while size > 10:
        font = _font(path, size)
        if draw.textlength(text, font=font) <= width:
            return font
        size -= 1
    return _font(path, size)


def _draw_value(
    img: Image.Image, draw: ImageDraw.ImageDraw, spec: FieldSpec, text: str, style: ExamStyle, align: str
) -> None:
    x, y, w, h = spec.box
    pad = 8
    font = _fit_font(draw, style.font, style.value_size, text, int((w - 2 * pad) / style.stretch))
    if style.stretch == 1.0 and style.stroke == 0:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        tx = x + pad - left if align == "left" else x + w - pad - tw - left
        draw.text((tx, y + (h - th) // 2 - top), text, fill=style.ink, font=font)
        return
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=style.stroke)
    mask = Image.new("L", (int(right - left) + 2, int(bottom - top) + 2), 0)
    ImageDraw.Draw(mask).text(
        (1 - left, 1 - top), text, fill=255, font=font, stroke_width=style.stroke, stroke_fill=255
    )
    mask = mask.resize((min(max(1, round(mask.width * style.stretch)), w - 2 * pad), mask.height))
    tx = x + pad if align == "left" else x + w - pad - mask.width
    ink = Image.new("L", mask.size, style.ink)
    img.paste(ink, (tx, y + (h - mask.height) // 2), mask)


def render_clean(layout: DeviceLayout, texts: dict[str, str], style: ExamStyle) -> np.ndarray:
    """The device's own drawing of the exam, in template pixels, greyscale uint8."""
    t = layout.template
    img = Image.new("L", (t.width, t.height), color=style.background)
    draw = ImageDraw.Draw(img)
    inset, fw = t.frame_inset, t.frame_width
    draw.rectangle(
        (inset - fw, inset - fw, t.width - inset + fw - 1, t.height - inset + fw - 1),
        outline=style.ink,
        width=fw,
    )
    tx, ty, tw, th = t.title_box
    if t.style == "screen":
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=min(style.ink + 40, 110))
        title_fill = style.background
    else:
        draw.line((tx, ty + th, tx + tw, ty + th), fill=style.ink, width=2)
        title_fill = style.ink
    title_font = _font(style.font, 26)
    draw.text((tx + 14, ty + 10), t.title, fill=title_fill, font=title_font)
    label_font = _font(style.font, 20)
    for spec in layout.all_fields():
        x, y, w, h = spec.box
        label = spec.label
        lw = draw.textlength(label, font=label_font)
        label_x = x - 12 - lw if spec in layout.header else x - 200
        draw.text((label_x, y + 10), label, fill=style.ink, font=label_font)
        if t.style == "screen":
            draw.rectangle((x, y, x + w, y + h), outline=min(style.background, 200) - 40, width=1)
        if spec.unit:
            draw.text((x + w + 8, y + 10), spec.unit, fill=style.ink, font=label_font)
        _draw_value(img, draw, spec, texts[spec.name], style, t.value_align)
    return np.asarray(img)


def _homography(
    layout: DeviceLayout, style: ExamStyle, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    t = layout.template
    corners = np.array([[0, 0], [t.width, 0], [t.width, t.height], [0, t.height]], dtype=np.float64)
    centre = corners.mean(axis=0)
    theta = np.deg2rad(style.rotation_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (corners - centre) @ rot.T * style.scale
    if style.perspective > 0:
        moved += rng.uniform(-style.perspective, style.perspective, size=(4, 2)) * [t.width, t.height]
    margin = rng.uniform(15, 70, size=4)
    moved -= moved.min(axis=0) - margin[:2]
    size = (int(moved[:, 0].max() + margin[2]), int(moved[:, 1].max() + margin[3]))
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    return matrix, size


def degrade(
    clean: np.ndarray, layout: DeviceLayout, style: ExamStyle, rng: np.random.Generator
) -> np.ndarray:
    """Place the screen in a scan or photo: warp, blur, moiré, light, sensor noise. Returns RGB."""
    matrix, size = _homography(layout, style, rng)
    canvas = cv2.warpPerspective(
        clean,
        matrix,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=style.canvas_gray,
    )
    img: np.ndarray = canvas.astype(np.float32)
    if style.blur_sigma > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), style.blur_sigma)
    h, w = img.shape
    if style.moire > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3.0, 7.0)
        img += style.moire * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    img = (img - 128.0) * style.contrast + 128.0 + style.brightness
    img += rng.normal(0.0, style.noise_sigma, size=img.shape).astype(np.float32)
    grey = np.clip(img, 0, 255).astype(np.uint8)
    tint = rng.uniform(0.92, 1.0, size=3)
    return np.clip(grey[..., None] * tint[None, None, :], 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, jpeg_quality: int | None) -> bytes:
    """PNG when quality is None, else JPEG at that quality."""
    buf = io.BytesIO()
    image = Image.fromarray(rgb)
    if jpeg_quality is None:
        image.save(buf, format="PNG", compress_level=1)
    else:
        image.save(buf, format="JPEG", quality=jpeg_quality)
    return buf.getvalue()


@dataclass(frozen=True)
class RenderedExam:
    device_kind: str
    image: bytes
    texts: dict[str, str]
    values: dict[str, float | str | None]
    style: ExamStyle | BroadStyle  # BroadStyle: the broad training renderer (eyeops.synth.broad)


def render_exam(
    layout: DeviceLayout,
    values: dict[str, float | str | None],
    texts: dict[str, str],
    style: ExamStyle,
    rng: np.random.Generator,
) -> RenderedExam:
    clean = render_clean(layout, texts, style)
    rgb = degrade(clean, layout, style, rng)
    return RenderedExam(layout.kind, encode(rgb, style.jpeg_quality), texts, values, style)
