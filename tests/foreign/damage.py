"""The foreign renderer's damage and encoding: light (a small rotation and shift, JPEG or blur) and full
(a photo of the page on a desk or a scan, uneven light, a shadow band, glare, blur, resampling, noise,
salt and pepper, JPEG), each encoded as PNG or JPEG with notes of what was done."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tests.foreign.panel import _lowfreq


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
