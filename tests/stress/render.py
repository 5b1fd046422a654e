"""A second, independent renderer of the device layouts, for measuring how the OCR generalises.

It reads only the layout YAML files (eyeops/devices/layouts/*.yaml, the public contract of a device
kind) and draws each exam with its own code: other font families than the project uses anywhere,
other colours, decorations and placements, and real-world damage (photos of screens, blur, JPEG...).

    python -m tests.stress.render --count 60 --seed 1 --out /tmp/stress [--no-border] [--damage full]

writes ``<index>-<device_kind>.png`` (or ``.jpg`` when the damage model chose JPEG compression) and
``truth.jsonl``: one line per exam, ``{"file", "device_kind", "fields": {name: text as drawn}, "meta"}``.
An optional field left blank on screen is absent from ``fields``; one drawn as ``---`` is ``"---"``.

This module draws an exam and a set, and is the command line; the parts live beside it: the fonts
(tests/stress/fonts.py), the layouts and values (values.py), the screen drawing (screen.py) and the
damage (damage.py). Their names import from here as well (FONT_ROOT is tests.stress.fonts's: set it
there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.stress.damage import DAMAGE_LEVELS, apply_damage
from tests.stress.fonts import (
    FONT_FAMILIES,
    FORBIDDEN_FAMILIES,
    STRESS_FONT_PACKAGES,
    Face,
    FontFamily,
    StressFontsMissing,
    covers,
    find_font_files,
    font_family_names,
    stress_faces,
)
from tests.stress.fonts import _all_font_files as _all_font_files
from tests.stress.screen import CLINICS, FOOTERS, LOGOS, RGB, Look, Rect, Theme, draw_screen
from tests.stress.screen import _look as _look
from tests.stress.values import (
    BLANK,
    LAYOUT_DIR,
    all_fields,
    check_violations,
    format_number,
    load_stress_layouts,
    sample_exam_values,
)

__all__ = [
    "BLANK",
    "CLINICS",
    "DAMAGE_LEVELS",
    "FONT_FAMILIES",
    "FOOTERS",
    "FORBIDDEN_FAMILIES",
    "LAYOUT_DIR",
    "LOGOS",
    "RGB",
    "STRESS_FONT_PACKAGES",
    "Face",
    "FontFamily",
    "Look",
    "Rect",
    "StressFontsMissing",
    "Theme",
    "all_fields",
    "apply_damage",
    "check_violations",
    "covers",
    "draw_screen",
    "find_font_files",
    "font_family_names",
    "format_number",
    "load_stress_layouts",
    "main",
    "render_exam",
    "render_stress_set",
    "sample_exam_values",
    "stress_faces",
]


def render_exam(
    layout: dict[str, Any], seed: int, index: int, border: bool = True, damage: str = "full"
) -> tuple[Image.Image, int | None, dict[str, str], dict[str, Any]]:
    """One exam: the picture, its JPEG quality (None: PNG), the truth fields and what was chosen."""
    rng = np.random.default_rng([seed, index])
    values = sample_exam_values(layout, rng)
    img, meta = draw_screen(layout, values, rng, border)
    r, g, b = (int(c) for c in np.asarray(img)[0, 0])
    corner = (r, g, b)
    img, quality, done = apply_damage(img, rng, damage, corner)
    meta.update(border=border, damage=done)
    truth = {k: v for k, v in values.items() if v is not None}
    return img, quality, truth, meta


def render_stress_set(count: int, seed: int, out: Path, border: bool = True, damage: str = "full") -> Path:
    """Render count exams (device kinds in turn) into out; returns the path of out/truth.jsonl."""
    if damage not in DAMAGE_LEVELS:
        raise ValueError(f"damage must be one of {DAMAGE_LEVELS}, not {damage!r}")
    stress_faces()  # fail early, with the apt-get line, when fonts are missing
    layouts = load_stress_layouts()
    kinds = sorted(layouts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        img, quality, truth, meta = render_exam(layouts[kind], seed, index, border, damage)
        name = f"{index:05d}-{kind}.{'jpg' if quality else 'png'}"
        if quality:
            img.save(out / name, format="JPEG", quality=quality)
        else:
            img.save(out / name, format="PNG", compress_level=6)
        lines.append(json.dumps({"file": name, "device_kind": kind, "fields": truth, "meta": meta}))
    truth_path = out / "truth.jsonl"
    truth_path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return truth_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.render", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-border", dest="border", action="store_false", help="screen captures: no frame")
    parser.add_argument("--damage", choices=DAMAGE_LEVELS, default="full")
    args = parser.parse_args(argv)
    try:
        truth = render_stress_set(args.count, args.seed, args.out, border=args.border, damage=args.damage)
    except StressFontsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.count} exams in {args.out}; truth: {truth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
