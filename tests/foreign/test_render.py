"""The independent renderer: deterministic, legal truth for every field, decodable images, the fonts it
claims, and no frame at all with --no-border."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ImageFont

from eyeops.devices.layout import LayoutRegistry, load_layouts
from eyeops.fields import apply_cross_checks, parse_field
from tests.foreign import render

pytestmark = pytest.mark.unit

# What the project installs and uses; the renderer must draw with none of it.
FORBIDDEN_PACKAGES = set(
    re.findall(
        r"\S+",
        """fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-noto-mono
    fonts-roboto-unhinted fonts-croscore fonts-crosextra-carlito fonts-urw-base35 fonts-open-sans fonts-lato
    fonts-inconsolata fonts-hack fonts-firacode fonts-cantarell fonts-go fonts-jetbrains-mono fonts-noto-core
    fonts-noto-extra fonts-quicksand fonts-dosis fonts-jura fonts-ebgaramond fonts-mplus fonts-agave
    fonts-monoid fonts-paratype fonts-league-mono fonts-karla fonts-manrope fonts-vollkorn fonts-play
    fonts-roboto-slab fonts-comic-neue fonts-tuffy fonts-adf-universalis fonts-adf-berenis fonts-adf-verana
    fonts-adf-libris fonts-adf-baskervald fonts-sil-andika fonts-sil-gentiumplus fonts-oldstandard fonts-cmu
    fonts-osifont fonts-opendin fonts-yanone-kaffeesatz fonts-averia-sans-gwf fonts-averia-serif-gwf
    fonts-beteckna fonts-gfs-didot fonts-junction fonts-bebas-neue fonts-fanwood fonts-b612 fonts-ocr-b
    fonts-mononoki fonts-anonymous-pro fonts-oxygen fonts-cabin fonts-comfortaa fonts-league-spartan
    fonts-linuxlibertine fonts-crosextra-caladea fonts-sil-charis fonts-inter fonts-clear-sans fonts-hermit
    fonts-fantasque-sans fonts-3270 fonts-adf-gillius fonts-routed-gothic fonts-dseg""",
    )
)
FORBIDDEN_FAMILY = re.compile(
    r"dejavu|roboto|carlito|noto|open ?sans|\blato\b|cantarell|\burw\b|^go\b|c059|p052|fira|jetbrains"
    r"|inconsolata|\bhack\b|arimo|liberation|^free|tinos|cousine|nimbus|tex ?gyre|helvetica|arial|times"
    r"|courier",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def registry() -> LayoutRegistry:
    return load_layouts(extra=[])


def test_fonts_are_foreign_and_installed() -> None:
    missing = render.missing_font_packages()
    assert not missing, f"apt-get install -y {' '.join(missing)}"
    assert set(render.FOREIGN_FONT_PACKAGES) == {f.package for f in render.FACES}
    assert not FORBIDDEN_PACKAGES & set(render.FOREIGN_FONT_PACKAGES)
    for face in render.FACES:
        owned = Path(f"/var/lib/dpkg/info/{face.package}.list").read_text().split()
        assert face.path in owned, f"{face.path} is not a file of {face.package}"
        family = ImageFont.truetype(face.path, 20).getname()[0]
        assert family == face.family
        assert not FORBIDDEN_FAMILY.search(family), family
        assert render.supports(face, "0123456789+-./PODS")
    assert len({f.family.split()[0] for f in render.FACES}) >= 10


def _read(out: Path) -> tuple[list[dict[str, object]], dict[str, bytes]]:
    lines = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "truth.jsonl"}
    return lines, files


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    render.render_set(tmp_path / "a", 6, 11, "full", True)
    render.render_set(tmp_path / "b", 6, 11, "full", True)
    render.render_set(tmp_path / "c", 6, 12, "full", True)
    truth_a, files_a = _read(tmp_path / "a")
    truth_b, files_b = _read(tmp_path / "b")
    truth_c, _ = _read(tmp_path / "c")
    assert truth_a == truth_b and files_a == files_b
    assert [t["fields"] for t in truth_a] != [t["fields"] for t in truth_c]
    for data in files_a.values():
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_truth_matches_layouts_and_images_decode(tmp_path: Path, registry: LayoutRegistry) -> None:
    render.render_set(tmp_path, 12, 7, "light", True)
    truth, files = _read(tmp_path)
    assert len(truth) == 12 and len(files) == 12
    assert {t["device_kind"] for t in truth} == set(registry.kinds())
    for line in truth:
        assert set(line) == {"file", "device_kind", "fields"}
        layout = registry[str(line["device_kind"])]
        fields = line["fields"]
        assert isinstance(fields, dict)
        assert list(fields) == [spec.name for spec in layout.all_fields()]
        image = cv2.imdecode(np.frombuffer(files[str(line["file"])], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        height, width = image.shape[:2]
        assert 0.79 * layout.template.width <= width <= 1.61 * layout.template.width
        assert abs(width / height - layout.template.width / layout.template.height) < 0.01


def test_values_are_legal_for_their_fields(registry: LayoutRegistry) -> None:
    """Grammar, range, step, date and the cross-field relations, as eyeops.fields judges them."""
    rng = np.random.default_rng(99)
    seen_blank = False
    for layout in registry:
        for _ in range(150):
            values = render.sample_values(layout, rng)
            readings = [parse_field(spec, values[spec.name], 1.0, 0.5) for spec in layout.all_fields()]
            bad = [
                (r.name, r.raw_text, r.reason)
                for r in apply_cross_checks(layout, readings)
                if r.status != "accepted"
            ]
            assert not bad, (layout.kind, bad)
            for spec in layout.all_fields():
                text = values[spec.name]
                assert re.fullmatch(spec.grammar, text), (spec.name, text)
                if spec.show_plus and text != "---":
                    assert text[0] in "+-", (spec.name, text)
                seen_blank |= text == "---"
    assert seen_blank  # the optional ICL vault is sometimes blank


@pytest.mark.parametrize("engine", ["ttf", "seg7", "dots"])
def test_value_ink_stays_inside_its_box(engine: str, registry: LayoutRegistry) -> None:
    rng = np.random.default_rng(5)
    theme = render.pick_theme(rng, "screen")
    for layout in registry:
        values = render.sample_values(layout, rng)
        for spec in layout.all_fields():
            style = replace(render.pick_value_style(rng, layout, theme), engine=engine)
            scale = float(rng.uniform(0.8, 1.6))
            box = tuple(v * scale for v in spec.box)
            placed = render.fit_value(values[spec.name], box, style, rng, scale)  # type: ignore[arg-type]
            h, w = placed.mask.shape
            bx, by, bw, bh = box
            assert bx <= placed.x and placed.x + w <= bx + bw, (spec.name, values[spec.name])
            assert by <= placed.y and placed.y + h <= by + bh, (spec.name, values[spec.name])
            assert placed.mask.max() > 0.5


def _strip_spread(image: np.ndarray, width: int) -> int:
    strip = np.concatenate(
        [
            image[:width].reshape(-1, 3),
            image[-width:].reshape(-1, 3),
            image[:, :width].reshape(-1, 3),
            image[:, -width:].reshape(-1, 3),
        ]
    ).astype(int)
    return int(np.abs(strip - strip[0]).max())


def test_no_border_means_no_frame(registry: LayoutRegistry) -> None:
    """Undamaged, the outer 22 template pixels are plain background without --no-border's frame, and
    always hold a frame of some design with it."""
    for i, layout in enumerate(registry):
        for border in (False, True):
            exam = render.render_exam(layout, 31, i, "none", border)
            image = cv2.imdecode(np.frombuffer(exam.data, np.uint8), cv2.IMREAD_COLOR)
            strip = int(22 * image.shape[1] / layout.template.width)
            spread = _strip_spread(image, strip)
            if border:
                assert spread > 20, (layout.kind, "a frame was expected")
            else:
                assert spread <= 2, (layout.kind, spread)
