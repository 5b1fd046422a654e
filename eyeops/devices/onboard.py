"""Onboard a device kind from one sample export: the layout's boxes are drawn in the sample's own
pixels, and the sample, its values masked, becomes the device's reference image, which alignment
registers every later exam of that kind to (see eyeops.align).

    eyeops devices onboard --kind K --sample S.png --layout K.yaml [--out DIR]

checks the layout and that every box lies on the sample, refuses a sample with too little static
content to register to, and writes DIR/K.yaml, DIR/K.reference.png and DIR/K.preview.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from eyeops.align import static_features
from eyeops.devices.layout import DeviceLayout, load_layout_file
from eyeops.errors import LayoutError

SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")
MIN_KEYPOINTS = 150  # static keypoints outside the value boxes a reference needs


class OnboardingError(LayoutError):
    """A sample or layout that cannot define a device kind; the message says what to change."""

    status_code = 400  # the console's upload: what the device admin sent, not the server


MAX_SAMPLE_PIXELS = 50_000_000  # a decompression bomb is refused before its pixels are decoded


def read_sample(path: Path) -> np.ndarray:
    """A sample export as 8-bit grey: PNG, JPEG or TIFF (OpenCV), DICOM when pydicom is installed."""
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise OnboardingError(
            f"sample {path.name}: send a PNG, JPEG, TIFF or DICOM export, not {suffix or 'no suffix'}"
        )
    if not path.is_file():
        raise OnboardingError(f"sample {path} does not exist")
    if suffix == ".dcm":
        try:
            import pydicom  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise OnboardingError(
                "DICOM samples need pydicom (pip install pydicom), or export the screen as PNG"
            ) from None
        try:  # what a file named .dcm holds is the sender's: every failure of pydicom is theirs
            ds = pydicom.dcmread(str(path))
            rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
            if rows * cols > MAX_SAMPLE_PIXELS:
                raise OnboardingError(
                    f"the DICOM sample is {cols}x{rows}: at most {MAX_SAMPLE_PIXELS} pixels"
                )
            pixels = np.asarray(ds.pixel_array, dtype=np.float64)
        except OnboardingError:
            raise
        except Exception as exc:  # InvalidDicomError, no pixel data, a syntax without a decoder …
            raise OnboardingError(
                f"sample {path.name} is not a readable DICOM image ({type(exc).__name__}); export the"
                " screen as PNG, or as DICOM with its pixel data"
            ) from None
        if pixels.ndim == 3:
            pixels = pixels.mean(axis=2)
        low, high = float(pixels.min()), float(pixels.max())
        return np.asarray((pixels - low) * (255.0 / max(high - low, 1e-9)), dtype=np.uint8)
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise OnboardingError(f"sample {path.name} could not be decoded as an image")
    return np.asarray(grey)


def mask_values(sample: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    """The sample with each value box filled by the median of the ring just around it: what is
    left is the device's static drawing (labels, lines, title), the same on every exam."""
    out = sample.copy()
    h, w = sample.shape
    for spec in layout.all_fields():
        x, y, bw, bh = spec.box
        x0, y0, x1, y1 = max(0, x - 4), max(0, y - 4), min(w, x + bw + 4), min(h, y + bh + 4)
        ring = np.concatenate(
            [
                sample[y0:y1, x0:x1][:4].ravel(),
                sample[y0:y1, x0:x1][-4:].ravel(),
                sample[y0:y1, x0:x1][:, :4].ravel(),
                sample[y0:y1, x0:x1][:, -4:].ravel(),
            ]
        )
        out[y0:y1, x0:x1] = int(np.median(ring)) if ring.size else 0
    return out


def preview(image: np.ndarray, layout: DeviceLayout) -> np.ndarray:
    """The image (grey) with every box and its field name drawn over it, in colour."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for spec in layout.all_fields():
        x, y, bw, bh = spec.box
        colour = (40, 40, 220) if spec in layout.header else (30, 150, 30)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), colour, 2)
        cv2.putText(
            out, spec.name, (x + 2, max(10, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA
        )
    return out


@dataclass(frozen=True)
class Onboarded:
    layout: Path
    reference: Path
    preview: Path
    keypoints: int


def onboard(kind: str, sample_path: Path, layout_path: Path, out_dir: Path) -> Onboarded:
    """Check the layout against the sample and write the device's files into out_dir."""
    sample = read_sample(sample_path)
    try:
        raw = yaml.safe_load(layout_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OnboardingError(f"layout {layout_path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("template"), dict):
        raise OnboardingError(f"layout {layout_path.name}: needs a template: section with width and height")
    if raw.get("kind", kind) != kind:
        raise OnboardingError(f"layout {layout_path.name} declares kind {raw.get('kind')!r}, not {kind!r}")
    h, w = sample.shape
    template = raw["template"]
    if (template.get("width"), template.get("height")) != (w, h):
        raise OnboardingError(
            f"the sample is {w}×{h} pixels but the layout's template says "
            f"{template.get('width')}×{template.get('height')}: boxes are in the sample's pixels, "
            "set both to the sample's size"
        )
    for group in ("header", "fields"):
        for spec in raw.get(group) or ():
            x, y, bw, bh = spec.get("box", (0, 0, 0, 0))
            if x < 0 or y < 0 or x + bw > w or y + bh > h:
                raise OnboardingError(
                    f"box of field {spec.get('name')!r} ({x}, {y}, {bw}, {bh}) falls off the {w}×{h} sample"
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_name = f"{kind}.reference.png"
    raw = {**raw, "kind": kind, "template": {**template, "reference": reference_name}}
    staged = out_dir / f".{kind}.yaml.tmp"
    staged.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    checked = _validate(staged, kind)
    reference = mask_values(sample, checked)
    keypoints, _ = static_features(reference, [f.box for f in checked.all_fields()])
    if len(keypoints) < MIN_KEYPOINTS:
        staged.unlink()
        raise OnboardingError(
            f"the sample has too little static content to register exams to ({len(keypoints)} keypoints "
            f"outside the value boxes, {MIN_KEYPOINTS} needed): use an export that shows the device's "
            "labels and lines"
        )
    reference_path = out_dir / reference_name
    cv2.imwrite(str(reference_path), reference)
    layout_out = out_dir / f"{kind}.yaml"
    staged.replace(layout_out)
    layout = load_layout_file(layout_out)
    preview_path = out_dir / f"{kind}.preview.png"
    # Over the masked reference, never the sample: the sample's values are a patient's, and this
    # folder is the models volume (issue 28, item 10). A box that misses its value shows it.
    cv2.imwrite(str(preview_path), preview(reference, layout))
    return Onboarded(layout_out, reference_path, preview_path, len(keypoints))


def _validate(staged: Path, kind: str) -> DeviceLayout:
    """The staged layout parsed, without its reference (not written yet)."""
    raw = yaml.safe_load(staged.read_text(encoding="utf-8"))
    raw["template"] = {k: v for k, v in raw["template"].items() if k != "reference"}
    try:
        return DeviceLayout.model_validate(raw)
    except ValueError as exc:
        staged.unlink(missing_ok=True)
        raise OnboardingError(f"layout for {kind}: {exc}") from exc
