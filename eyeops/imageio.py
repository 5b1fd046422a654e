"""Validate and decode exam images before any work is done on them."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from eyeops.errors import InvalidImage, PayloadTooLarge

ACCEPTED = "PNG, JPEG or TIFF"
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_format(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def file_extension(data: bytes) -> str:
    """The usual file extension for an image's bytes ("bin" when it is not one we accept)."""
    return {"PNG": "png", "JPEG": "jpg", "TIFF": "tif"}.get(sniff_format(data) or "", "bin")


def _describe(data: bytes) -> str:
    if data[128:132] == b"DICM":
        return "a DICOM file (send its pixel data as PNG; the gateway does this)"
    if data.lstrip()[:1] in (b"{", b"["):
        return "JSON text"
    if data[:5] == b"%PDF-":
        return "a PDF document"
    return f"{len(data)} bytes starting with {data[:8].hex()}"


def open_header(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Open an image lazily (header only) behind the decompression-bomb guards: PayloadTooLarge when
    its pixel count is over `max_pixels`, InvalidImage when the header cannot be read."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"decompression bomb refused: {exc}") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImage(f"{fmt} header unreadable ({exc}); accepted formats: {ACCEPTED}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
            " (decompression bomb guard)"
        )
    return image


def _png_through_opencv(data: bytes, header: Image.Image) -> np.ndarray | None:
    """An 8-bit grey or colour PNG decoded by libpng through OpenCV, in four fifths of Pillow's
    time, and the same grey as training and the offline evaluations see (eyeops.align.decode_grey):
    Pillow's colour-to-grey rounding differs by one level on about a tenth of the pixels. None for
    any other image, one OpenCV cannot read whole (Pillow then names what is wrong), or where
    OpenCV is not installed (the gateway's install). JPEG stays with Pillow, which refuses a
    truncated file where OpenCV returns its grey remainder."""
    if header.format != "PNG" or header.mode not in ("L", "RGB"):
        return None
    try:
        import cv2
    except ImportError:
        return None
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None or grey.shape != (header.height, header.width):
        return None
    return np.asarray(grey)


def decode_exam_image(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Greyscale pixels of a PNG/JPEG/TIFF, or InvalidImage (400) / PayloadTooLarge (413)."""
    if len(data) == 0:
        raise InvalidImage(f"empty image; send a {ACCEPTED} file")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes, over the limit of {max_bytes} bytes")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImage(f"received {_describe(data)}, not an image; accepted formats: {ACCEPTED}")
    image = open_header(data, fmt, max_pixels)
    fast = _png_through_opencv(data, image)
    if fast is not None:
        return fast
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
            grey = image.convert("L")
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImage(f"{fmt} image is truncated or corrupt ({exc}); resend the whole file") from exc
    return np.asarray(grey)
