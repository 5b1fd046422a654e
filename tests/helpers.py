"""Small builders shared by tests: images that are bad in one precise way."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def noise_png(height: int, width: int, seed: int = 0) -> bytes:
    """Incompressible: its size in bytes is about height × width."""
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, size=(height, width), dtype=np.uint8))


def bomb_png(side: int) -> bytes:
    """A few kilobytes that decode to side × side pixels."""
    return png_bytes(np.full((side, side), 255, np.uint8))


def unalignable_png() -> bytes:
    """A real image with no device frame in it: a photo-like gradient with blobs."""
    yy, xx = np.mgrid[0:600, 0:800]
    img = (128 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0)).astype(np.uint8)
    return png_bytes(img)
