import io

import numpy as np
import pytest
from PIL import Image

from eyeops.errors import InvalidImage, PayloadTooLarge
from eyeops.imageio import decode_exam_image

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


def colour_png(mode: str) -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_png_reads_as_training_and_the_offline_evaluations_read_it(mode):
    from eyeops.align import decode_grey

    data = colour_png(mode)
    assert np.array_equal(decode_exam_image(data, MB, 10**6), decode_grey(data))


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16"])
def test_other_png_modes_still_decode_to_grey_of_their_size(mode):
    if mode == "I;16":
        buf = io.BytesIO()
        Image.fromarray(np.full((40, 90), 40000, np.uint16)).save(buf, format="PNG")
        data = buf.getvalue()
    else:
        data = colour_png(mode)
    grey = decode_exam_image(data, MB, 10**6)
    assert grey.shape == (40, 90) and grey.dtype == np.uint8
