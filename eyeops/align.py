"""Align an exam image to its device template (the field regions are cut by eyeops.regions).

Three ways to find the screen, all judged by one quality score:

- **reference** (devices onboarded from a sample export, `eyeops devices onboard`): ORB keypoints of
  the device's static drawing (its reference image, value boxes masked) matched to the exam's,
  a homography fitted by RANSAC. Tried first when the layout has a reference image.

- **frame**: the template's frame (a dark rectangle around the screen) is found as the smallest
  large quadrilateral contour, its sides refined by line fits. Exact, fast, and what our own exports
  draw; a real device's capture often has no frame, and a shadow or a light gradient breaks it.
- **layout**: the layout itself is the reference. Text is found whatever its polarity (morphological
  top-hat and black-hat), the page is deskewed by its text rows, and text lines are cut out (ruled
  lines, box outlines and logos dropped). Scale and vertical offset come from pairs of lines matched
  to pairs of box rows (a line of 30–105 % of the box's height on as many rows as possible), the
  horizontal offset from where the layout puts values (`value_align`, a few pixels in from the box's
  edge); each box is then matched to its own line and an affine transform is fitted (RANSAC).
  No border, font or colour is assumed: only that the values are drawn inside their boxes, on the
  side the layout says.

The **quality score** is the share of value boxes whose ink lies inside the box rather than in the
gaps above and below it, measured on the aligned image. Below `MIN_SCORE` the exam is refused with
the score (422), so a crop is never cut from a wrongly chosen quadrilateral.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from eyeops.align_layout import layout_matrix
from eyeops.devices.layout import DeviceLayout
from eyeops.errors import AlignmentFailed
from eyeops.ink import stroke_feature, value_boxes
from eyeops.regions import grey_percentiles

_MIN_AREA_FRACTION = 0.25
MIN_SCORE = 0.75  # share of value boxes whose ink sits inside them (see box_agreement)


@dataclass(frozen=True)
class Alignment:
    """An image warped into template pixels, how, and how well."""

    aligned: np.ndarray  # grey, template.height × template.width
    matrix: np.ndarray  # 3×3: template pixels → image pixels
    method: str  # "frame" or "layout"
    score: float  # box_agreement of `aligned`, 0..1
    tried: dict[str, float] = field(default_factory=dict)  # method → score, for the log

    def describe(self) -> dict[str, object]:
        """What the service logs per exam: the method, the score and the corners found."""
        t = self.aligned.shape
        corners = np.array([[0, 0], [t[1], 0], [t[1], t[0]], [0, t[0]]], dtype=np.float64)
        mapped = cv2.perspectiveTransform(corners[None], self.matrix)[0]
        return {
            "method": self.method,
            "score": round(self.score, 3),
            "tried": {k: round(v, 3) for k, v in self.tried.items()},
            "corners": [[round(float(x), 1), round(float(y), 1)] for x, y in mapped],
        }


def _box_bands(box: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Rows of a box's inside and of the gaps just above and below it (template pixels); the box's
    own outline (a line on its edge) is in neither."""
    _, y, _, h = box
    pad = max(2, round(0.06 * h))
    inside = (y + pad, y + h - pad)
    gap = max(3, round(0.4 * h))
    return inside, (y - gap, y - pad), (y + h + pad, y + h + gap)


def box_agreement(aligned: np.ndarray, layout: DeviceLayout) -> float:
    """Share of the layout's value boxes that hold ink and whose ink lies inside the box rather than
    in the gaps above and below it. 1.0 for a good alignment; a crop cut half a row off scores ~0."""
    boxes = value_boxes(layout)
    height, width = aligned.shape
    good = 0
    for spec in boxes:
        x, _, w, _ = spec.box
        (i0, i1), (a0, a1), (b0, b1) = _box_bands(spec.box)
        # the stroke feature of this box and its gaps only (with the kernel's reach around them)
        top, bottom = max(0, a0 - 8), min(height, b1 + 8)
        left, right = max(0, x - 8), min(width, x + w + 8)
        if bottom <= top or right <= left:
            continue
        feature = stroke_feature(aligned[top:bottom, left:right], 11)
        cols = slice(max(0, x + 3 - left), max(0, x + w - 3 - left))

        def rows(lo: int, hi: int, top: int = top) -> slice:
            return slice(max(0, lo - top), max(0, hi - top))

        inner = feature[rows(i0, i1), cols]
        if inner.size == 0:
            continue
        (strong,) = grey_percentiles(inner, (99,))
        if strong < 20:  # no stroke stands out: an empty box
            continue
        level = max(10.0, 0.45 * strong)  # this box's own contrast sets what counts as ink
        inside = float((inner > level).sum())
        outside = 0.0
        for band in (feature[rows(a0, a1), cols] > level, feature[rows(b0, b1), cols] > level):
            if band.size:
                text_rows = band.mean(axis=1) < 0.6  # a ruled line across the gap is not misplaced text
                outside += float(band[text_rows].sum())
        if inside / inner.size >= 0.005 and inside >= 3.0 * outside:
            good += 1
    return good / max(1, len(boxes))


# ----------------------------------------------------------------------------------------- frame


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


def find_frame(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
    """Corners (TL, TR, BR, BL) of the frame's inner edge in image pixels, or None."""
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
        return None
    return _refine_corners(best[1], best[2])


def _frame_matrix(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
    """Template → image homography from the frame, or None when there is no frame."""
    corners = find_frame(grey, layout)
    if corners is None:
        return None
    t = layout.template
    i = float(t.frame_inset)
    target = np.array([[i, i], [t.width - i, i], [t.width - i, t.height - i], [i, t.height - i]], np.float32)
    return np.asarray(cv2.getPerspectiveTransform(target, corners.astype(np.float32)), dtype=np.float64)


def static_features(
    reference: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions and ORB descriptors of a device's static drawing: the reference image
    outside its value boxes (what onboarding counts and registration matches)."""
    mask = np.full(reference.shape, 255, np.uint8)
    for x, y, w, h in boxes:
        mask[max(0, y - 6) : y + h + 6, max(0, x - 6) : x + w + 6] = 0
    keypoints, descriptors = cv2.ORB.create(nfeatures=4000, fastThreshold=10).detectAndCompute(
        reference, mask
    )
    points = np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2)
    return points, descriptors if descriptors is not None else np.zeros((0, 32), np.uint8)


@lru_cache(maxsize=32)
def _reference_features(
    path: str, boxes: tuple[tuple[int, int, int, int], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions and ORB descriptors of a reference image outside its value boxes."""
    reference = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if reference is None:
        raise AlignmentFailed(
            f"alignment failed: the device's reference image {Path(path).name} cannot be read"
        )
    return static_features(reference, boxes)


def _reference_matrix(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
    """Template → image homography from the device's reference image, or None."""
    t = layout.template
    if t.reference is None:
        return None
    ref_points, ref_desc = _reference_features(t.reference, tuple(f.box for f in layout.all_fields()))
    if len(ref_points) < 12:
        return None
    f = min(1.0, 1.5 * max(t.width, t.height) / max(grey.shape))
    work = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else grey
    keypoints, desc = cv2.ORB.create(nfeatures=6000, fastThreshold=10).detectAndCompute(work, None)
    if desc is None or len(keypoints) < 12:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ref_desc, desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < 12:
        return None
    src = ref_points[[m.queryIdx for m in good]]
    dst = np.array([keypoints[m.trainIdx].pt for m in good], np.float64) / f
    matrix, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0 / f)
    if matrix is None or inliers is None or int(inliers.sum()) < 12:
        return None
    return np.asarray(matrix, dtype=np.float64)


# ------------------------------------------------------------------------------------------ align


def warp_to_template(grey: np.ndarray, matrix: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    """The image in template pixels, given `matrix` (template pixels → image pixels)."""
    t = layout.template
    return cv2.warpPerspective(
        grey,
        matrix,
        (t.width, t.height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _on_picture(grey: np.ndarray, matrix: np.ndarray, layout: DeviceLayout) -> bool:
    """Whether the screen found lies (almost) wholly on the picture: 8 % of the template's width or
    height may stick out, as on a tight crop; a fit that puts labels in the value boxes does not."""
    t = layout.template
    corners = np.array([[[0, 0], [t.width, 0], [t.width, t.height], [0, t.height]]], np.float64)
    mapped = cv2.perspectiveTransform(corners, matrix)[0]
    h, w = grey.shape
    side = np.linalg.norm(mapped[1] - mapped[0]), np.linalg.norm(mapped[3] - mapped[0])
    slack_x, slack_y = 0.08 * side[0], 0.08 * side[1]
    xs, ys = mapped[:, 0], mapped[:, 1]
    return bool(
        xs.min() >= -slack_x and xs.max() <= w + slack_x and ys.min() >= -slack_y and ys.max() <= h + slack_y
    )


def align(grey: np.ndarray, layout: DeviceLayout, min_score: float = MIN_SCORE) -> Alignment:
    """The image in template pixels with its quality score; AlignmentFailed when no way of finding
    the screen scores at least `min_score`."""
    tried: dict[str, float] = {}
    best: Alignment | None = None
    finders = (("reference", _reference_matrix),) if layout.template.reference else ()
    for method, finder in (*finders, ("frame", _frame_matrix), ("layout", layout_matrix)):
        matrix = finder(grey, layout)
        if matrix is None or not np.all(np.isfinite(matrix)) or not _on_picture(grey, matrix, layout):
            tried[method] = 0.0
            continue
        aligned = warp_to_template(grey, matrix, layout)
        score = box_agreement(aligned, layout)
        tried[method] = score
        if best is None or score > best.score:
            best = Alignment(aligned, matrix, method, score)
        if score >= min_score:  # the first way that passes wins: they are tried most exact first
            break
    if best is None or best.score < min_score:
        got = max(tried.values(), default=0.0)
        raise AlignmentFailed(
            f"alignment failed: the image does not match the {layout.kind} layout (quality {got:.2f}, "
            f"at least {min_score:.2f} needed: text inside the value boxes); send the whole result "
            "screen of that device, upright and not mirrored"
        )
    return Alignment(best.aligned, best.matrix, best.method, best.score, tried)


def align_to_template(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    """The image warped into template pixels (template.height × template.width)."""
    return align(grey, layout).aligned


def decode_grey(image: bytes) -> np.ndarray:
    """Decode encoded image bytes to greyscale (no validation: see eyeops.imageio for that)."""
    arr = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise AlignmentFailed("alignment failed: image could not be decoded")
    return arr
