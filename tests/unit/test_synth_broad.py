"""The broad training renderer: its font pool's hold-out rules, segment readouts, determinism."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont

from eyeops.align import decode_grey
from eyeops.errors import AlignmentFailed
from eyeops.regions import crop_regions
from eyeops.synth.broad import BroadStyle
from eyeops.synth.exams import render_one
from eyeops.synth.fonts import BROAD_TRAIN_FAMILIES, BROAD_TRAIN_FONTS, DEBIAN_PACKAGES, font_paths
from eyeops.synth.render import ExamStyle
from eyeops.synth.segments import SEGMENT_CHARS, sample_segment_style, segment_mask
from tests.stress import render as stress

# Helvetica/Arial, Times and Courier and every clone of them on Debian: evaluation-only (or unused).
CLONE_FAMILIES = (
    "Helvetica",
    "Arial",
    "Times",
    "Times New Roman",
    "Courier",
    "Courier New",
    "Courier Prime",
    "Liberation",
    "Arimo",
    "Tinos",
    "Cousine",
    "FreeSans",
    "FreeSerif",
    "FreeMono",
    "Nimbus",
    "TeX Gyre Heros",
    "TeX Gyre Termes",
    "TeX Gyre Cursor",
    "STIX",
    "Aerial",
)


def _family_names(path: Path) -> set[str]:
    """The family names a font file declares (name IDs 1, 16 and 21: family, typographic family,
    WWS family)."""
    font = TTFont(str(path), lazy=True)
    try:
        names = {font["name"].getDebugName(i) for i in (1, 16, 21)}
    finally:
        font.close()
    return {n for n in names if n}


def _words(name: str) -> tuple[str, ...]:
    """A family name as lower-case words, camel case and digits split: "OCRB" stays one word,
    "LinBiolinum" becomes ("lin", "biolinum")."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", name)
    return tuple(w for w in re.split(r"[\s_\-]+", spaced.lower()) if w)


def _same_family(a: str, b: str) -> bool:
    """One family name is the other or starts with it word for word ("Cabin" and "Cabin Sketch",
    "Nimbus" and "Nimbus Sans"), spaces ignored ("Clear Sans" and "ClearSans")."""
    wa, wb = _words(a), _words(b)
    n = min(len(wa), len(wb))
    if wa[:n] == wb[:n]:
        return True
    return "".join(wa).startswith("".join(wb)) or "".join(wb).startswith("".join(wa))


def _stress_family_names() -> set[str]:
    names = {f.family for f in stress.FONT_FAMILIES}
    for spec in stress.FONT_FAMILIES:
        for path in stress.find_font_files(spec.family):
            names |= _family_names(path)
    return names


def _training_families() -> dict[Path, set[str]]:
    return {path: _family_names(path) for path in font_paths("broad")}


def test_training_families_are_disjoint_from_evaluation_faces_and_their_clones():
    held_out = set(CLONE_FAMILIES)
    for path in font_paths("eval"):
        held_out |= _family_names(path)
    clashes = [
        (path.name, family, other)
        for path, families in _training_families().items()
        for family in families
        for other in held_out
        if _same_family(family, other)
    ]
    assert not clashes


def test_training_families_are_disjoint_from_the_stress_renderers_families():
    stress_names = _stress_family_names()
    assert len(stress_names) >= len(stress.FONT_FAMILIES)  # the stress fonts are installed and read
    clashes = [
        (path.name, family, other)
        for path, families in _training_families().items()
        for family in families
        for other in stress_names
        if _same_family(family, other)
    ]
    assert not clashes
    # ... and the stress renderer's own rule (FORBIDDEN_FAMILIES) still holds against its faces
    for forbidden in stress.FORBIDDEN_FAMILIES:
        assert not [n for n in stress_names if _same_family(n, forbidden)], forbidden


def test_family_matching_catches_derived_and_renamed_families():
    assert _same_family("Cabin Sketch", "Cabin")
    assert _same_family("ClearSans", "Clear Sans")
    assert _same_family("Nimbus Sans L", "Nimbus")
    assert not _same_family("Go", "Routed Gothic Narrow")
    assert not _same_family("URW Gothic", "Routed Gothic")


def test_broad_pool_is_dozens_of_families_with_weights_and_widths():
    families = {frozenset(names) for names in _training_families().values()}
    assert len(BROAD_TRAIN_FAMILIES) >= 40
    assert len(families) >= 50
    assert len(BROAD_TRAIN_FONTS) == len(set(BROAD_TRAIN_FONTS)) >= 120
    assert any("Condensed" in f or "Cond" in f or "Narrow" in f for f in BROAD_TRAIN_FONTS)
    assert any("Light" in f for f in BROAD_TRAIN_FONTS) and any("Bold" in f for f in BROAD_TRAIN_FONTS)


def test_every_broad_face_draws_every_character_a_field_shows():
    needed = {ord(c) for c in "0123456789+-./:PODS"}
    for path in font_paths("broad"):
        font = TTFont(str(path), lazy=True)
        try:
            cmap = set(font.getBestCmap() or {})
        finally:
            font.close()
        assert needed <= cmap, path.name


def test_font_packages_cover_no_stress_package():
    assert not set(DEBIAN_PACKAGES.split()) & set(stress.STRESS_FONT_PACKAGES)


def test_segment_readouts_draw_every_field_character():
    rng = np.random.default_rng(0)
    for fourteen in (False, True):
        style = sample_segment_style(rng, fourteen)
        for text in ("+12.75", "-0.25", "P1234567", "2024/05/17", "31.08.2019", "OD", "OS", "0123456789"):
            mask = segment_mask(text, 30, style)
            assert mask.shape[0] == 32 and mask.shape[1] > 10 * len(text) // 2
            assert mask.max() == 255
    assert set("0123456789+-./PODS") <= SEGMENT_CHARS


def test_segment_digits_differ_from_one_another():
    style = sample_segment_style(np.random.default_rng(1), False)
    masks = {d: segment_mask(d, 40, style) for d in "0123456789"}
    shapes = {m.shape for m in masks.values()}
    assert len(shapes) == 1
    flat = {d: (m > 127).tobytes() for d, m in masks.items()}
    assert len(set(flat.values())) == 10


def test_broad_rendering_is_deterministic_and_aligns(layouts):
    kinds = list(layouts)
    cropped = 0
    from eyeops.align import align

    styles: list[ExamStyle | BroadStyle] = []
    for i in range(12):
        layout = kinds[i % len(kinds)]
        exam = render_one(layout, 77, "train", i, variety="broad")
        assert exam.image == render_one(layout, 77, "train", i, variety="broad").image
        styles.append(exam.style)
        try:
            aligned = align(decode_grey(exam.image), layout).aligned
        except AlignmentFailed:  # such an exam is left out of training
            continue
        crops = crop_regions(aligned, list(layout.all_fields()), layout.template.value_align)
        assert crops.shape[1:] == (32, 128)
        cropped += 1
    assert cropped >= 9
    assert any(isinstance(s, BroadStyle) for s in styles)


def test_evaluation_and_classic_training_ignore_the_broad_renderer(layouts):
    layout = layouts["autorefractor"]
    assert render_one(layout, 3, "eval", 5, variety="broad").image == render_one(layout, 3, "eval", 5).image
    classic = render_one(layout, 3, "train", 5)
    assert isinstance(classic.style, ExamStyle)
    assert classic.style.font in font_paths("train")


def test_crop_sets_concatenate_in_order():
    from eyeops.ocr.dataset import CropSet

    a = CropSet(np.zeros((2, 32, 128), np.uint8), ["1", "2"], ["g", "g"], ["k", "k"], ["f", "f"])
    b = CropSet(np.ones((1, 32, 128), np.uint8), ["3"], ["h"], ["j"], ["e"])
    both = a.concat(b)
    assert len(both) == 3 and both.texts == ["1", "2", "3"] and both.crops[2].max() == 1
    assert both.grammars == ["g", "g", "h"] and both.kinds[2] == "j" and both.fields[2] == "e"
