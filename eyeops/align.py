"""Align an exam image to its device template and cut out the field regions.

The template's frame (a dark rectangle around the screen) is the reference: its inner edge is found
as the smallest large quadrilateral contour, its sides are refined by line fits, and a homography
maps the image back into template pixels. This holds under offset, scale, ±3° rotation and
moderate perspective, and does not depend on the font the device uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.devices.layout import DeviceLayout, FieldSpec
from eyeops.errors import AlignmentFailed

_MIN_AREA_FRACTION = 0.25


def _order_corners(points: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left."""
    s = points.sum(axis=1)
    d = np.diff(points, axis=1).ravel()
    return np.array(
        [points[np.argmin(s)], points[np.argmin(d)], points[np.argmax(s)], points[np.argmax(d)]],
        dtype=np.float64,
    )


def _refine_corners(contour: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Fit a line to each side's contour points and intersect neighbours (sub-pixel corners)."""
    pts = contour.reshape(-1, 2).astype(np.float64)
    lines = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        ab = b - a
        length = float(np.linalg.norm(ab))
        t = ((pts - a) @ ab) / (length**2)
        normal = np.array([-ab[1], ab[0]]) / length
        dist = np.abs((pts - a) @ normal)
        keep = (t > 0.08) & (t < 0.92) & (dist < 4.0)
        if keep.sum() < 10:
            return corners
        vx, vy, x0, y0 = cv2.fitLine(pts[keep].astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0]), np.array([vx, vy])))
    refined = []
    for i in range(4):
        (p1, d1), (p2, d2) = lines[i - 1], lines[i]
        m = np.array([d1, -d2]).T
        if abs(np.linalg.det(m)) < 1e-6:
            return corners
        s = np.linalg.solve(m, p2 - p1)
        refined.append(p1 + s[0] * d1)
    return np.array(refined)


def find_frame(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of the frame's inner edge in image pixels, or AlignmentFailed."""
    t = layout.template
    expected = (t.width - 2 * t.frame_inset) / (t.height - 2 * t.frame_inset)
    smooth = cv2.GaussianBlur(grey, (5, 5), 0)
    _, binary = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    image_area = grey.shape[0] * grey.shape[1]
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for contour in contours:
        area = cv2.contourArea(contour)
        if area < _MIN_AREA_FRACTION * image_area or area > 0.97 * image_area:
            continue
        approx = cv2.approxPolyDP(contour, 0.02 * cv2.arcLength(contour, True), True)
        if len(approx) != 4 or not cv2.isContourConvex(approx):
            continue
        corners = _order_corners(approx.reshape(4, 2).astype(np.float64))
        width = np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[2] - corners[3])
        height = np.linalg.norm(corners[3] - corners[0]) + np.linalg.norm(corners[2] - corners[1])
        if abs(width / height / expected - 1.0) > 0.12:
            continue
        if best is None or area < best[0]:
            best = (area, contour, corners)
    if best is None:
        raise AlignmentFailed(
            f"alignment failed: no frame of a {layout.kind} screen found in the image; "
            "send the full, uncropped result screen or printout"
        )
    return _refine_corners(best[1], best[2])


def align_to_template(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    """The image warped into template pixels (template.height × template.width)."""
    t = layout.template
    corners = find_frame(grey, layout)
    i = float(t.frame_inset)
    target = np.array(
        [[i, i], [t.width - i, i], [t.width - i, t.height - i], [i, t.height - i]], dtype=np.float32
    )
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(
        grey, matrix, (t.width, t.height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )


def normalize_polarity(region: np.ndarray) -> np.ndarray:
    """Dark text on a light ground, whatever the screen drew: a value box's ground covers most of
    it, so when its median sits on the dark side of the box's range the box is inverted. Devices
    with light-on-dark screens then read like the printouts the recogniser learnt from."""
    if region.size == 0:
        return region
    low, high = np.percentile(region, (2, 98))
    if high - low < 24 or np.median(region) >= (low + high) / 2:
        return region
    return np.asarray(255 - region, dtype=np.uint8)


def prepare_crop(region: np.ndarray) -> np.ndarray:
    """A field region resized to the recogniser's input (CROP_HEIGHT × CROP_WIDTH, uint8 grey),
    dark on light."""
    return cv2.resize(normalize_polarity(region), (CROP_WIDTH, CROP_HEIGHT), interpolation=cv2.INTER_AREA)


def crop_regions(aligned: np.ndarray, fields: Sequence[FieldSpec]) -> np.ndarray:
    """Stack of prepared crops, one per field, in the order given: (N, 32, 128) uint8."""
    crops = []
    for spec in fields:
        x, y, w, h = spec.box
        crops.append(prepare_crop(aligned[y : y + h, x : x + w]))
    return np.stack(crops)


def decode_grey(image: bytes) -> np.ndarray:
    """Decode encoded image bytes to greyscale (no validation: see eyeops.imageio for that)."""
    arr = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise AlignmentFailed("alignment failed: image could not be decoded")
    return arr
