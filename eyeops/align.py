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

from eyeops.devices.layout import DeviceLayout, FieldSpec
from eyeops.errors import AlignmentFailed
from eyeops.regions import grey_percentiles

_MIN_AREA_FRACTION = 0.25
MIN_SCORE = 0.75  # share of value boxes whose ink sits inside them (see box_agreement)
_WORK_SIDE = 560  # long side, in pixels, of the image the layout search works on


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


# --------------------------------------------------------------------------------------- ink map


def _stroke_feature(grey: np.ndarray, stroke: int) -> np.ndarray:
    """Contrast of thin structures (text, lines) against their surroundings, whatever their
    polarity: the larger of the morphological black-hat and top-hat with a `stroke`-sided kernel."""
    smooth = cv2.GaussianBlur(grey, (3, 3), 0.8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (stroke, stroke))
    return np.asarray(
        np.maximum(
            cv2.morphologyEx(smooth, cv2.MORPH_BLACKHAT, kernel),
            cv2.morphologyEx(smooth, cv2.MORPH_TOPHAT, kernel),
        )
    )


def ink_map(grey: np.ndarray, stroke: int) -> np.ndarray:
    """1 where thin dark-on-light or light-on-dark structure (text, lines) lies, else 0 (uint8);
    filled areas thicker than `stroke` are not ink."""
    feature = _stroke_feature(grey, stroke)
    level, _ = cv2.threshold(feature, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (feature > max(level, 24.0)).astype(np.uint8)


def _value_boxes(layout: DeviceLayout) -> list[FieldSpec]:
    """The boxes that always hold text: optional fields may be blank."""
    return [f for f in layout.all_fields() if not f.optional]


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
    boxes = _value_boxes(layout)
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
        feature = _stroke_feature(aligned[top:bottom, left:right], 11)
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


# ---------------------------------------------------------------------------------------- layout


def _deskew_angle(ink: np.ndarray) -> float:
    """The rotation (degrees) that makes the text rows horizontal: the angle whose row profile of
    ink is the most peaked, searched over ±6°."""
    h, w = ink.shape
    centre = (w / 2, h / 2)
    src = ink.astype(np.float32)

    def peakedness(angle: float) -> float:
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rows = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_NEAREST).sum(axis=1)
        return float((rows.astype(np.float64) ** 2).sum())

    coarse = max(np.arange(-6.0, 6.01, 0.5), key=peakedness)
    return float(max(np.arange(coarse - 0.4, coarse + 0.41, 0.1), key=peakedness))


def _text_lines(ink: np.ndarray) -> np.ndarray:
    """Bounding boxes (x0, y0, x1, y1) of the text lines in a deskewed ink map: characters closed
    into words, words into lines."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
    thin = (np.minimum(w, h) <= 3) & (np.maximum(w, h) >= 20)  # rules and grid lines
    hollow = (w * h >= 400) & (area < 0.12 * w * h)  # box outlines, frames, rings of a logo
    drop = thin | hollow
    drop[0] = False
    text = np.where(drop[labels], 0, ink).astype(np.uint8)
    closed = cv2.morphologyEx(text, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 3)))
    count, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    lines = []
    for x, y, w, h, area in stats[1:count]:
        if h >= 4 and w >= 0.5 * h and area >= 0.15 * w * h:
            lines.append((x, y, x + w, y + h))
    return np.array(lines, np.float64).reshape(-1, 4)


def _fit_rows(
    lines: np.ndarray, layout: DeviceLayout, scales: tuple[float, float], keep: int = 12
) -> list[tuple[float, float]]:
    """Scale and vertical offset (template → work pixels) that put a text line of plausible height
    (30–105 % of the box) in as many value boxes as possible; hypotheses from pairs of lines
    matched to pairs of box rows."""
    boxes = _value_boxes(layout)
    rows: dict[tuple[float, float], int] = {}
    for spec in boxes:
        _, y, _, h = spec.box
        key = (y + h / 2, float(h))
        rows[key] = rows.get(key, 0) + 1
    row_y = np.array([k[0] for k in rows])
    row_h = np.array([k[1] for k in rows])
    weight = np.array(list(rows.values()), np.float64)
    if len(row_y) < 2 or len(lines) < 2:
        return []
    yc = (lines[:, 1] + lines[:, 3]) / 2
    ht = lines[:, 3] - lines[:, 1]
    i, j = np.triu_indices(len(lines), 1)
    a, b = np.triu_indices(len(row_y), 1)
    li, lj = np.repeat(i, len(a)), np.repeat(j, len(a))
    ra, rb = np.tile(a, len(i)), np.tile(b, len(i))
    s = (yc[lj] - yc[li]) / (row_y[rb] - row_y[ra])
    s = np.where(s > 1e-6, s, 1e-6)
    ty = yc[li] - s * row_y[ra]
    fill_a, fill_b = ht[li] / (s * row_h[ra]), ht[lj] / (s * row_h[rb])
    plausible = (fill_a > 0.3) & (fill_a < 1.05) & (fill_b > 0.3) & (fill_b < 1.05)
    ok = (s > scales[0]) & (s < scales[1]) & plausible
    if not ok.any():
        return []
    s, ty = s[ok], ty[ok]
    # score every hypothesis against every row and line: (hyp, row, line)
    pred = s[:, None] * row_y[None, :] + ty[:, None]
    box_h = s[:, None] * row_h[None, :]
    near = np.abs(yc[None, None, :] - pred[:, :, None]) < 0.18 * box_h[:, :, None]
    fill = ht[None, None, :] / box_h[:, :, None]
    hit = (near & (fill > 0.3) & (fill < 1.05)).any(axis=2)
    score = hit.astype(np.float64) @ weight
    found: list[tuple[float, float]] = []
    for k in np.argsort(-score, kind="stable"):
        if score[k] < 0.6 * weight.sum() or len(found) >= keep:
            break
        if all(abs(s[k] / s0 - 1) > 0.03 or abs(ty[k] - t0) > 0.1 * s0 * row_h.min() for s0, t0 in found):
            found.append((float(s[k]), float(ty[k])))
    return found


_ANCHOR = 7  # template pixels from the box's edge to where a value's first (or last) ink lies


def _anchor(spec: FieldSpec, side: str) -> float:
    x, _, w, _ = spec.box
    return x + _ANCHOR if side == "left" else x + w - _ANCHOR


def _row_lines(lines: np.ndarray, spec: FieldSpec, s: float, ty: float) -> np.ndarray:
    """Indices of the lines that could be this box's value: on its row, of a plausible height."""
    _, y, _, h = spec.box
    yc = (lines[:, 1] + lines[:, 3]) / 2
    fill = (lines[:, 3] - lines[:, 1]) / (s * h)
    return np.flatnonzero((np.abs(yc - (s * (y + h / 2) + ty)) < 0.25 * s * h) & (fill > 0.3) & (fill < 1.05))


def _containing(lines: np.ndarray, spec: FieldSpec, s: float, ty: float) -> list[tuple[float, float, int]]:
    """For each line that could be this box's value, the horizontal offsets (lo, hi) that put the
    line wholly inside the box (a few pixels of slack), with the line's index."""
    x, _, w, _ = spec.box
    slack = 3 * s
    out = []
    for k in _row_lines(lines, spec, s, ty):
        lo, hi = lines[k, 2] - s * (x + w) - slack, lines[k, 0] - s * x + slack
        if hi > lo:
            out.append((float(lo), float(hi), int(k)))
    return out


def _fit_columns(
    lines: np.ndarray, layout: DeviceLayout, s: float, ty: float, width: float = np.inf
) -> tuple[float, int]:
    """Horizontal offset that puts the most value boxes around a text line of their own row, each
    line wholly inside its box, wherever in the box the device draws it; and how many boxes that is.
    Among the offsets that do, the one closest to the layout's `value_align` (values a few pixels in
    from that edge) wins: exact for a device that draws as its layout says, and for one that centres
    its values still a box around every value. Only offsets that keep the screen on a picture
    `width` pixels wide count (8 % of the screen may stick out, as in _on_picture): the labels left
    of a column of boxes are text of a plausible height too, one box width to the left."""
    side = layout.template.value_align
    screen = s * layout.template.width
    bounds = (-0.08 * screen, width - 0.92 * screen) if np.isfinite(width) else (-np.inf, np.inf)
    edge = 0 if side == "left" else 2
    intervals: list[tuple[float, float]] = []
    anchored: list[tuple[float, float, float]] = []  # (lo, hi, where the anchor would put the box)
    for spec in _value_boxes(layout):
        spans = sorted(_containing(lines, spec, s, ty))
        merged: list[tuple[float, float]] = []
        for lo, hi, k in spans:  # one box counts once, however many lines could be its value
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
            if hi <= lo:
                continue
            anchored.append((lo, hi, float(lines[k, edge] - s * _anchor(spec, side))))
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        intervals += merged
    if not intervals:
        return 0.0, 0
    events = sorted(
        [(lo, 1) for lo, _ in intervals] + [(hi, -1) for _, hi in intervals], key=lambda e: (e[0], -e[1])
    )
    depth, best, regions = 0, 0, []
    for k, (pos, step) in enumerate(events):
        depth += step
        end = events[k + 1][0] if k + 1 < len(events) else pos
        if depth > best:
            best, regions = depth, [(pos, end)]
        elif depth == best and step > 0:
            regions.append((pos, end))

    def placed(region: tuple[float, float]) -> tuple[float, float]:
        """The offset in this region nearest the anchored one, and how far the values then sit
        from their anchors (median)."""
        lo, hi = region
        prefer = [at for a, b, at in anchored if a <= (lo + hi) / 2 <= b]
        if not prefer:
            return (lo + hi) / 2, np.inf
        at = float(np.clip(np.median(prefer), lo, hi))
        return at, float(np.median(np.abs(np.array(prefer) - at)))

    return min((placed(r) for r in regions), key=lambda p: p[1])[0], best


def _refit(
    lines: np.ndarray, layout: DeviceLayout, s: float, tx: float, ty: float, width: float
) -> tuple[float, float, float]:
    """Scale and offsets refined from the lines the fit put in the boxes: scale and vertical offset
    by least squares on the rows' centres, then the horizontal offset again."""
    src, dst = [], []
    for spec in _value_boxes(layout):
        found = [k for lo, hi, k in _containing(lines, spec, s, ty) if lo <= tx <= hi]
        if found:
            _, y, _, h = spec.box
            k = found[
                int(np.argmin([abs((lines[j, 1] + lines[j, 3]) / 2 - s * (y + h / 2) - ty) for j in found]))
            ]
            src.append(y + h / 2)
            dst.append((lines[k, 1] + lines[k, 3]) / 2)
    if len(set(src)) < 2:
        return s, tx, ty
    new_s, new_ty = np.polyfit(np.array(src), np.array(dst), 1)
    if not 0.9 * s < new_s < 1.1 * s:
        return s, tx, ty
    new_tx, _ = _fit_columns(lines, layout, float(new_s), float(new_ty), width)
    return float(new_s), new_tx, float(new_ty)


def _layout_matrix(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
    """Template → image homography found from the layout's value boxes alone, or None."""
    t = layout.template
    f = min(1.0, _WORK_SIDE / max(grey.shape))
    work = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else grey
    ink = ink_map(work, 5)
    if ink.sum() < 50:
        return None
    angle = _deskew_angle(ink)
    h, w = ink.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    ink_r = cv2.warpAffine(ink, rot, (w, h), flags=cv2.INTER_NEAREST)
    lines = _text_lines(ink_r)
    fit = min(w / t.width, h / t.height)  # the screen is 35–115 % of the picture's width or height
    hypotheses = []
    for s, ty in _fit_rows(lines, layout, (0.35 * fit, 1.15 * fit)):
        tx, boxes = _fit_columns(lines, layout, s, ty, w)
        hypotheses.append((boxes, s, tx, ty))
    if not hypotheses:
        return None
    boxes, s, tx, ty = max(hypotheses, key=lambda hyp: hyp[0])  # ties: the better row fit, listed first
    if boxes < 0.5 * len(_value_boxes(layout)):
        return None
    for _ in range(2):
        s, tx, ty = _refit(lines, layout, s, tx, ty, w)
    to_work = np.array([[s, 0, tx], [0, s, ty], [0, 0, 1]], np.float64)
    back = np.vstack([cv2.invertAffineTransform(rot), [0, 0, 1]])  # deskewed work → work
    unscale = np.diag([1 / f, 1 / f, 1.0])  # work → image
    return np.asarray(unscale @ back @ to_work, dtype=np.float64)


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
    for method, finder in (*finders, ("frame", _frame_matrix), ("layout", _layout_matrix)):
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
