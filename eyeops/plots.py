"""Figures for the reports (operations, OCR evaluation, monitoring, lens answers): one place that
selects matplotlib's file-only backend and turns a figure into a PNG file or an inline <img>."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), imported when first drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed (its memory freed)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def figure_html(fig: Any, alt: str) -> str:
    """The figure inlined as a data-URI <img> inside a <figure>, so a page can be mailed or archived."""
    encoded = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"></figure>'


def save_png(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(figure_png(fig))
    return out
