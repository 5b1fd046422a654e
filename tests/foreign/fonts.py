"""The foreign renderer's fonts: families from Debian packages the project installs nowhere
(FOREIGN_FONT_PACKAGES), each face's file, the faces for labels, and the cached lookups the drawing
needs: a face at a size, which characters it covers, how tall its digits are."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

FOREIGN_FONT_PACKAGES: tuple[str, ...] = (
    "fonts-tiresias",
    "fonts-national-park",
    "fonts-roadgeek",
    "fonts-sora",
    "fonts-quattrocento",
    "fonts-opendyslexic",
    "fonts-yrsa-rasa",
    "fonts-cardo",
    "fonts-ocr-a",
    "fonts-monofur",
    "fonts-glasstty",
    "fonts-sixtyfour",
    "fonts-gnutypewriter",
    "fonts-pc",
)


@dataclass(frozen=True)
class Face:
    package: str
    path: str
    family: str
    kind: str  # sans | serif | mono | pixel
    bold: bool = False


_T = "/usr/share/fonts/truetype"
_O = "/usr/share/fonts/opentype"

FACES: tuple[Face, ...] = (
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_infofont.ttf", "Tiresias Infofont", "sans"),
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_infofont_bold.ttf", "Tiresias Infofont", "sans", True),
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_pcfont.ttf", "Tiresias PCfont", "sans"),
    Face("fonts-tiresias", f"{_T}/tiresias/tiresias_signfont_bold.ttf", "Tiresias Signfont", "sans", True),
    Face("fonts-national-park", f"{_O}/national-park/NationalPark-Regular.otf", "National Park", "sans"),
    Face("fonts-national-park", f"{_O}/national-park/NationalPark-Heavy.otf", "National Park", "sans", True),
    Face("fonts-roadgeek", f"{_T}/roadgeek/RG2014C.ttf", "Roadgeek 2014 Series C", "sans"),
    Face("fonts-roadgeek", f"{_T}/roadgeek/RG2014D.ttf", "Roadgeek 2014 Series D", "sans"),
    Face("fonts-roadgeek", f"{_T}/roadgeek/RG2014E.ttf", "Roadgeek 2014 Series E", "sans", True),
    Face("fonts-sora", f"{_O}/sora/Sora-Light.otf", "Sora", "sans"),
    Face("fonts-sora", f"{_O}/sora/Sora-Regular.otf", "Sora", "sans"),
    Face("fonts-sora", f"{_O}/sora/Sora-SemiBold.otf", "Sora", "sans", True),
    Face("fonts-quattrocento", f"{_O}/quattrocento/Quattrocento-Regular.otf", "Quattrocento", "serif"),
    Face("fonts-opendyslexic", f"{_O}/opendyslexic/OpenDyslexic-Regular.otf", "OpenDyslexic", "sans"),
    Face("fonts-opendyslexic", f"{_O}/opendyslexic/OpenDyslexic-Bold.otf", "OpenDyslexic", "sans", True),
    Face("fonts-opendyslexic", f"{_O}/opendyslexic/OpenDyslexicMono-Regular.otf", "OpenDyslexicMono", "mono"),
    Face("fonts-yrsa-rasa", f"{_T}/fonts-yrsa-rasa/Yrsa-Regular.ttf", "Yrsa", "serif"),
    Face("fonts-yrsa-rasa", f"{_T}/fonts-yrsa-rasa/Yrsa-Bold.ttf", "Yrsa", "serif", True),
    Face("fonts-yrsa-rasa", f"{_T}/fonts-yrsa-rasa/Rasa-Medium.ttf", "Rasa", "serif"),
    Face("fonts-cardo", f"{_T}/cardo/Cardo104s.ttf", "Cardo", "serif"),
    Face("fonts-cardo", f"{_T}/cardo/Cardob101.ttf", "Cardo", "serif", True),
    Face("fonts-ocr-a", f"{_T}/ocr-a/OCRA.ttf", "OCRA", "mono"),
    Face("fonts-ocr-a", f"{_T}/ocr-a/OCRACondensed.ttf", "OCRACondensed", "mono"),
    Face("fonts-monofur", f"{_T}/monofur/monof55.ttf", "monofur", "mono"),
    Face("fonts-glasstty", f"{_T}/glasstty/Glass_TTY_VT220.ttf", "Glass TTY VT220", "pixel"),
    Face("fonts-sixtyfour", f"{_T}/sixtyfour/C-64-Regular.ttf", "C-64", "pixel"),
    Face("fonts-gnutypewriter", f"{_T}/gnutypewriter/GNUTypewriter.ttf", "GNUTypewriter", "mono"),
    Face("fonts-pc", "/usr/share/fonts/pc/Px_IBM_VGA8.ttf", "Px IBM VGA8", "pixel"),
    Face("fonts-pc", "/usr/share/fonts/pc/Px_IBM_MDA.ttf", "Px IBM MDA", "pixel"),
)

# Faces drawn for labels, titles and units (readable at small sizes).
LABEL_FACES = tuple(f for f in FACES if f.family not in ("C-64", "Glass TTY VT220"))


def missing_font_packages() -> list[str]:
    return sorted({f.package for f in FACES if not Path(f.path).is_file()})


def require_fonts() -> None:
    missing = missing_font_packages()
    if missing:
        raise SystemExit(
            f"tests.foreign.render: missing font packages {' '.join(missing)} "
            f"(apt-get install -y {' '.join(missing)})"
        )


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(4, size))


@lru_cache(maxsize=64)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(path, lazy=True).getBestCmap())


def supports(face: Face, text: str) -> bool:
    cmap = _cmap(face.path)
    return all(ord(c) in cmap for c in text if c != " ")


@lru_cache(maxsize=64)
def _digit_ratio(path: str) -> float:
    """Ink height of a zero per pixel of font size."""
    _, top, _, bottom = _font(path, 200).getbbox("0", anchor="ls")
    return (bottom - top) / 200.0
