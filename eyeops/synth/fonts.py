"""Fonts from Debian font packages, split so evaluation uses faces that training never saw."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

TRAIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSans-Bold.ttf",
    "LiberationMono-Regular.ttf",
    "LiberationSerif-Regular.ttf",
    "FreeSans.ttf",
    "FreeMono.ttf",
    "Roboto-Regular.ttf",
    "NotoSansMono-Regular.ttf",
    "Carlito-Regular.ttf",
)
# Held out: never rendered into a training crop.
EVAL_FONTS = (
    "Arimo-Regular.ttf",
    "Cousine-Regular.ttf",
    "Tinos-Regular.ttf",
    "FreeSerif.ttf",
    "LiberationSansNarrow-Regular.ttf",
    "NotoMono-Regular.ttf",
)
DEBIAN_PACKAGES = (
    "fonts-dejavu fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-noto-mono "
    "fonts-roboto-unhinted fonts-croscore fonts-crosextra-carlito"
)


class FontsMissing(RuntimeError):
    pass


def font_dirs() -> list[Path]:
    extra = os.environ.get("EYEOPS_FONT_DIRS", "")
    dirs = [Path(p) for p in extra.split(os.pathsep) if p]
    return [*dirs, Path("/usr/share/fonts"), Path("/usr/local/share/fonts")]


@lru_cache(maxsize=1)
def _index() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in font_dirs():
        if root.is_dir():
            for path in root.rglob("*.ttf"):
                found.setdefault(path.name, path)
    return found


def font_paths(split: str) -> list[Path]:
    """Paths of the 'train' or 'eval' fonts; raise with the install command when some are missing."""
    names = TRAIN_FONTS if split == "train" else EVAL_FONTS
    index = _index()
    missing = [n for n in names if n not in index]
    if missing:
        raise FontsMissing(f"fonts {missing} not found; run: apt-get install {DEBIAN_PACKAGES}")
    return [index[n] for n in names]
