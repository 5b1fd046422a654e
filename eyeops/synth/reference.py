"""Training exams drawn on a device's own reference image (build item 3 of the OCR issue).

An onboarded device kind carries its sample export with the value boxes blanked (the reference
image, eyeops.devices.onboard.mask_values). Each training exam is that image with new legal values
written into the boxes in a broad font, size and placement (eyeops.synth.broad's value drawing, ink
chosen against the box's own background, so dark screens get light digits) and the broad photo
damage on top: a recogniser fine-tuned on them has seen the device's own screen, labels, units and
rules around every value.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import cv2
import numpy as np

from eyeops.devices.layout import DeviceLayout
from eyeops.errors import EyeopsError
from eyeops.synth.broad import BroadStyle, damage, encode_grey, place_value, sample_broad_style
from eyeops.synth.render import RenderedExam
from eyeops.synth.values import ValueMode, exam_values


class NoReferenceImage(EyeopsError, ValueError):
    """A device kind without a reference image cannot be drawn on its own screen."""


@lru_cache(maxsize=16)
def _reference(path: str) -> np.ndarray:
    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise NoReferenceImage(f"reference image {path} cannot be read")
    grey.setflags(write=False)
    return grey


def reference_image(layout: DeviceLayout) -> np.ndarray:
    """The kind's reference image (grey, read-only), or NoReferenceImage naming the way to get one."""
    path = layout.template.reference
    if path is None:
        raise NoReferenceImage(
            f"device kind {layout.kind} has no reference image: onboard it from a sample export"
            " (eyeops devices onboard) to train on its own screen"
        )
    return _reference(path)


def _ink_against(background: float, rng: np.random.Generator) -> int:
    """A value's grey level that reads against its box: dark on light, light on dark."""
    if background >= 128:
        return int(rng.integers(0, max(1, int(background) - 110)))
    return int(rng.integers(min(255, int(background) + 110), 256))


def render_on_reference(
    layout: DeviceLayout, texts: dict[str, str], rng: np.random.Generator
) -> tuple[np.ndarray, BroadStyle]:
    """The reference image with `texts` written into their boxes, then damaged; and the style it
    was drawn with (its jpeg_quality: how to encode it; None is PNG)."""
    style = sample_broad_style(rng, signed=any(f.show_plus for f in layout.fields))
    canvas = reference_image(layout).copy()
    for spec in layout.all_fields():
        x, y, w, h = spec.box
        ink = _ink_against(float(np.median(canvas[y : y + h, x : x + w])), rng)
        place_value(canvas, spec, texts[spec.name], replace(style, ink=ink), layout.template.value_align, rng)
    return damage(canvas, style, rng), style


def render_reference_exam(layout: DeviceLayout, rng: np.random.Generator, mode: ValueMode) -> RenderedExam:
    values, texts = exam_values(layout, rng, mode)
    grey, style = render_on_reference(layout, texts, rng)
    return RenderedExam(layout.kind, encode_grey(grey, style.jpeg_quality), texts, values, style)
