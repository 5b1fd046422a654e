"""The stress renderer's fonts: families from Debian packages that the project's training and evaluation
never use (FONT_FAMILIES, looked up under FONT_ROOT), the families a stress face must not belong to, and
the cached lookups the drawing needs: which faces are installed, which cover a text, a face at a size."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from PIL import ImageFont

FONT_ROOT = Path("/usr/share/fonts")

# Debian packages holding the stress fonts: families the project's training and evaluation never use.
STRESS_FONT_PACKAGES = (
    "fonts-b612",
    "fonts-ocr-b",
    "fonts-mononoki",
    "fonts-anonymous-pro",
    "fonts-oxygen",
    "fonts-cabin",
    "fonts-comfortaa",
    "fonts-league-spartan",
    "fonts-linuxlibertine",
    "fonts-crosextra-caladea",
    "fonts-sil-charis",
    "fonts-inter",
    "fonts-clear-sans",
    "fonts-hermit",
    "fonts-fantasque-sans",
    "fonts-3270",
    "fonts-adf-gillius",
    "fonts-routed-gothic",
    "fonts-dseg",
)

# Families the project uses for training or evaluation: a stress face must belong to none of them.
FORBIDDEN_FAMILIES = (
    "DejaVu",
    "Roboto",
    "Carlito",
    "Noto Sans Mono",
    "Open Sans",
    "Lato",
    "Cantarell",
    "URW Gothic",
    "URW Bookman",
    "Go",
    "C059",
    "P052",
    "Fira Code",
    "JetBrains Mono",
    "Inconsolata",
    "Hack",
    "Arimo",
    "Liberation",
    "FreeSans",
    "FreeSerif",
    "FreeMono",
    "Tinos",
    "Cousine",
    "Nimbus",
)


@dataclass(frozen=True)
class FontFamily:
    family: str
    package: str
    category: str  # sans | serif | mono | condensed | ocr | lcd
    files: str  # regex on the file name


FONT_FAMILIES = (
    FontFamily("B612", "fonts-b612", "sans", r"B612-(Regular|Bold)\.otf"),
    FontFamily("B612 Mono", "fonts-b612", "mono", r"B612Mono-(Regular|Bold)\.otf"),
    FontFamily("OCR B", "fonts-ocr-b", "ocr", r"OCRB\.otf"),
    FontFamily("mononoki", "fonts-mononoki", "mono", r"mononoki-(Regular|Bold)\.ttf"),
    FontFamily("Anonymous Pro", "fonts-anonymous-pro", "mono", r"Anonymous Pro( B)?\.ttf"),
    FontFamily("Oxygen", "fonts-oxygen", "sans", r"Oxygen-Sans(-Bold)?\.ttf"),
    FontFamily("Oxygen Mono", "fonts-oxygen", "mono", r"OxygenMono-Regular\.ttf"),
    FontFamily("Cabin", "fonts-cabin", "sans", r"Cabin-(Regular|Medium|Bold)\.otf"),
    FontFamily("Comfortaa", "fonts-comfortaa", "sans", r"Comfortaa-(Regular|Bold)\.ttf"),
    FontFamily("League Spartan", "fonts-league-spartan", "sans", r"LeagueSpartan-(Regular|Medium)\.otf"),
    FontFamily("Linux Libertine", "fonts-linuxlibertine", "serif", r"LinLibertine_(R|RB)\.otf"),
    FontFamily("Linux Biolinum", "fonts-linuxlibertine", "sans", r"LinBiolinum_(R|RB)\.otf"),
    FontFamily("Caladea", "fonts-crosextra-caladea", "serif", r"Caladea-(Regular|Bold)\.ttf"),
    FontFamily("Charis SIL", "fonts-sil-charis", "serif", r"CharisSIL-(Regular|Bold)\.ttf"),
    FontFamily("Inter", "fonts-inter", "sans", r"Inter-(Regular|Medium|SemiBold)\.otf"),
    FontFamily("Clear Sans", "fonts-clear-sans", "sans", r"ClearSans-(Regular|Medium|Bold)\.ttf"),
    FontFamily("Hermit", "fonts-hermit", "mono", r"Hermit-(medium|bold)\.otf"),
    FontFamily(
        "Fantasque Sans Mono", "fonts-fantasque-sans", "mono", r"FantasqueSansMono-(Regular|Bold)\.ttf"
    ),
    FontFamily("IBM 3270", "fonts-3270", "mono", r"3270-Regular\.ttf"),
    FontFamily("IBM 3270 Condensed", "fonts-3270", "condensed", r"3270(Semi)?Condensed-Regular\.ttf"),
    FontFamily("Gillius ADF Cond", "fonts-adf-gillius", "condensed", r"GilliusADF(No2)?-(Bold)?Cond\.otf"),
    FontFamily("Routed Gothic Narrow", "fonts-routed-gothic", "condensed", r"routed-gothic-narrow\.ttf"),
    FontFamily("DSEG7 Classic", "fonts-dseg", "lcd", r"DSEG7Classic-(Regular|Bold)\.ttf"),
    FontFamily("DSEG14 Classic", "fonts-dseg", "lcd", r"DSEG14Classic-(Regular|Bold)\.ttf"),
)


class StressFontsMissing(RuntimeError):
    """The stress fonts are not installed."""


@dataclass(frozen=True)
class Face:
    family: str
    category: str
    path: Path


@lru_cache(maxsize=1)
def _all_font_files() -> tuple[Path, ...]:
    if not FONT_ROOT.is_dir():
        return ()
    return tuple(sorted(p for p in FONT_ROOT.rglob("*") if p.suffix.lower() in (".ttf", ".otf")))


def find_font_files(family: str) -> list[Path]:
    """The font files of one stress family under /usr/share/fonts (one per file name)."""
    spec = next((f for f in FONT_FAMILIES if f.family == family), None)
    if spec is None:
        raise KeyError(f"{family!r} is not a stress font family; known: {[f.family for f in FONT_FAMILIES]}")
    pattern = re.compile(spec.files)
    found: dict[str, Path] = {}
    for path in _all_font_files():
        if pattern.fullmatch(path.name) and path.name not in found:
            found[path.name] = path
    return sorted(found.values())


@lru_cache(maxsize=1)
def stress_faces() -> tuple[Face, ...]:
    """Every installed stress face; a clear error naming the apt-get command when any family is missing
    (a set drawn on a machine with fewer fonts would not be the same set)."""
    faces: list[Face] = []
    missing: list[FontFamily] = []
    for spec in FONT_FAMILIES:
        files = find_font_files(spec.family)
        if not files:
            missing.append(spec)
        faces.extend(Face(spec.family, spec.category, p) for p in files)
    if missing:
        packages = sorted({m.package for m in missing})
        raise StressFontsMissing(
            f"stress font families not found under {FONT_ROOT}: {', '.join(m.family for m in missing)}; "
            f"install them with: apt-get install -y {' '.join(packages)}"
            f" (all of them: apt-get install -y {' '.join(STRESS_FONT_PACKAGES)})"
        )
    return tuple(faces)


@lru_cache(maxsize=256)
def _cmap(path: Path) -> frozenset[int]:
    font = TTFont(str(path), lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def font_family_names(path: Path) -> set[str]:
    """The family names (name IDs 1 and 16) a font file declares."""
    font = TTFont(str(path), lazy=True)
    try:
        names = {font["name"].getDebugName(i) for i in (1, 16)}
    finally:
        font.close()
    return {n for n in names if n}


def covers(face: Face, text: str) -> bool:
    cmap = _cmap(face.path)
    return all(ord(c) in cmap for c in text if c != " ")


@lru_cache(maxsize=2048)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)
