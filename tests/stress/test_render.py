"""The stress renderer: reproducible, values a real device could show, its own fonts, frame or none.

The truth is re-validated here against the layout YAML files directly, not with the project's code."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.stress import fonts, render

LAYOUTS = {
    raw["kind"]: raw
    for raw in (
        yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted((Path(__file__).resolve().parents[2] / "eyeops/devices/layouts").glob("*.yaml"))
    )
}

# Families the project trains or evaluates on (as of this renderer's writing).
PROJECT_FAMILIES = (
    "DejaVu", "Roboto", "Carlito", "Noto Sans Mono", "Open Sans", "Lato", "Cantarell", "URW Gothic",
    "URW Bookman", "Go", "C059", "P052", "Fira Code", "JetBrains Mono", "Inconsolata", "Hack", "Arimo",
    "Liberation", "FreeSans", "FreeSerif", "FreeMono", "Tinos", "Cousine", "Nimbus",
)  # fmt: skip


def _read_truth(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "truth.jsonl").read_text(encoding="utf-8").splitlines()]


def _fields(layout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in [*layout["header"], *layout["fields"]]}


def _problems(kind: str, truth: dict[str, str]) -> list[str]:
    """Everything in one exam's truth that its layout does not allow."""
    layout = LAYOUTS[kind]
    specs = _fields(layout)
    bad = [f"unknown field {n}" for n in truth if n not in specs]
    for name, spec in specs.items():
        text = truth.get(name)
        if text is None:
            if not spec.get("optional"):
                bad.append(f"{name} missing")
            continue
        if text == "---":
            if not spec.get("optional"):
                bad.append(f"{name} blank but not optional")
            continue
        kind_ = spec.get("kind", "number")
        if kind_ in ("text", "date") and not re.fullmatch(spec["pattern"], text):
            bad.append(f"{name}={text!r} does not match {spec['pattern']}")
        if kind_ == "date":
            try:
                day = dt.datetime.strptime(text, spec["date_format"]).date()
            except ValueError:
                bad.append(f"{name}={text!r} is not a {spec['date_format']} date")
            else:
                if day.strftime(spec["date_format"]) != text:
                    bad.append(f"{name}={text!r} not written as the device writes it")
        if kind_ != "number":
            continue
        decimals = int(spec.get("decimals", 0))
        sign = "[+-]" if spec.get("show_plus") else "-?"
        frac = rf"\.\d{{{decimals}}}" if decimals else ""
        if not re.fullmatch(rf"{sign}\d+{frac}", text):
            bad.append(f"{name}={text!r} not drawn with {decimals} decimals / sign convention")
            continue
        if text.startswith("-") and float(text) == 0:
            bad.append(f"{name}={text!r} is a negative zero")
        lo, hi = spec["range"]
        if not lo <= float(text) <= hi:
            bad.append(f"{name}={text} outside {lo}..{hi}")
        step = spec.get("step")
        if step and abs(float(text) / step - round(float(text) / step)) > 1e-6:
            bad.append(f"{name}={text} off the {step} step")
    for check in layout.get("checks") or []:
        names = check["fields"]
        if any(truth.get(n) in (None, "---") for n in names):
            continue
        vals = [float(truth[n]) for n in names]
        half_ulp = 0.5 * 10 ** -int(specs[names[0]].get("decimals", 0))
        tol = float(check.get("tolerance") or 0.0)
        if check["rule"] == "ordered":
            ok = vals[0] <= vals[1]
        elif check["rule"] == "mean":
            ok = abs(vals[0] - sum(vals[1:]) / (len(vals) - 1)) <= max(tol, half_ulp) + 1e-9
        else:
            ok = abs(vals[0] - check["constant"] / vals[1]) <= tol + half_ulp + 1e-9
        if not ok:
            bad.append(f"check {check['rule']} {names} fails: {[truth[n] for n in names]}")
    return bad


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = render.render_stress_set(4, seed=11, out=tmp_path / "a", damage="full")
    b = render.render_stress_set(4, seed=11, out=tmp_path / "b", damage="full")
    assert a.read_bytes() == b.read_bytes()
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = render.render_stress_set(4, seed=12, out=tmp_path / "c", damage="full")
    assert c.read_bytes() != a.read_bytes()


def test_truth_lines_name_their_images(tmp_path: Path) -> None:
    render.render_stress_set(7, seed=3, out=tmp_path, damage="full")
    lines = _read_truth(tmp_path)
    assert len(lines) == 7
    assert {line["device_kind"] for line in lines} == set(LAYOUTS)
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"0*{i}-{line['device_kind']}\.(png|jpg)", line["file"])
        with Image.open(tmp_path / line["file"]) as img:
            assert img.format == ("JPEG" if line["file"].endswith(".jpg") else "PNG")
        assert not _problems(line["device_kind"], line["fields"])


def test_values_honour_patterns_ranges_decimals_and_checks() -> None:
    seen_plus = seen_blank = 0
    for i in range(240):
        kind = sorted(LAYOUTS)[i % len(LAYOUTS)]
        values = render.sample_exam_values(render.load_stress_layouts()[kind], np.random.default_rng([5, i]))
        truth = {k: v for k, v in values.items() if v is not None}
        assert not _problems(kind, truth), (kind, truth)
        seen_plus += any(v.startswith("+") for v in truth.values())
        seen_blank += len(truth) < len(values) or "---" in truth.values()
    assert seen_plus and seen_blank  # the sign convention and blank optional fields are exercised


def test_no_border_means_no_dark_frame(tmp_path: Path) -> None:
    render.render_stress_set(12, seed=21, out=tmp_path / "bare", border=False, damage="none")
    for line in _read_truth(tmp_path / "bare"):
        arr = np.asarray(Image.open(tmp_path / "bare" / line["file"]).convert("RGB"), dtype=np.float32)
        ring = np.concatenate(
            [
                arr[:20].reshape(-1, 3),
                arr[-20:].reshape(-1, 3),
                arr[:, :20].reshape(-1, 3),
                arr[:, -20:].reshape(-1, 3),
            ]
        )
        bg = np.array(line["meta"]["background"], dtype=np.float32)
        assert np.abs(ring.mean(axis=0) - bg).max() < 25, line["file"]
        # no line darker than the background anywhere in the ring either
        lum = ring @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        assert np.percentile(lum, 1) > float(bg @ np.array([0.299, 0.587, 0.114])) - 30, line["file"]


def test_border_draws_a_dark_frame_at_the_layout_inset(tmp_path: Path) -> None:
    render.render_stress_set(6, seed=22, out=tmp_path, border=True, damage="none")
    for line in _read_truth(tmp_path):
        t = LAYOUTS[line["device_kind"]]["template"]
        lum = np.asarray(Image.open(tmp_path / line["file"]).convert("L"), dtype=np.float32)
        mid_y = t["height"] // 2
        frame = lum[mid_y, t["frame_inset"] - t["frame_width"] : t["frame_inset"]]
        assert frame.max() < 60, line["file"]


def test_damage_none_decodes_to_the_template_size_and_light_is_jpeg(tmp_path: Path) -> None:
    render.render_stress_set(6, seed=23, out=tmp_path / "none", damage="none")
    for line in _read_truth(tmp_path / "none"):
        t = LAYOUTS[line["device_kind"]]["template"]
        assert line["file"].endswith(".png") and line["meta"]["damage"] == []
        with Image.open(tmp_path / "none" / line["file"]) as img:
            assert img.size == (t["width"], t["height"])
    render.render_stress_set(2, seed=23, out=tmp_path / "light", damage="light")
    for line in _read_truth(tmp_path / "light"):
        assert line["file"].endswith(".jpg")
        angle = float(line["meta"]["damage"][0].split()[1])
        assert abs(angle) <= 1 and line["meta"]["damage"][1] == "jpeg q90"


def _is_project_family(name: str) -> bool:
    low = name.lower()
    for fam in PROJECT_FAMILIES:
        f = fam.lower()
        if low == f or low.startswith(f + " ") or (len(f) > 2 and f in low):
            return True
    return False


def test_every_font_family_is_one_the_project_never_uses(tmp_path: Path) -> None:
    faces = render.stress_faces()
    families = {f.family for f in faces}
    assert len(families) >= 10
    assert {"sans", "serif", "mono", "condensed", "lcd", "ocr"} <= {f.category for f in faces}
    for face in faces:
        declared = render.font_family_names(face.path)
        for name in {face.family, *declared}:
            assert not _is_project_family(name), (face.path, name)
    render.render_stress_set(6, seed=24, out=tmp_path, damage="none")
    for line in _read_truth(tmp_path):
        assert set(line["meta"]["fonts"]) <= families


def test_value_font_fills_55_to_85_percent_of_the_box() -> None:
    for i in range(30):
        look = render._look(np.random.default_rng([9, i]), signed=False)
        assert 0.55 <= look.value_size <= 0.85


def test_missing_fonts_name_the_apt_get_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fonts, "FONT_ROOT", tmp_path)  # where the fonts are looked up
    render._all_font_files.cache_clear()
    render.stress_faces.cache_clear()
    try:
        with pytest.raises(render.StressFontsMissing, match=r"apt-get install -y .*fonts-dseg"):
            render.render_stress_set(1, seed=0, out=tmp_path / "out")
    finally:
        render._all_font_files.cache_clear()
        render.stress_faces.cache_clear()


def test_cli_writes_a_set(tmp_path: Path) -> None:
    assert (
        render.main(
            ["--count", "2", "--seed", "4", "--out", str(tmp_path), "--no-border", "--damage", "light"]
        )
        == 0
    )
    lines = _read_truth(tmp_path)
    assert [line["meta"]["border"] for line in lines] == [False, False]
    assert all((tmp_path / line["file"]).is_file() for line in lines)
