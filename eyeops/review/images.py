"""What a reviewer looks at, cut by the OCR service's own code: the original image, the image
aligned to the layout with its boxes drawn, and each field's region and recogniser crop. An exam
that failed alignment is warped from the four screen corners a reviewer marked instead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from eyeops.align import Alignment, align, warp_to_template
from eyeops.devices.layout import DeviceLayout
from eyeops.errors import EyeopsError
from eyeops.imageio import decode_exam_image
from eyeops.regions import crop_regions
from eyeops.settings import Settings

DISPLAY_SIDE = 1400  # long side, in pixels, of the original as the console shows it


class BadCorners(EyeopsError):
    """Four corners that do not make a screen; the message says what to mark."""

    status_code = 400


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ValueError("PNG encoding failed")
    return bytes(data)


@dataclass
class ExamView:
    original: np.ndarray  # grey, as decoded
    aligned: np.ndarray | None = None  # template pixels, when alignment (or marked corners) worked
    crops: dict[str, np.ndarray] = field(default_factory=dict)  # field → recogniser crop
    alignment: dict[str, object] | None = None
    error: str | None = None

    def original_png(self) -> bytes:
        h, w = self.original.shape
        scale = min(1.0, DISPLAY_SIDE / max(h, w))
        shown = self.original
        if scale < 1.0:
            shown = cv2.resize(
                self.original, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        return png(shown)

    def aligned_png(self, layout: DeviceLayout) -> bytes | None:
        if self.aligned is None:
            return None
        canvas = cv2.cvtColor(self.aligned, cv2.COLOR_GRAY2BGR)
        for spec in layout.all_fields():
            x, y, w, h = spec.box
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 140, 255), 2)
            cv2.putText(
                canvas, spec.name, (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 90, 200), 1
            )
        return png(canvas)

    def region_png(self, layout: DeviceLayout, name: str) -> bytes | None:
        if self.aligned is None:
            return None
        x, y, w, h = layout.field(name).box
        pad = max(2, h // 6)
        top, left = max(0, y - pad), max(0, x - pad)
        return png(self.aligned[top : y + h + pad, left : x + w + pad])


def warp_from_corners(
    grey: np.ndarray, corners: Sequence[Sequence[float]], layout: DeviceLayout
) -> np.ndarray:
    """The image in template pixels, from the screen's corners on the original (top-left,
    top-right, bottom-right, bottom-left, in the original's pixels)."""
    points = np.asarray(corners, dtype=np.float64)
    h, w = grey.shape
    if points.shape != (4, 2) or not np.all(np.isfinite(points)):
        raise BadCorners("mark exactly four corners: top-left, top-right, bottom-right, bottom-left")
    if (
        points[:, 0].min() < -0.05 * w
        or points[:, 0].max() > 1.05 * w
        or points[:, 1].min() < -0.05 * h
        or (points[:, 1].max() > 1.05 * h)
    ):
        raise BadCorners("the corners must lie on the image")
    contour = points.astype(np.float32).reshape(-1, 1, 2)
    if not cv2.isContourConvex(contour) or cv2.contourArea(contour) < 0.01 * w * h:
        raise BadCorners(
            "the corners must enclose the screen, in order: top-left, top-right, bottom-right, bottom-left"
        )
    t = layout.template
    template = np.array([[0, 0], [t.width, 0], [t.width, t.height], [0, t.height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(template, points.astype(np.float32))
    return warp_to_template(grey, matrix, layout)


def view_exam(
    image: bytes,
    layout: DeviceLayout,
    settings: Settings,
    corners: Sequence[Sequence[float]] | None = None,
) -> ExamView:
    """Decode, align (or warp from marked corners) and crop as the OCR service does."""
    grey = decode_exam_image(image, settings.max_image_bytes, settings.max_image_pixels)
    view = ExamView(grey)
    if corners is not None:
        view.aligned = warp_from_corners(grey, corners, layout)
        view.alignment = {"method": "marked corners"}
    else:
        try:
            found: Alignment = align(grey, layout)
        except EyeopsError as exc:
            view.error = exc.message
            return view
        view.aligned = found.aligned
        view.alignment = found.describe()
    specs = list(layout.all_fields())
    stack = crop_regions(view.aligned, specs, layout.template.value_align)
    view.crops = {s.name: stack[i] for i, s in enumerate(specs)}
    return view
