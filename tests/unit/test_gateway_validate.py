from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from eyeops.errors import InvalidImage, PayloadTooLarge
from eyeops.gateway.validate import Limits, validate_exam_file
from tests.helpers import bomb_png, dicom_bytes, noise_png

LIMITS = Limits(max_bytes=2_000_000, max_pixels=4_000_000)


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG")
    return buf.getvalue()


def test_png_jpeg_and_tiff_pass_with_their_size():
    png = noise_png(40, 60)
    exam = validate_exam_file("a.png", png, LIMITS)
    assert (exam.source_format, exam.width, exam.height, exam.image) == ("PNG", 60, 40, png)
    assert validate_exam_file("b.JPG", jpeg(np.zeros((8, 8), np.uint8)), LIMITS).source_format == "JPEG"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="TIFF")
    assert validate_exam_file("c.tiff", buf.getvalue(), LIMITS).source_format == "TIFF"


def test_content_must_match_the_extension():
    with pytest.raises(InvalidImage, match=r"named \.png but holds JPEG"):
        validate_exam_file("x.png", jpeg(np.zeros((8, 8), np.uint8)), LIMITS)
    with pytest.raises(InvalidImage, match=r"'\.pdf' is not an exam image"):
        validate_exam_file("x.pdf", b"%PDF-1.7", LIMITS)
    with pytest.raises(InvalidImage, match="not an image"):
        validate_exam_file("x.png", b"hello world, not a picture", LIMITS)


def test_truncated_oversized_and_bombs_are_refused():
    png = noise_png(100, 100)
    with pytest.raises(InvalidImage, match="truncated"):
        validate_exam_file("t.png", png[: len(png) // 2], LIMITS)
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        validate_exam_file("big.png", noise_png(1500, 1500), LIMITS)
    with pytest.raises(PayloadTooLarge, match="pixels"):
        validate_exam_file("bomb.png", bomb_png(3000), LIMITS)


def test_identity_comes_from_the_file_name_pattern():
    pattern = re.compile(
        r"^(?P<patient_id>P\d{7})_(?P<laterality>OD|OS|R|L)_(?P<exam_date>\d{4}-\d{2}-\d{2})"
    )
    exam = validate_exam_file("P0012345_R_2026-03-14_scan.png", noise_png(10, 10), LIMITS, pattern)
    assert (exam.patient_id, exam.laterality, exam.exam_date) == ("P0012345", "OD", "2026-03-14")
    other = validate_exam_file("export-17.png", noise_png(10, 10), LIMITS, pattern)
    assert other.patient_id is None and other.laterality is None


def test_exam_date_from_the_file_name_is_sent_as_an_iso_date():
    pattern = re.compile(r"^(?P<patient_id>P\d{7})_(?P<exam_date>[\d.-]+)_")
    exam = validate_exam_file("P0012345_20260314_scan.png", noise_png(10, 10), LIMITS, pattern)
    assert exam.exam_date == "2026-03-14"  # DICOM's DA form, normalised
    for name, says in [
        ("P0012345_14.03.2026_scan.png", "not a date in YYYY-MM-DD or YYYYMMDD"),  # day or month first?
        ("P0012345_2026-02-30_scan.png", "2026-02-30"),  # no such day
    ]:
        with pytest.raises(InvalidImage, match=says):
            validate_exam_file(name, noise_png(10, 10), LIMITS, pattern)


def test_dicom_secondary_capture_becomes_png_with_identity():
    pixels = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 256).astype(np.uint8)
    exam = validate_exam_file("exam.dcm", dicom_bytes(pixels, laterality="L"), LIMITS)
    assert exam.source_format == "DICOM"
    assert (exam.patient_id, exam.laterality, exam.exam_date) == ("P1234567", "OS", "2026-03-14")
    decoded = np.asarray(Image.open(io.BytesIO(exam.image)))
    assert np.array_equal(decoded, pixels)


def test_dicom_16_bit_monochrome1_is_stretched_and_inverted():
    pixels = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    exam = validate_exam_file(
        "op.dcm",
        dicom_bytes(pixels, sop_class="1.2.840.10008.5.1.4.1.1.77.1.5.2", photometric="MONOCHROME1"),
        LIMITS,
    )
    decoded = np.asarray(Image.open(io.BytesIO(exam.image)))
    assert decoded.tolist() == [[255, 191], [127, 0]]  # 255 - round(2000 / 4000 * 255)


def test_dicom_that_is_not_an_exam_screen_is_refused():
    ct = dicom_bytes(np.zeros((4, 4), np.uint8), sop_class="1.2.840.10008.5.1.4.1.1.2")
    with pytest.raises(InvalidImage, match=re.escape("SOP class 1.2.840.10008.5.1.4.1.1.2 ")):
        validate_exam_file("ct.dcm", ct, LIMITS)
    with pytest.raises(InvalidImage, match="no DICOM preamble"):
        validate_exam_file("fake.dcm", noise_png(10, 10), LIMITS)


def test_tagged_copies_keep_pixels_and_change_the_hash():
    from eyeops.imageio import decode_exam_image
    from eyeops.synth.exams import tagged_copy

    for original in (noise_png(30, 40), jpeg(np.full((16, 16), 90, np.uint8))):
        copy = tagged_copy(original, "copy-7")
        assert copy != original
        assert np.array_equal(
            decode_exam_image(copy, 10**7, 10**7), decode_exam_image(original, 10**7, 10**7)
        )
