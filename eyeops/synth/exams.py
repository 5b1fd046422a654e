"""Streams of rendered exams with ground truth, deterministic by (seed, split, index)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from eyeops.devices.layout import DeviceLayout
from eyeops.synth.fonts import font_paths
from eyeops.synth.render import RenderedExam, render_exam, sample_style
from eyeops.synth.values import ValueMode, exam_values

_SPLIT_CODES = {"train": 1, "eval": 2}


def exam_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Train and eval draw from disjoint streams, so noise seeds never coincide."""
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


Variety = Literal["classic", "broad", "reference"]
CLASSIC_SHARE = 0.25  # of broad training exams: the classic look, with the broad font pool


def render_one(
    layout: DeviceLayout,
    seed: int,
    split: str,
    index: int,
    mode: ValueMode = "realistic",
    clean: bool = False,
    faces: int | None = None,
    variety: Variety = "classic",
) -> RenderedExam:
    """One exam; `faces` limits the split's fonts to its first N (earlier training rounds used 20).
    variety="broad" (training only) draws from the broad font pool and, for all but CLASSIC_SHARE of
    exams, with the broad renderer (eyeops.synth.broad); "reference" (training only) writes the values
    into the kind's own reference image (eyeops.synth.reference); "classic" is every earlier round's
    renderer."""
    rng = exam_rng(seed, split, index)
    if variety == "broad" and split == "train" and not clean:
        return _render_broad(layout, rng, mode, faces)
    if variety == "reference" and split == "train" and not clean:
        from eyeops.synth.reference import render_reference_exam

        return render_reference_exam(layout, rng, mode)
    fonts = font_paths(split)[:faces]
    style = sample_style(rng, fonts, clean=clean)
    values, texts = exam_values(layout, rng, mode)
    return render_exam(layout, values, texts, style, rng)


def _render_broad(
    layout: DeviceLayout, rng: np.random.Generator, mode: ValueMode, faces: int | None
) -> RenderedExam:
    if rng.random() < CLASSIC_SHARE:
        style = sample_style(rng, font_paths("broad")[:faces])
        values, texts = exam_values(layout, rng, mode)
        return render_exam(layout, values, texts, style, rng)
    from eyeops.synth.broad import damage, encode_grey, render_broad_clean, sample_broad_style

    broad = sample_broad_style(rng, signed=any(f.show_plus for f in layout.fields))
    values, texts = exam_values(layout, rng, mode)
    grey = damage(render_broad_clean(layout, texts, broad, rng), broad, rng)
    return RenderedExam(layout.kind, encode_grey(grey, broad.jpeg_quality), texts, values, broad)


def synthesize_exams(
    layouts: Sequence[DeviceLayout],
    count: int,
    seed: int,
    split: str = "eval",
    mode: ValueMode = "realistic",
    start: int = 0,
) -> Iterator[RenderedExam]:
    """`count` exams cycling over the device kinds."""
    for index in range(start, start + count):
        yield render_one(layouts[index % len(layouts)], seed, split, index, mode)


def tagged_copy(image: bytes, tag: str) -> bytes:
    """The same pixels under another file hash, without re-encoding: a PNG tEXt chunk before IEND,
    or a JPEG comment segment after SOI. Load tests use it to make many distinct exams cheaply."""

    payload = b"eyeops-copy\0" + tag.encode()
    if image.startswith(b"\x89PNG"):
        end = image.rindex(b"IEND") - 4
        chunk = b"tEXt" + payload
        return (
            image[:end]
            + struct.pack(">I", len(payload))
            + chunk
            + struct.pack(">I", zlib.crc32(chunk))
            + image[end:]
        )
    if image.startswith(b"\xff\xd8"):
        return image[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + image[2:]
    raise ValueError("tagged_copy takes PNG or JPEG")
