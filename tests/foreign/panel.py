"""The foreign renderer's device pictures, drawn in the page's free area: a corneal map, an endothelial
mosaic, an OCT scan, a biometry signal, keratometer mires, bars of the pressure readings, or rings for
a kind without a picture of its own; and the smooth random field they (and the damage) use."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np

from tests.foreign.design import Theme, _mix


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    small = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def draw_panel(
    kind: str,
    rect: tuple[int, int, int, int],
    theme: Theme,
    rng: np.random.Generator,
    values: dict[str, str],
    page: np.ndarray,
) -> None:
    """A device picture in the free area: a map, a mosaic, a scan, a waveform, mires or bars."""
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    if w < 40 or h < 40:
        return
    region = page[y0:y1, x0:x1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "scheimpflug_tomographer":
        cx, cy, rad = w / 2, h / 2, min(w, h) * 0.44
        r = np.hypot(xx - cx, yy - cy) / rad
        ang = np.arctan2(yy - cy, xx - cx)
        field_ = (
            0.35 + 0.3 * r**2 + 0.15 * np.cos(2 * ang + rng.uniform(0, 3)) * r + 0.04 * _lowfreq(rng, h, w)
        )
        v8 = np.clip(field_ * 255, 0, 255).astype(np.uint8)
        cmap = [cv2.COLORMAP_JET, cv2.COLORMAP_TURBO, cv2.COLORMAP_RAINBOW][int(rng.integers(3))]
        colored = cv2.applyColorMap(v8, cmap)[:, :, ::-1]
        inside = r <= 1
        region[inside] = colored[inside]
        cv2.circle(region, (round(cx), round(cy)), round(rad), theme.label, 1, cv2.LINE_AA)
        for a in (0, 90):
            t = math.radians(a)
            p = (round(cx - rad * math.cos(t)), round(cy - rad * math.sin(t)))
            q = (round(cx + rad * math.cos(t)), round(cy + rad * math.sin(t)))
            cv2.line(region, p, q, theme.label, 1, cv2.LINE_AA)
    elif kind == "specular_microscope":
        cell = rng.uniform(14, 24) * max(1.0, w / 400)
        pts = []
        for j in range(int(h / (cell * 0.87)) + 2):
            for i in range(int(w / cell) + 2):
                px = (i + 0.5 * (j % 2)) * cell + rng.normal(0, cell * 0.12)
                py = j * cell * 0.87 + rng.normal(0, cell * 0.12)
                pts.append((float(np.clip(px, 0, w - 1)), float(np.clip(py, 0, h - 1))))
        sub = cv2.Subdiv2D((0, 0, w, h))
        sub.insert(pts)
        facets, _ = sub.getVoronoiFacetList([])
        mosaic = np.zeros((h, w), np.uint8)
        for facet in facets:
            grey = int(rng.integers(120, 200))
            cv2.fillConvexPoly(mosaic, np.round(facet).astype(np.int32), grey, cv2.LINE_AA)
            cv2.polylines(
                mosaic, [np.round(facet).astype(np.int32)], True, 30, max(1, round(cell / 9)), cv2.LINE_AA
            )
        mosaic = cv2.GaussianBlur(mosaic, (0, 0), 0.8)
        region[:] = np.repeat(mosaic[:, :, None], 3, axis=2)
    elif kind == "anterior_segment_oct":
        img = np.zeros((h, w), np.float32)
        cx, cy = w / 2, h * 0.95
        axes = (round(w * 0.55), round(h * 0.75))
        cv2.ellipse(img, (round(cx), round(cy)), axes, 0, 200, 340, 0.9, max(2, h // 40), cv2.LINE_AA)
        cv2.ellipse(
            img, (round(cx), round(cy + h * 0.05)), axes, 0, 205, 335, 0.5, max(1, h // 60), cv2.LINE_AA
        )
        cv2.line(
            img, (0, round(h * 0.62)), (round(w * 0.35), round(h * 0.55)), 0.7, max(2, h // 45), cv2.LINE_AA
        )
        cv2.line(
            img, (w, round(h * 0.62)), (round(w * 0.65), round(h * 0.55)), 0.7, max(2, h // 45), cv2.LINE_AA
        )
        cv2.ellipse(
            img, (round(cx), round(h * 0.75)), (round(w * 0.18), round(h * 0.12)), 0, 180, 360, 0.45, 2
        )
        img = cv2.GaussianBlur(img, (0, 0), 1.2) * rng.gamma(4.0, 0.25, img.shape).astype(np.float32)
        grey = np.clip(img * 255, 0, 255).astype(np.uint8)
        region[:] = np.repeat(grey[:, :, None], 3, axis=2)
    elif kind == "optical_biometer":
        region[:] = _mix(theme.bg, theme.label, 0.06)
        for i in range(1, 5):
            cv2.line(region, (0, i * h // 5), (w, i * h // 5), theme.rule, 1)
        peaks = sorted(rng.uniform(0.05, 0.95, 5))
        signal = 0.05 * _lowfreq(rng, 1, w, 12)[0] + 0.05
        for p in peaks:
            signal += rng.uniform(0.3, 0.9) * np.exp(-(((np.arange(w) / w) - p) ** 2) / (2 * 0.004**2))
        ys = h - 8 - np.clip(signal, 0, 1) * (h - 20)
        pts = np.stack([np.arange(w), ys], axis=1).astype(np.int32)
        cv2.polylines(region, [pts], False, theme.accent, 1 + w // 400, cv2.LINE_AA)
    elif kind == "autorefractor":
        region[:] = theme.bg
        cx, cy = w // 2, h // 2
        for i, rr in enumerate(np.linspace(0.1, 0.45, 7)):
            cv2.circle(region, (cx, cy), round(rr * min(w, h)), theme.label, 2 if i % 2 else 1, cv2.LINE_AA)
        axis = float(values.get("axis_deg", "90").lstrip("0") or "0")
        t = math.radians(axis)
        rr = 0.48 * min(w, h)
        p = (round(cx - rr * math.cos(t)), round(cy + rr * math.sin(t)))
        q = (round(cx + rr * math.cos(t)), round(cy - rr * math.sin(t)))
        cv2.line(region, p, q, theme.accent, 2, cv2.LINE_AA)
    elif kind == "noncontact_tonometer":
        region[:] = theme.bg
        names = [n for n in ("iop1_mmhg", "iop2_mmhg", "iop3_mmhg") if n in values]
        base = h - 10
        for i, n in enumerate(names):
            v = float(values[n])
            bh = int((h - 30) * v / 40)
            bx = int(w * (0.15 + 0.25 * i))
            cv2.rectangle(region, (bx, base - bh), (bx + int(w * 0.14), base), theme.accent, -1)
        cv2.line(region, (0, base), (w, base), theme.label, 1)
        if "iop_mmhg" in values:
            yv = base - int((h - 30) * float(values["iop_mmhg"]) / 40)
            for xs in range(0, w, 12):
                cv2.line(region, (xs, yv), (min(w, xs + 6), yv), theme.label, 1)
    else:  # a kind without a picture of its own: a target of rings and a cross, an axis line if any
        region[:] = theme.bg
        cx, cy, rad = w // 2, h // 2, 0.45 * min(w, h)
        rings = int(rng.integers(3, 7))
        for i in range(1, rings + 1):
            colour = theme.label if i % 2 else theme.rule
            cv2.circle(region, (cx, cy), round(rad * i / rings), colour, 1, cv2.LINE_AA)
        arm = round(rad * 1.05)
        cv2.line(region, (cx - arm, cy), (cx + arm, cy), theme.rule, 1, cv2.LINE_AA)
        cv2.line(region, (cx, cy - arm), (cx, cy + arm), theme.rule, 1, cv2.LINE_AA)
        axis_text = values.get("axis_deg", "")
        if re.fullmatch(r"\d+", axis_text):
            t = math.radians(float(axis_text))
            p = (round(cx - rad * math.cos(t)), round(cy + rad * math.sin(t)))
            q = (round(cx + rad * math.cos(t)), round(cy - rad * math.sin(t)))
            cv2.line(region, p, q, theme.accent, 2, cv2.LINE_AA)
    border = _mix(theme.bg, theme.label, 0.5)
    cv2.rectangle(region, (0, 0), (w - 1, h - 1), border, 1)
