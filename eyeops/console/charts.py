"""Small charts for the operations page, drawn as inline SVG on the server: no script, no library
in the browser, the same picture in every browser and in a printed page. Each bar carries a
`<title>` with its figure (a tooltip, and what a screen reader says); the table beside each chart
holds the same numbers.

Colours come from a fixed palette in order of the series' names, so a device kind or reason keeps
its colour from chart to chart on one page. Text is escaped: series names come from the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# Colour-blind-safe (Okabe & Ito, 2008), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999", "#555555")
WIDTH = 640
LEFT, RIGHT, TOP = 44, 12, 24  # the plot's margins; the unit sits above the axis, left
PLOT = 150  # the plot's height
LEGEND_ROW = 16
HEIGHT = TOP + PLOT + 22 + LEGEND_ROW  # with one row of legend


def colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per name, in sorted order (the last colour for any beyond the palette)."""
    return {n: PALETTE[min(i, len(PALETTE) - 1)] for i, n in enumerate(sorted(set(names)))}


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above `value` (an axis's top)."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _frame(label: str, top: float, unit: str, height: int) -> list[str]:
    inner_h = PLOT
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}"'
        f' width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + inner_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_number(top * fraction)}</text>"
        )
    if unit:
        parts.append(f'<text x="4" y="{TOP - 10}" font-size="11">{escape(unit)}</text>')
    return parts


def _legend(palette: Mapping[str, str]) -> tuple[list[str], int]:
    """The legend's marks, in rows that fit the width, and the chart's height with them."""
    parts, x, row = [], float(LEFT), 0
    for name, colour in palette.items():
        width = 24 + 6.5 * len(name)
        if x > LEFT and x + width > WIDTH - RIGHT:
            x, row = float(LEFT), row + 1
        y = TOP + PLOT + 22 + LEGEND_ROW * row + 10
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" font-size="11">{escape(name)}</text>'
        )
        x += width
    return parts, TOP + PLOT + 22 + LEGEND_ROW * (row + 1)


def _x_labels(ticks: Sequence[tuple[float, str]]) -> list[str]:
    """The x axis's labels under the plot, centred on their x: at most about twelve, evenly."""
    every = max(1, round(len(ticks) / 12))
    return [
        f'<text x="{x:.1f}" y="{TOP + PLOT + 14}" font-size="11" text-anchor="middle">{escape(name)}</text>'
        for i, (x, name) in enumerate(ticks)
        if i % every == 0
    ]


def stacked_bars(
    label: str,
    series: Mapping[str, Mapping[str, float]],
    unit: str = "",
    palette: Mapping[str, str] | None = None,
) -> str:
    """One bar per x (the keys of `series`, in their order), stacked by the inner keys, with a
    legend. Empty `series`: an empty string (the page says there is nothing instead)."""
    if not series:
        return ""
    names = sorted({name for values in series.values() for name in values})
    palette = dict(palette or colours(names))
    totals = [sum(values.values()) for values in series.values()]
    top = _nice_top(max(totals))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, PLOT
    slot = inner_w / len(series)
    bar = max(2.0, slot * 0.7)
    legend, height = _legend(palette)
    parts = _frame(label, top, unit, height)
    for i, (x_name, values) in enumerate(series.items()):
        x = LEFT + i * slot + (slot - bar) / 2
        base = float(TOP + inner_h)
        for name in names:
            value = float(values.get(name, 0))
            if value <= 0:
                continue
            h = inner_h * value / top
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                f' fill="{palette.get(name, PALETTE[-1])}"><title>{escape(str(x_name))} · {escape(name)}:'
                f" {_number(value)}</title></rect>"
            )
    parts += _x_labels([(LEFT + (i + 0.5) * slot, str(x_name)) for i, x_name in enumerate(series)])
    parts += legend
    parts.append("</svg>")
    return "".join(parts)


def lines(label: str, series: Mapping[str, Mapping[str, float]], unit: str = "") -> str:
    """One line per inner key (e.g. p50, p95) over the x keys of `series`, dots on each point."""
    if not series:
        return ""
    names = sorted({name for values in series.values() for name in values})
    palette = colours(names)
    top = _nice_top(max((v for values in series.values() for v in values.values()), default=0.0))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, PLOT
    slot = inner_w / len(series)
    legend, height = _legend(palette)
    parts = _frame(label, top, unit, height)
    xs = {x_name: LEFT + (i + 0.5) * slot for i, x_name in enumerate(series)}
    for name in names:
        points = [
            (xs[x_name], TOP + inner_h * (1 - float(values[name]) / top), x_name, float(values[name]))
            for x_name, values in series.items()
            if name in values
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{palette[name]}" stroke-width="2"/>')
        for x, y, x_name, value in points:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{palette[name]}"><title>'
                f"{escape(str(x_name))} · {escape(name)}: {_number(value)}</title></circle>"
            )
    parts += _x_labels([(xs[x_name], str(x_name)) for x_name in series])
    parts += legend
    parts.append("</svg>")
    return "".join(parts)
