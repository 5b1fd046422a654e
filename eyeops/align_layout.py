"""The frame-less way to align an exam (eyeops.align's **layout** method): the layout itself is the
reference. Text is found whatever its polarity, the page is deskewed by its text rows and text lines
are cut out; scale and vertical offset come from pairs of lines matched to pairs of box rows, the
horizontal offset from where the layout puts values (`value_align`), and the fit is refined box by
box. `layout_matrix` returns the template → image homography, or None."""

from __future__ import annotations

import cv2
import numpy as np

from eyeops.devices.layout import DeviceLayout, FieldSpec
from eyeops.ink import ink_map, value_boxes

_WORK_SIDE = 560  # long side, in pixels, of the image the layout search works on


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
    boxes = value_boxes(layout)
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
    for spec in value_boxes(layout):
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
    for spec in value_boxes(layout):
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


def layout_matrix(grey: np.ndarray, layout: DeviceLayout) -> np.ndarray | None:
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
    if boxes < 0.5 * len(value_boxes(layout)):
        return None
    for _ in range(2):
        s, tx, ty = _refit(lines, layout, s, tx, ty, w)
    to_work = np.array([[s, 0, tx], [0, s, ty], [0, 0, 1]], np.float64)
    back = np.vstack([cv2.invertAffineTransform(rot), [0, 0, 1]])  # deskewed work → work
    unscale = np.diag([1 / f, 1 / f, 1.0])  # work → image
    return np.asarray(unscale @ back @ to_work, dtype=np.float64)
