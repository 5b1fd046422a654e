"""The operations page's charts (eyeops.console.charts): bars as tall as their figures, stacked in
a fixed order, a colour per series name shared between charts, names from the database escaped."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from eyeops.console.charts import HEIGHT, PALETTE, colours, lines, stacked_bars


def _rects(svg: str) -> list[tuple[float, float, str, str]]:
    """(y, height, fill, title) of every bar."""
    return [
        (float(y), float(h), fill, title)
        for y, h, fill, title in re.findall(
            r'<rect x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)" fill="([^"]+)">'
            r"<title>([^<]+)</title>",
            svg,
        )
    ]


def test_stacked_bars_are_as_tall_as_their_figures_and_stack_in_name_order() -> None:
    series = {"09:00": Counter({"tonometer": 2, "biometer": 6}), "10:00": Counter({"biometer": 4})}
    svg = stacked_bars("Exams per hour", series, "exams")
    bars = _rects(svg)
    assert [t for *_, t in bars] == ["09:00 · biometer: 6", "09:00 · tonometer: 2", "10:00 · biometer: 4"]
    heights = {t: h for _, h, _, t in bars}
    assert heights["09:00 · biometer: 6"] == pytest.approx(3 * heights["09:00 · tonometer: 2"], rel=0.02)
    assert heights["10:00 · biometer: 4"] == pytest.approx(2 * heights["09:00 · tonometer: 2"], rel=0.02)
    (y_low, *_), (y_high, h_high, *_) = bars[0], bars[1]
    assert y_high + h_high == pytest.approx(y_low)  # the second sits on the first
    assert ">10</text>" in svg  # the axis's top: the next round number above 8
    assert svg.startswith('<svg class="chart" role="img" aria-label="Exams per hour"') and svg.endswith(
        "</svg>"
    )


def test_a_name_keeps_its_colour_and_text_is_escaped() -> None:
    palette = colours(["b", "a", "<script>"])
    assert palette == {"<script>": PALETTE[0], "a": PALETTE[1], "b": PALETTE[2]}
    svg = stacked_bars("x & y", {"d1": {"<script>": 1.0, "a": 2.0}}, palette=palette)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and 'aria-label="x &amp; y"' in svg
    fills = {t.split(" · ")[1].split(":")[0]: f for _, _, f, t in _rects(svg)}
    assert fills == {"&lt;script&gt;": PALETTE[0], "a": PALETTE[1]}


def test_nothing_to_draw_draws_nothing_and_lines_place_points_by_value() -> None:
    assert stacked_bars("empty", {}) == "" and lines("empty", {}) == ""
    svg = lines("Latency", {"d1": {"p50": 50.0, "p95": 100.0}, "d2": {"p50": 25.0}}, "ms")
    points = {
        title: float(cy)
        for cy, title in re.findall(
            r'<circle cx="[^"]+" cy="([^"]+)" r="3" fill="[^"]+"><title>([^<]+)</title>', svg
        )
    }
    assert set(points) == {"d1 · p50: 50", "d1 · p95: 100", "d2 · p50: 25"}
    # higher values sit higher (smaller y), evenly: 100 is as far above 50 as 50 is above 0
    assert points["d1 · p95: 100"] < points["d1 · p50: 50"] < points["d2 · p50: 25"] < HEIGHT
    step = points["d2 · p50: 25"] - points["d1 · p50: 50"]
    assert points["d1 · p50: 50"] - points["d1 · p95: 100"] == pytest.approx(2 * step, rel=0.02)
    assert svg.count("<polyline") == 1  # p95 has one point: a dot, no line
