"""Check an exported file before it is uploaded: format matches extension, limits, identity.

DICOM secondary-capture and ophthalmic-photography objects are opened with pydicom; their pixel
data is re-encoded as a greyscale PNG (the OCR service reads PNG/JPEG/TIFF) and PatientID,
Laterality and StudyDate become the exam's identity. Other files get identity from the file name,
through a per-device regular expression with named groups ``patient_id``, ``laterality`` and
``exam_date``.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from PIL import Image

from eyeops.errors import InvalidImage, PayloadTooLarge
from eyeops.imageio import decode_exam_image, open_header, sniff_format

EXTENSIONS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".dcm": "DICOM",
    ".dicom": "DICOM",
}
# Secondary Capture (single-frame and the multi-frame grey/colour variants) and Ophthalmic Photography.
DICOM_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image Storage",
}
_LATERALITY = {"R": "OD", "L": "OS", "OD": "OD", "OS": "OS", "RIGHT": "OD", "LEFT": "OS"}


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class ValidatedExam:
    """What the gateway sends: image bytes the OCR service accepts, plus identity hints."""

    image: bytes
    source_format: str
    width: int
    height: int
    patient_id: str | None = None
    laterality: str | None = None
    exam_date: str | None = None


def accepted_extension(name: str) -> bool:
    return PurePath(name).suffix.lower() in EXTENSIONS


def normalise_laterality(value: str | None) -> str | None:
    if not value:
        return None
    return _LATERALITY.get(value.strip().upper())


def normalise_exam_date(value: str | None) -> str | None:
    """YYYY-MM-DD or YYYYMMDD (DICOM's DA) as an ISO date. Anything else is refused: day-first and
    month-first dates cannot be told apart, and a date the service cannot compare is a lost check."""
    if not value:
        return None
    match = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", value.strip())
    if match is not None:
        try:
            return dt.date(*(int(g) for g in match.groups())).isoformat()
        except ValueError:
            pass
    raise InvalidImage(
        f"exam date {value!r} from the file name is not a date in YYYY-MM-DD or YYYYMMDD;"
        " capture it in one of those forms in the device's filename_pattern"
    )


def identity_from_name(name: str, pattern: re.Pattern[str] | None) -> dict[str, str | None]:
    """Identity from a file name by the device's pattern; empty when no pattern or no match."""
    if pattern is None:
        return {}
    match = pattern.search(PurePath(name).name)
    if match is None:
        return {}
    groups = match.groupdict()
    return {
        "patient_id": groups.get("patient_id"),
        "laterality": normalise_laterality(groups.get("laterality")),
        "exam_date": normalise_exam_date(groups.get("exam_date")),
    }


def validate_exam_file(
    name: str, data: bytes, limits: Limits, name_pattern: re.Pattern[str] | None = None
) -> ValidatedExam:
    """Raise InvalidImage or PayloadTooLarge with a reason a person can act on; else the exam."""
    suffix = PurePath(name).suffix.lower()
    expected = EXTENSIONS.get(suffix)
    if expected is None:
        raise InvalidImage(
            f"extension {suffix or '(none)'!r} is not an exam image;"
            f" accepted: {', '.join(sorted(EXTENSIONS))}"
        )
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"file is {len(data)} bytes, over the limit of {limits.max_bytes} bytes")
    if expected == "DICOM":
        return _validate_dicom(data, limits)
    found = sniff_format(data)
    if found is None:
        raise InvalidImage(
            f"file is named {suffix} but is not an image ({len(data)} bytes starting with {data[:8].hex()})"
        )
    if found != expected:
        raise InvalidImage(f"file is named {suffix} but holds {found} data")
    width, height = check_image_structure(data, expected, limits)
    identity = identity_from_name(name, name_pattern)
    return ValidatedExam(data, expected, width, height, **identity)


def check_image_structure(data: bytes, fmt: str, limits: Limits) -> tuple[int, int]:
    """Complete and intact without decoding the pixels (the OCR service decodes them anyway):
    PNG chunk CRCs and IEND, the JPEG end-of-image marker, the pixel limit from the header.
    TIFF has no cheap completeness check, so it is decoded. Returns (width, height)."""
    if fmt == "TIFF":
        grey = decode_exam_image(data, limits.max_bytes, limits.max_pixels)
        return grey.shape[1], grey.shape[0]
    image = open_header(data, fmt, limits.max_pixels)
    width, height = image.size
    if fmt == "PNG":
        try:
            image.verify()  # walks every chunk and checks its CRC
        except (OSError, SyntaxError, ValueError, struct.error) as exc:
            raise InvalidImage(f"PNG is truncated or corrupt ({exc}); the file may be incomplete") from exc
        if not data.rstrip(b"\0").endswith(b"IEND\xaeB`\x82"):
            raise InvalidImage("PNG is truncated: no IEND chunk at the end; the file may be incomplete")
    elif fmt == "JPEG" and b"\xff\xd9" not in data[-1024:]:
        raise InvalidImage("JPEG is truncated: no end-of-image marker; the file may be incomplete")
    return width, height


def _validate_dicom(data: bytes, limits: Limits) -> ValidatedExam:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if data[128:132] != b"DICM":
        raise InvalidImage("file is named .dcm but has no DICOM preamble ('DICM' at byte 128)")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise InvalidImage(f"DICOM file unreadable ({exc})") from exc
    sop = str(ds.get("SOPClassUID", ""))
    if sop not in DICOM_SOP_CLASSES:
        raise InvalidImage(
            f"DICOM SOP class {sop or '(missing)'} is not an exam screen;"
            " accepted: secondary capture or ophthalmic photography"
        )
    if "PixelData" not in ds:
        raise InvalidImage("DICOM object has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > limits.max_pixels:
        raise PayloadTooLarge(f"DICOM image is {cols}x{rows}, over the limit of {limits.max_pixels} pixels")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InvalidImage(f"DICOM object has {frames} frames; export each exam screen as one frame")
    try:
        pixels = np.asarray(ds.pixel_array)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "?")
        raise InvalidImage(f"DICOM pixel data cannot be decoded (transfer syntax {syntax}: {exc})") from exc
    grey = _to_grey8(pixels, str(ds.get("PhotometricInterpretation", "MONOCHROME2")))
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    laterality = normalise_laterality(str(ds.get("Laterality", "") or ds.get("ImageLaterality", "")))
    study_date = str(ds.get("StudyDate", "") or "")
    exam_date = (
        f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:8]}"
        if re.fullmatch(r"\d{8}", study_date)
        else None
    )
    return ValidatedExam(
        buffer.getvalue(),
        "DICOM",
        grey.shape[1],
        grey.shape[0],
        patient_id=str(ds.get("PatientID", "") or "") or None,
        laterality=laterality,
        exam_date=exam_date,
    )


def _to_grey8(pixels: np.ndarray, photometric: str) -> np.ndarray:
    eight_bit = pixels.dtype == np.uint8
    if pixels.ndim == 3:  # RGB (pydicom converts YBR to RGB)
        values = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif pixels.ndim == 2:
        values = pixels.astype(np.float64)
    else:
        raise InvalidImage(f"DICOM pixel array has shape {pixels.shape}; expected one 2-D frame")
    if not eight_bit:  # 16-bit: stretch to the full 8-bit range
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    grey: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.subtract(255, grey, dtype=np.uint8) if photometric == "MONOCHROME1" else grey
