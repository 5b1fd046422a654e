import io

import numpy as np
import pytest
from PIL import Image

from eyeops.errors import InvalidImage, PayloadTooLarge
from eyeops.imageio import decode_exam_image

pytestmark = pytest.mark.unit
MB = 1024 * 1024


def png(w=64, h=32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_decodes_png_to_grey():
    assert decode_exam_image(png(), MB, 10**6).shape == (32, 64)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty image"),
        (b'{"instances": []}', "JSON text"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"\x00" * 128 + b"DICM" + b"\x00" * 10, "DICOM"),
        (b"hello world", "not an image"),
    ],
)
def test_non_images_name_what_was_received_and_what_is_accepted(data, says):
    with pytest.raises(InvalidImage) as info:
        decode_exam_image(data, MB, 10**6)
    assert says in info.value.message and info.value.status_code == 400
    if data:
        assert "PNG, JPEG or TIFF" in info.value.message


def test_truncated_image_is_400():
    data = png(400, 300)
    with pytest.raises(InvalidImage, match=r"truncated|unreadable"):
        decode_exam_image(data[: len(data) // 2], MB, 10**7)


def test_over_the_byte_limit_is_413():
    with pytest.raises(PayloadTooLarge) as info:
        decode_exam_image(png(), 20, 10**6)
    assert info.value.status_code == 413


def test_decompression_bomb_is_413():
    bomb = png(5000, 5000)  # tiny file, 25 Mpx
    assert len(bomb) < MB
    with pytest.raises(PayloadTooLarge, match="decompression bomb"):
        decode_exam_image(bomb, MB, 4_000_000)
