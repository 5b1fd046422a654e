"""The stress renderer's damage: what photographing or capturing a screen does to the picture (rotation,
scale and offset, perspective, uneven light, a shadow, moiré, blur, lower resolution, salt and pepper,
JPEG), at the levels none, light and full."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from tests.stress.screen import RGB, _rgb

DAMAGE_LEVELS = ("none", "light", "full")


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
