"""Fonts from Debian font packages, split so evaluation uses faces that training never saw."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from eyeops.errors import EyeopsError

# Held out by design family, not just by file: every Helvetica/Arial, Times and Courier clone
# (Liberation, Arimo/Tinos/Cousine, FreeFont, Nimbus) is evaluation-only, so a held-out font is never
# a metric-compatible twin of a training font.
TRAIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "Roboto-Regular.ttf",
    "Carlito-Regular.ttf",
    "NotoSansMono-Regular.ttf",
    "OpenSans-Regular.ttf",
    "Lato-Regular.ttf",
    "Cantarell-Regular.otf",
    "URWGothic-Book.otf",
    "Go-Regular.ttf",
    "Go-Mono.ttf",
    "C059-Roman.otf",
    "P052-Roman.otf",
    "FiraCode-Regular.ttf",
    "JetBrainsMono-Regular.ttf",
    "Inconsolata.otf",
    "Hack-Regular.ttf",
    # Other weights and widths of the same families (added for the third training round): the
    # held-out faces include a thin Courier (FreeMono), a narrow Helvetica and light Times clones,
    # which the regular weights above left the recogniser unprepared for.
    "DejaVuSans-ExtraLight.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerifCondensed.ttf",
    "Roboto-Light.ttf",
    "Roboto-Bold.ttf",
    "RobotoCondensed-Regular.ttf",
    "RobotoCondensed-Light.ttf",
    "Carlito-Bold.ttf",
    "NotoSansMono-Bold.ttf",
    "OpenSans-Light.ttf",
    "OpenSans-CondLight.ttf",
    "OpenSans-Semibold.ttf",
    "Lato-Light.ttf",
    "Lato-Bold.ttf",
    "Cantarell-Light.otf",
    "URWGothic-Demi.otf",
    "URWBookman-Light.otf",
    "Go-Medium.ttf",
    "Go-Mono-Bold.ttf",
    "C059-Bold.otf",
    "P052-Bold.otf",
    "FiraCode-Light.ttf",
    "JetBrainsMono-Light.ttf",
    "JetBrainsMono-ExtraLight.ttf",
    "Hack-Bold.ttf",
)
EVAL_FONTS = (
    "Arimo-Regular.ttf",
    "LiberationSans-Regular.ttf",
    "FreeSans.ttf",
    "LiberationSansNarrow-Regular.ttf",
    "Tinos-Regular.ttf",
    "LiberationSerif-Regular.ttf",
    "FreeSerif.ttf",
    "Cousine-Regular.ttf",
    "LiberationMono-Regular.ttf",
    "FreeMono.ttf",
)
# The broad training pool (`--variety broad`): dozens more design families, in several weights and
# widths, so the recogniser learns digits rather than the 15 families above. Grouped by family, the
# unit of sampling and of the hold-out rule. None of them is a Helvetica/Arial, Times or Courier clone
# (no Liberation, Arimo/Tinos/Cousine, FreeFont, Nimbus, TeX Gyre, STIX, Courier Prime) and none is,
# or derives from, a family the independent stress renderer draws with (tests/stress/render.py:
# B612, OCR-B, mononoki, Anonymous Pro, Oxygen, Cabin, Comfortaa, League Spartan, Linux Libertine,
# Caladea, Charis, Inter, Clear Sans, Hermit, Fantasque, IBM 3270, Gillius, Routed Gothic, DSEG).
# tests/unit/test_synth_broad.py checks both by the family names read from the font files.
BROAD_TRAIN_FAMILIES: dict[str, tuple[str, ...]] = {
    "Noto Sans": (
        "NotoSans-Regular.ttf", "NotoSans-Light.ttf", "NotoSans-Bold.ttf", "NotoSans-ExtraLight.ttf",
        "NotoSans-SemiCondensed.ttf", "NotoSans-Condensed.ttf", "NotoSans-CondensedLight.ttf",
        "NotoSans-CondensedBold.ttf", "NotoSans-ExtraCondensed.ttf", "NotoSans-ExtraCondensedSemiBold.ttf",
    ),
    "Noto Sans Display": (
        "NotoSansDisplay-Regular.ttf", "NotoSansDisplay-Light.ttf", "NotoSansDisplay-Condensed.ttf",
        "NotoSansDisplay-ExtraCondensedLight.ttf",
    ),
    "Noto Serif": (
        "NotoSerif-Regular.ttf", "NotoSerif-Light.ttf", "NotoSerif-Bold.ttf", "NotoSerif-Condensed.ttf",
        "NotoSerif-ExtraCondensed.ttf", "NotoSerifDisplay-Regular.ttf",
        "NotoSerifDisplay-SemiCondensedLight.ttf",
    ),
    "Quicksand": ("Quicksand-Regular.ttf", "Quicksand-Light.ttf", "Quicksand-Bold.ttf"),
    "Dosis": ("Dosis-Book.otf", "Dosis-Light.otf", "Dosis-Bold.otf", "Dosis-ExtraLight.otf"),
    "Jura": ("Jura-Regular.otf", "Jura-Light.otf", "Jura-Bold.otf"),
    "EB Garamond": ("EBGaramond12-Regular.otf", "EBGaramond12-Bold.otf"),
    "M PLUS": (
        "Mplus1-Regular.otf", "Mplus1-Light.otf", "Mplus1-Bold.otf", "Mplus2-Regular.otf", "Mplus2-Thin.otf",
    ),
    "M PLUS Code": (
        "Mplus1Code-Regular.otf", "Mplus1Code-Light.otf", "MplusCodeLatin50-Regular.otf",
        "MplusCodeLatin60-Bold.otf",
    ),
    "Agave": ("agave-r-autohinted.ttf", "agave-b-autohinted.ttf"),
    "Monoid": ("Monoid-Regular.ttf", "Monoid-Bold.ttf"),
    "PT Sans": ("PTS55F.ttf", "PTS75F.ttf", "PTN57F.ttf", "PTN77F.ttf", "PTC55F.ttf"),
    "PT Serif": ("PTF55F.ttf", "PTF75F.ttf", "PTZ55F.ttf"),
    "PT Mono": ("PTM55F.ttf", "PTM75F.ttf"),
    "League Mono": (
        "LeagueMono-Regular.otf", "LeagueMono-Light.otf", "LeagueMono-Bold.otf", "LeagueMono-Condensed.otf",
        "LeagueMono-CondensedLight.otf", "LeagueMono-CondensedBold.otf", "LeagueMono-NarrowRegular.otf",
        "LeagueMono-NarrowBold.otf", "LeagueMono-ExtendedRegular.otf", "LeagueMono-WideLight.otf",
        "LeagueMono-UltraLight.otf",
    ),
    "Karla": ("Karla-Regular.otf", "Karla-Light.otf", "Karla-Bold.otf"),
    "Manrope": ("Manrope-Regular.ttf", "Manrope-Light.ttf", "Manrope-Bold.ttf", "Manrope-ExtraLight.ttf"),
    "Vollkorn": ("Vollkorn-Regular.ttf", "Vollkorn-Bold.ttf"),
    "Play": ("Play-Regular.ttf", "Play-Bold.ttf"),
    "Roboto Slab": ("RobotoSlab-Regular.otf", "RobotoSlab-Light.otf", "RobotoSlab-Bold.otf"),
    "Comic Neue": ("ComicNeue-Regular.otf", "ComicNeue-Bold.otf", "ComicNeue-Light.otf"),
    "Tuffy": ("Tuffy.ttf", "Tuffy_Bold.ttf"),
    "Universalis ADF": (
        "UniversalisADFStd-Regular.otf", "UniversalisADFStd-Bold.otf", "UniversalisADFStd-Cond.otf",
        "UniversalisADFStd-BoldCond.otf",
    ),
    "Berenis ADF": ("BerenisADFPro-Regular.otf", "BerenisADFPro-Bold.otf"),
    "Verana": ("VeranaSans-Regular.otf", "VeranaSans-Bold.otf", "Verana-Regular.otf"),
    "Libris ADF": ("LibrisADFStd-Regular.otf", "LibrisADFStd-Bold.otf"),
    "Baskervald ADF": ("BaskervaldADFStd.otf", "BaskervaldADFStd-Bold.otf"),
    "Andika": ("Andika-Regular.ttf", "Andika-Bold.ttf"),
    "Gentium": ("GentiumPlus-Regular.ttf", "GentiumPlus-Bold.ttf", "GentiumBookPlus-Regular.ttf"),
    "Old Standard": ("OldStandard-Regular.ttf", "OldStandard-Bold.ttf"),
    "CMU Serif": ("cmunrm.ttf", "cmunbx.ttf", "cmunorm.ttf"),
    "CMU Sans": ("cmunss.ttf", "cmunsx.ttf", "cmunssdc.ttf", "cmunbmr.ttf"),
    "CMU Typewriter": ("cmuntt.ttf", "cmuntb.ttf", "cmunvt.ttf"),
    "osifont": ("osifont.ttf",),
    "OSP-DIN": ("OSP-DIN.ttf",),
    "Yanone Kaffeesatz": (
        "YanoneKaffeesatz-Regular.otf", "YanoneKaffeesatz-Light.otf", "YanoneKaffeesatz-Bold.otf",
    ),
    "Averia": ("AveriaSansGWF-Regular.ttf", "AveriaSansGWF-Bold.ttf", "AveriaSerifGWF-Regular.ttf"),
    "Beteckna": ("BetecknaGS.ttf", "BetecknaGSCondensed-Bold.ttf"),
    "GFS Didot": ("GFSDidot.otf", "GFSDidotBold.otf"),
    "Junction": ("Junction.otf",),
    "Bebas Neue": ("BebasNeue-Regular.otf", "BebasNeue-Bold.otf", "BebasNeue-Light.otf"),
    "Fanwood Text": ("FanwoodText.otf",),
}  # fmt: skip
BROAD_TRAIN_FONTS = tuple(f for files in BROAD_TRAIN_FAMILIES.values() for f in files)
DEBIAN_PACKAGES = (
    "fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-noto-mono "
    "fonts-roboto-unhinted fonts-croscore fonts-crosextra-carlito fonts-urw-base35 fonts-open-sans "
    "fonts-lato fonts-inconsolata fonts-hack fonts-firacode fonts-cantarell fonts-go fonts-jetbrains-mono "
    "fonts-noto-core fonts-noto-extra fonts-quicksand fonts-dosis fonts-jura fonts-ebgaramond fonts-mplus "
    "fonts-agave fonts-monoid fonts-paratype fonts-league-mono fonts-karla fonts-manrope fonts-vollkorn "
    "fonts-play fonts-roboto-slab fonts-comic-neue fonts-tuffy fonts-adf-universalis fonts-adf-berenis "
    "fonts-adf-verana fonts-adf-libris fonts-adf-baskervald fonts-sil-andika fonts-sil-gentiumplus "
    "fonts-oldstandard fonts-cmu fonts-osifont fonts-opendin fonts-yanone-kaffeesatz fonts-averia-sans-gwf "
    "fonts-averia-serif-gwf fonts-beteckna fonts-gfs-didot fonts-junction fonts-bebas-neue fonts-fanwood"
)


class FontsMissing(EyeopsError, RuntimeError):
    """The Debian font packages the renderer draws with are not installed."""


def font_dirs() -> list[Path]:
    extra = os.environ.get("EYEOPS_FONT_DIRS", "")
    dirs = [Path(p) for p in extra.split(os.pathsep) if p]
    return [*dirs, Path("/usr/share/fonts"), Path("/usr/local/share/fonts")]


@lru_cache(maxsize=1)
def _index() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in font_dirs():
        if root.is_dir():
            for pattern in ("*.ttf", "*.otf"):
                for path in root.rglob(pattern):
                    found.setdefault(path.name, path)
    return found


def font_names(split: str) -> tuple[str, ...]:
    """File names of the 'train' or 'eval' fonts, or of the 'broad' training pool (the 45 'train'
    faces first, then BROAD_TRAIN_FONTS)."""
    if split == "broad":
        return TRAIN_FONTS + BROAD_TRAIN_FONTS
    return TRAIN_FONTS if split == "train" else EVAL_FONTS


def font_paths(split: str) -> list[Path]:
    """Paths of the 'train', 'eval' or 'broad' fonts; raise with the install command when some are missing."""
    names = font_names(split)
    index = _index()
    missing = [n for n in names if n not in index]
    if missing:
        raise FontsMissing(f"fonts {missing} not found; run: apt-get install {DEBIAN_PACKAGES}")
    return [index[n] for n in names]
