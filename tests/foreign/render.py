"""An independent renderer of the six device layouts, for measuring how the OCR generalises.

Written apart from the project's own renderers: it reads only the layout files (where each field's box
sits, what text is legal in it) and draws each exam the way another vendor might draw the same screen
or printout: its own page design, font families the project uses nowhere (Debian packages listed in
FOREIGN_FONT_PACKAGES), its own seven-segment and 5x7 dot-matrix readouts, and its own photo and scan
damage.

    .venv/bin/python -m tests.foreign.render --count 120 --seed 4242 --out /tmp/foreign/light --damage light
    [--damage none|light|full] [--no-border] [--layouts DIR]... [--kinds K...] [--page-scale S]
    [--fixed-design] [--start N]

Writes DIR/<name>.png (.jpg where the damage ends in a JPEG encoding) and DIR/truth.jsonl, one line per
exam: {"file": ..., "device_kind": ..., "fields": {name: exact text drawn in that field's box}}.
Everything random comes from numpy Generators seeded by --seed (exam i from the seed pair [seed, i]), so
an exam is the same whatever --count is; exam i is of kind kinds[i % len(kinds)].

--layouts adds folders of layout YAMLs (device kinds the project does not ship) and --kinds draws only
the kinds named. The page design keeps off the layout's boxes and inside the page for any template size,
frame_inset and title (none, or no room for one: none drawn). --page-scale fixes the page pixels per
template pixel: with 1 and --damage none an exam is template.width x template.height pixels with every
value inside its box at the layout's coordinates, fit to serve as the device's onboarding sample.
--fixed-design draws every exam of a kind with one design, seeded by --seed and the kind alone (so the
same whatever --count, --start or --kinds): fonts, theme, frame, labels, rules, picture and each value's
size; it draws nothing from the values outside their boxes (no eye badge, no value-driven picture), so
undamaged exams at one scale differ only inside the boxes. --start N begins at exam N, e.g. a stress set
that leaves out exam 0 when exam 0 was the onboarding sample.

This module draws an exam and a set, and is the command line; the parts live beside it: fonts.py,
values.py, glyphs.py (the value readouts), design.py (a vendor's look and the page geometry), panel.py
(device pictures), page.py (the whole undamaged page) and damage.py. Their names import from here too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from eyeops.devices.layout import DeviceLayout, load_layouts
from eyeops.errors import LayoutError
from tests.foreign.damage import Encoded, _encode, damage_full, damage_light
from tests.foreign.design import (
    LABELS,
    SECTIONS,
    TITLES,
    UNITS,
    VENDORS,
    Design,
    Geometry,
    Theme,
    draw_text_in,
    page_geometry,
    pick_theme,
    pick_value_style,
)
from tests.foreign.fonts import (
    FACES,
    FOREIGN_FONT_PACKAGES,
    LABEL_FACES,
    Face,
    missing_font_packages,
    require_fonts,
    supports,
)
from tests.foreign.glyphs import (
    DOTS,
    RGB,
    SEGMENTS,
    DotStyle,
    Placed,
    Rect,
    Run,
    SegStyle,
    ValueStyle,
    composite,
    dots_run,
    fit_value,
    make_run,
    seg7_run,
    ttf_run,
)
from tests.foreign.page import DESIGN_TAG, design_seed, draw_static, render_page
from tests.foreign.panel import draw_panel
from tests.foreign.values import format_number, sample_number, sample_values, text_from_pattern

__all__ = [
    "DESIGN_TAG",
    "DOTS",
    "FACES",
    "FOREIGN_FONT_PACKAGES",
    "LABELS",
    "LABEL_FACES",
    "RGB",
    "SECTIONS",
    "SEGMENTS",
    "TITLES",
    "UNITS",
    "VENDORS",
    "Design",
    "DotStyle",
    "Encoded",
    "Exam",
    "Face",
    "Geometry",
    "Placed",
    "Rect",
    "Run",
    "SegStyle",
    "Theme",
    "ValueStyle",
    "composite",
    "damage_full",
    "damage_light",
    "design_seed",
    "dots_run",
    "draw_panel",
    "draw_static",
    "draw_text_in",
    "fit_value",
    "format_number",
    "main",
    "make_run",
    "missing_font_packages",
    "page_geometry",
    "pick_theme",
    "pick_value_style",
    "render_exam",
    "render_page",
    "render_set",
    "require_fonts",
    "sample_number",
    "sample_values",
    "seg7_run",
    "supports",
    "text_from_pattern",
    "ttf_run",
]


@dataclass
class Exam:
    name: str
    kind: str
    fields: dict[str, str]
    data: bytes
    notes: list[str]


def render_exam(
    layout: DeviceLayout,
    seed: int,
    index: int,
    damage: str,
    border: bool,
    show_boxes: bool = False,
    page_scale: float | None = None,
    fixed_design: bool = False,
) -> Exam:
    """Exam index of the set seeded by seed: its values, scale and damage from the seed pair [seed,
    index]; its design from the same pair, or with fixed_design from the kind's design seed."""
    rng = np.random.default_rng([seed, index])
    values = sample_values(layout, rng)
    fixed = design_seed(seed, layout.kind) if fixed_design else None
    page, design, boxes, min_digit = render_page(layout, values, rng, border, page_scale, fixed)
    if show_boxes:  # inspection only: the layout's boxes in red, before any damage
        for bx, by, bw, bh in boxes.values():
            cv2.rectangle(page, (round(bx), round(by)), (round(bx + bw), round(by + bh)), (255, 0, 0), 1)
    notes = [
        f"scale {design.scale:.2f}",
        f"engine {design.value.engine}",
        f"face {design.value.face.family}",
        f"border {design.border}",
        f"dark {design.theme.dark}",
    ]
    if damage == "none":
        data, ext = _encode(page, None)
    elif damage == "light":
        enc = damage_light(page, rng, design.scale)
        data, ext, notes = enc.data, enc.ext, notes + enc.notes
    elif damage == "full":
        enc = damage_full(page, rng, layout.template.style, design.scale, min_digit)
        data, ext, notes = enc.data, enc.ext, notes + enc.notes
    else:
        raise ValueError(f"unknown damage {damage!r}")
    name = f"foreign_{seed}_{index:05d}{ext}"
    return Exam(name, layout.kind, values, data, notes)


def render_set(
    out: Path,
    count: int,
    seed: int,
    damage: str,
    border: bool,
    show_boxes: bool = False,
    verbose: bool = False,
    *,
    layout_dirs: Sequence[Path] = (),
    kinds: Sequence[str] | None = None,
    page_scale: float | None = None,
    fixed_design: bool = False,
    start: int = 0,
) -> list[Exam]:
    """Exams start .. start+count-1; exam i is of kind kinds[i % len(kinds)] (default: every kind
    known, the shipped ones and those in layout_dirs, sorted). An unknown kind raises UnknownDeviceKind."""
    require_fonts()
    cv2.setNumThreads(1)
    registry = load_layouts(extra=list(layout_dirs))
    chosen = list(kinds) if kinds else registry.kinds()
    layouts = [registry[k] for k in chosen]
    out.mkdir(parents=True, exist_ok=True)
    exams = []
    with (out / "truth.jsonl").open("w", encoding="utf-8") as truth:
        for i in range(start, start + count):
            layout = layouts[i % len(layouts)]
            exam = render_exam(layout, seed, i, damage, border, show_boxes, page_scale, fixed_design)
            (out / exam.name).write_bytes(exam.data)
            truth.write(
                json.dumps(
                    {"file": exam.name, "device_kind": exam.kind, "fields": exam.fields, "notes": exam.notes}
                )
                + "\n"
            )
            if verbose:
                print(exam.name, exam.kind, "; ".join(exam.notes), file=sys.stderr)
            exams.append(exam)
    return exams


def _page_scale(text: str) -> float:
    value = float(text)
    if not 0.25 <= value <= 4:
        raise argparse.ArgumentTypeError(f"page scale {text} is outside 0.25-4")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--damage", choices=("none", "light", "full"), default="none")
    parser.add_argument("--no-border", action="store_true", help="no frame of any kind around the page")
    parser.add_argument(
        "--layouts",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of extra layout YAMLs (device kinds the project does not ship); repeatable",
    )
    parser.add_argument("--kinds", nargs="+", metavar="K", help="draw only these kinds (default: all known)")
    parser.add_argument(
        "--page-scale",
        type=_page_scale,
        metavar="S",
        help="page pixels per template pixel (default: random 0.8-1.6 per exam); with 1 and --damage "
        "none an exam is template.width x template.height with every value in its box",
    )
    parser.add_argument(
        "--fixed-design",
        action="store_true",
        help="one design per kind (from --seed and the kind): every exam of a kind shows the same screen, "
        "only values (and damage, and the scale unless --page-scale) change",
    )
    parser.add_argument("--start", type=int, default=0, help="index of the first exam (default 0)")
    parser.add_argument("--show-boxes", action="store_true", help="inspection only: outline the layout boxes")
    parser.add_argument("--verbose", action="store_true", help="print each exam's design and damage")
    args = parser.parse_args(argv)
    if args.count < 0 or args.start < 0:
        parser.error("--count and --start take a number >= 0")
    try:
        registry = load_layouts(extra=list(args.layouts))
    except LayoutError as exc:
        print(f"tests.foreign.render: {exc}", file=sys.stderr)
        return 2
    unknown = [k for k in args.kinds or () if k not in registry]
    if unknown:
        print(
            f"tests.foreign.render: unknown device kind {', '.join(unknown)} "
            f"(known: {', '.join(registry.kinds())})",
            file=sys.stderr,
        )
        return 2
    exams = render_set(
        args.out,
        args.count,
        args.seed,
        args.damage,
        not args.no_border,
        args.show_boxes,
        args.verbose,
        layout_dirs=args.layouts,
        kinds=args.kinds,
        page_scale=args.page_scale,
        fixed_design=args.fixed_design,
        start=args.start,
    )
    print(f"wrote {len(exams)} exams to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
