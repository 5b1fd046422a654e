"""The cost curves' arithmetic (bench/curves.py): the slope a sizing table is read from, and the
point where a curve bends, on costs whose law is known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.curves import bend, describe, growth, markdown, report, slope

LOADS = [1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6]


@pytest.mark.parametrize(
    ("law", "exponent", "word"),
    [
        (lambda n: 5.0, 0.0, "constant"),
        (lambda n: 2e-3 * n, 1.0, "linear"),
        (lambda n: 1e-6 * n * n, 2.0, "quadratic or worse"),
        (lambda n: 1e-4 * n * math.log(n), None, "linear"),  # n log n reads a little above 1
        (lambda n: math.sqrt(n), 0.5, "sublinear"),
    ],
)
def test_the_slope_is_the_exponent_of_the_cost(law, exponent, word) -> None:  # type: ignore[no-untyped-def]
    costs = [law(n) for n in LOADS]
    b = slope(LOADS, costs)
    if exponent is None:
        assert 1.0 < b < 1.2
    else:
        assert b == pytest.approx(exponent, abs=1e-9)
    assert growth(b) == word
    assert bend(LOADS, costs) is None  # one law throughout: no bend


def test_a_cost_flat_then_linear_bends_where_it_starts_to_grow() -> None:
    costs = [max(10.0, n / 1e3) for n in LOADS]  # 10 ms until 10⁴, then linear
    assert bend(LOADS, costs) == 1e4


def test_too_few_points_have_no_slope_and_say_so() -> None:
    assert math.isnan(slope([1000], [2.0]))
    assert describe([1000], [2.0]) == {"slope": None, "growth": "unknown", "bends_after": None}
    assert math.isnan(slope([1000, 1000], [1.0, 2.0]))  # one load twice: no spread to fit


def test_the_report_writes_the_table_the_figure_and_the_numbers(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    series = {"read ms": [0.4, 0.41, 0.43], "file MB": [1.0, 10.0, 100.0]}
    summary = report(tmp_path, "demo", "a title", "eyes", [1e3, 1e4, 1e5], series, "ms / MB")
    assert summary["fits"]["file MB"] == {"slope": 1.0, "growth": "linear", "bends_after": None}
    assert summary["fits"]["read ms"]["growth"] == "constant"
    table = (tmp_path / "demo.md").read_text()
    assert table.splitlines()[-1] == "| slope (growth) | 0.016 (constant) | 1.0 (linear) |"
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "demo.json").read_text())["curve"] == "demo"
    assert "| 100,000 | 0.43 | 100 |" in capsys.readouterr().out
    assert markdown("eyes", [1e3], {"x": [1.0]}).splitlines()[2] == "| 1,000 | 1 |"
