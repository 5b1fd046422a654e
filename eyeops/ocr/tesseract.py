"""Tesseract 5 baseline on the same aligned field regions: --psm 7 and a per-field whitelist."""

from __future__ import annotations

import re
from collections.abc import Iterable

import cv2
import numpy as np
import pytesseract

from eyeops.devices.layout import FieldSpec


def whitelist(spec: FieldSpec) -> str:
    """Characters the field's grammar can produce, for tessedit_char_whitelist."""
    chars: set[str] = set()
    grammar = spec.grammar
    if r"\d" in grammar:
        chars.update("0123456789")
    literal = re.sub(r"\\d|\{[^}]*\}|[()?:|*+\[\]\\]", "", grammar)
    chars.update(c for c in literal if c.isalnum() or c in ".-+/")
    if "[-+]" in grammar:
        chars.update("-+")
    if "-?" in grammar:
        chars.add("-")
    if r"\." in grammar:
        chars.add(".")
    return "".join(sorted(chars))


def read_region(region: np.ndarray, spec: FieldSpec) -> str:
    """Tesseract on a field region of the aligned image, upscaled 2× with a white border (its best
    shot: the recogniser gets the same region downscaled to 32×128)."""
    big = cv2.resize(region, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=int(np.median(region)))
    config = f"--psm 7 --oem 1 -c tessedit_char_whitelist={whitelist(spec)}"
    try:
        text: str = pytesseract.image_to_string(big, config=config)
    except pytesseract.TesseractError:
        # Tesseract 5 can die on a damaged region (seen: SIGFPE on a blurred, noisy JPEG crop);
        # for the comparison that is a field it did not read, not the end of the evaluation.
        return ""
    return text.strip().replace(" ", "")


def read_fields(aligned: np.ndarray, specs: Iterable[FieldSpec]) -> list[str]:
    """Tesseract on every field region of an aligned exam image, in the order of `specs`."""
    texts = []
    for spec in specs:
        x, y, w, h = spec.box
        texts.append(read_region(aligned[y : y + h, x : x + w], spec))
    return texts
