"""The independent renderer: deterministic, legal truth for every field, decodable images, the fonts it
claims, no frame at all with --no-border; --page-scale 1 draws at template size, --fixed-design draws
one screen per kind, and --layouts/--kinds draw a kind the project does not ship."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ImageFont

from eyeops.devices.layout import DeviceLayout, LayoutRegistry, load_layouts
from eyeops.fields import apply_cross_checks, parse_field
from tests.foreign import render

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
    render.render_set(tmp_path / "c", 2, 12, "full", True)
    truth_a, files_a = _read(tmp_path / "a")
    truth_b, files_b = _read(tmp_path / "b")
    truth_c, _ = _read(tmp_path / "c")
    assert truth_a == truth_b and files_a == files_b
    assert [t["fields"] for t in truth_a[:2]] != [t["fields"] for t in truth_c]
    for data in files_a.values():
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_truth_matches_layouts_and_images_decode(tmp_path: Path, registry: LayoutRegistry) -> None:
    render.render_set(tmp_path, 12, 7, "light", True)
    truth, files = _read(tmp_path)
    assert len(truth) == 12 and len(files) == 12
    assert {t["device_kind"] for t in truth} == set(registry.kinds())
    for line in truth:
        assert set(line) == {"file", "device_kind", "fields", "notes"}
        notes = line["notes"]  # the design and damage drawn (face, readout engine, border …)
        assert isinstance(notes, list) and any(str(n).startswith("face ") for n in notes)
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
            image = _decode(exam.data)
            strip = int(22 * image.shape[1] / layout.template.width)
            spread = _strip_spread(image, strip)
            if border:
                assert spread > 20, (layout.kind, "a frame was expected")
            else:
                assert spread <= 2, (layout.kind, spread)


# A seventh kind, as an onboarded device would describe it (the docs' seventh device).
LENSMETER_YAML = (Path(__file__).parent / "lensmeter.yaml").read_text(encoding="utf-8")

# Boxes on the page edge: no room for a frame or a title.
EDGE_YAML = r"""
kind: edge_screen
description: a screen whose boxes touch its edges
template: {width: 640, height: 360}
header:
- {name: patient_id, label: ID, kind: text, pattern: 'P\d{7}', box: [0, 0, 170, 36]}
- {name: laterality, label: Eye, kind: text, pattern: 'OD|OS', box: [300, 4, 60, 30]}
- name: exam_date
  label: Date
  kind: date
  pattern: '\d{4}-\d{2}-\d{2}'
  date_format: '%Y-%m-%d'
  box: [470, 0, 170, 36]
fields:
- {name: a_mm, label: A, unit: mm, decimals: 2, range: [0, 30], box: [0, 150, 120, 36]}
- {name: b_um, label: B, unit: um, range: [0, 900], box: [520, 324, 120, 36]}
"""


@pytest.fixture(scope="module")
def extra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("layouts")
    (folder / "lensmeter.yaml").write_text(LENSMETER_YAML, encoding="utf-8")
    (folder / "edge_screen.yaml").write_text(EDGE_YAML, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def extended(extra_dir: Path) -> LayoutRegistry:
    return load_layouts(extra=[extra_dir])


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _outside_boxes(layout: DeviceLayout) -> np.ndarray:
    mask = np.ones((layout.template.height, layout.template.width), bool)
    for spec in layout.all_fields():
        x, y, w, h = spec.box
        mask[y : y + h, x : x + w] = False
    return mask


def test_seventh_kind_from_a_layout_folder(tmp_path: Path, extra_dir: Path, extended: LayoutRegistry) -> None:
    layout = extended["lensmeter"]
    assert len(list(layout.all_fields())) == 7
    out = tmp_path / "lensmeter"
    render.render_set(out, 3, 777, "light", True, layout_dirs=[extra_dir], kinds=["lensmeter"])
    truth, files = _read(out)
    assert len(truth) == 3 and len(files) == 3
    for line in truth:
        assert line["device_kind"] == "lensmeter"
        fields = line["fields"]
        assert isinstance(fields, dict)
        assert list(fields) == [spec.name for spec in layout.all_fields()]
        for spec in layout.all_fields():
            reading = parse_field(spec, fields[spec.name], 1.0, 0.5)
            assert reading.status == "accepted", (spec.name, fields[spec.name], reading.reason)
        _decode(files[str(line["file"])])
    # among all the kinds known (six shipped, two in the folder), it takes its turn
    render.render_set(tmp_path / "all", 7, 5, "none", True, layout_dirs=[extra_dir], page_scale=0.8)
    kinds = [line["device_kind"] for line in _read(tmp_path / "all")[0]]
    assert kinds == extended.kinds()[:7]
    assert "lensmeter" in kinds


def test_page_scale_one_draws_at_template_size(extended: LayoutRegistry) -> None:
    for i, layout in enumerate(extended):
        exam = render.render_exam(layout, 21, i, "none", True, page_scale=1.0)
        assert exam.name.endswith(".png")
        height, width = _decode(exam.data).shape[:2]
        assert (width, height) == (layout.template.width, layout.template.height), layout.kind


@pytest.mark.parametrize("kind", ["lensmeter", "edge_screen", "specular_microscope", "autorefractor"])
def test_fixed_design_draws_one_screen_per_kind(kind: str, extended: LayoutRegistry) -> None:
    """Two exams of a kind, undamaged at page scale 1: identical outside the value boxes with
    --fixed-design (whatever their index), different inside them; without it the designs differ."""
    layout = extended[kind]
    outside = _outside_boxes(layout)
    fixed = [
        render.render_exam(layout, 777, i, "none", True, page_scale=1.0, fixed_design=True) for i in (0, 9)
    ]
    a, b = (_decode(e.data).astype(int) for e in fixed)
    assert fixed[0].fields != fixed[1].fields
    assert np.array_equal(a[outside], b[outside])
    assert not np.array_equal(a[~outside], b[~outside])
    free = [render.render_exam(layout, 777, i, "none", True, page_scale=1.0) for i in (0, 9)]
    c, d = (_decode(e.data).astype(int) for e in free)
    assert not np.array_equal(c[outside], d[outside])


def test_fixed_design_holds_across_scale_damage_and_start(tmp_path: Path, extra_dir: Path) -> None:
    """The sample (exam 0, scale 1, no damage) and a later stress set (random scale, damage) share one
    design: fonts, engine, frame and theme."""
    dirs, kinds = [extra_dir], ["lensmeter"]
    sample = render.render_set(
        tmp_path / "s", 1, 777, "none", True, layout_dirs=dirs, kinds=kinds, page_scale=1.0, fixed_design=True
    )
    stress = render.render_set(
        tmp_path / "f", 3, 777, "full", True, layout_dirs=dirs, kinds=kinds, fixed_design=True, start=1
    )
    assert [e.name.split(".")[0] for e in stress] == [f"foreign_777_{i:05d}" for i in (1, 2, 3)]

    def design(exam: render.Exam) -> list[str]:
        return [n for n in exam.notes if n.split()[0] in ("engine", "face", "border", "dark")]

    assert all(design(e) == design(sample[0]) for e in stress)
    assert len({e.notes[0] for e in stress}) > 1  # the scale still varies


def test_no_room_for_frame_or_title(extended: LayoutRegistry) -> None:
    """Boxes on the page edge: no frame, no title, nothing drawn over a box, ink only inside boxes."""
    layout = extended["edge_screen"]
    geometry = render.page_geometry(layout)
    assert geometry.frame_k == 0 and geometry.title_k == 0
    outside = _outside_boxes(layout)
    for i in range(4):
        exam = render.render_exam(layout, 3, i, "none", True, page_scale=1.0, fixed_design=True)
        image = _decode(exam.data).astype(int)
        assert "border none" in exam.notes
        if i == 0:
            first = image
        assert np.array_equal(image[outside], first[outside])


def test_cli_kinds_and_errors(tmp_path: Path, extra_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["--count", "1", "--seed", "777", "--out", str(out), "--layouts", str(extra_dir)]
    assert render.main([*args, "--kinds", "lensmeter", "--page-scale", "1", "--fixed-design"]) == 0
    truth, files = _read(out)
    assert [t["device_kind"] for t in truth] == ["lensmeter"]
    assert _decode(next(iter(files.values()))).shape[:2] == (600, 900)
    capsys.readouterr()
    assert render.main([*args, "--kinds", "lensmeter", "focimeter"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "focimeter" in err
    assert (
        render.main(["--count", "1", "--seed", "1", "--out", str(out), "--layouts", str(tmp_path / "nope")])
        == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
