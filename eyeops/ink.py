"""Ink: where thin text and lines lie in a grey picture, whatever their polarity, and which of a
layout's boxes always hold some. Shared by the alignment's quality score (eyeops.align) and its
frame-less layout search (eyeops.align_layout)."""

from __future__ import annotations

import cv2
import numpy as np

from eyeops.devices.layout import DeviceLayout, FieldSpec


def stroke_feature(grey: np.ndarray, stroke: int) -> np.ndarray:
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
    feature = stroke_feature(grey, stroke)
    level, _ = cv2.threshold(feature, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (feature > max(level, 24.0)).astype(np.uint8)


def value_boxes(layout: DeviceLayout) -> list[FieldSpec]:
    """The boxes that always hold text: optional fields may be blank."""
    return [f for f in layout.all_fields() if not f.optional]
