"""What the cost-curve benchmarks share: the slope of a cost against its load, where it bends, and
one PNG and one Markdown table per curve (docs/measured/cost-curves.md).
`python -m bench.curves DIR` draws the saved curves in DIR again.

The slope is the exponent b of cost ≈ a·nᵇ, fitted by least squares on log–log points: 0 is a
constant cost, 1 linear, 2 quadratic (n log n reads as a little above 1). A curve "bends" at a
point where the slope out of it differs from the slope into it by more than 0.4: the first such
point is printed, so a cost that is flat and then grows says where it starts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BEND = 0.4


def slope(loads: Sequence[float], costs: Sequence[float]) -> float:
    """The exponent b of cost ≈ a·loadᵇ (least squares on logarithms); NaN with fewer than two
    positive points."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(loads, costs, strict=True) if x > 0 and y > 0]
    if len(pairs) < 2:
        return math.nan
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in pairs) / sxx


def growth(b: float) -> str:
    """A word for an exponent: what a platform engineer sizes with."""
    if math.isnan(b):
        return "unknown"
    if b < 0.15:
        return "constant"
    if b < 0.6:
        return "sublinear"
    if b < 1.25:
        return "linear"
    if b < 1.75:
        return "superlinear"
    return "quadratic or worse"


def bend(loads: Sequence[float], costs: Sequence[float]) -> float | None:
    """The first load where the slope changes: the slope from it to the next point differs from
    the slope into it by more than BEND."""
    local = [slope(loads[i - 1 : i + 1], costs[i - 1 : i + 1]) for i in range(1, len(loads))]
    for i in range(1, len(local)):
        if not (math.isnan(local[i]) or math.isnan(local[i - 1])) and abs(local[i] - local[i - 1]) > BEND:
            return loads[i]
    return None


def describe(loads: Sequence[float], costs: Sequence[float]) -> dict[str, Any]:
    b = slope(loads, costs)
    return {
        "slope": None if math.isnan(b) else round(b, 3),
        "growth": growth(b),
        "bends_after": bend(loads, costs),
    }


def markdown(
    load_name: str, loads: Sequence[float], series: Mapping[str, Sequence[float]], digits: int = 3
) -> str:
    """One table: a row per load, a column per series, and a last row of slopes."""
    names = list(series)
    lines = [
        "| " + " | ".join([load_name, *names]) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for i, load in enumerate(loads):
        cells = [f"{series[n][i]:.{digits}g}" for n in names]
        lines.append("| " + " | ".join([f"{load:,.0f}", *cells]) + " |")
    fits = [describe(loads, series[n]) for n in names]
    lines.append(
        "| slope (growth) | "
        + " | ".join(f"{f['slope']} ({f['growth']})" if f["slope"] is not None else "–" for f in fits)
        + " |"
    )
    return "\n".join(lines)


def plot(
    out: Path,
    title: str,
    load_name: str,
    loads: Sequence[float],
    series: Mapping[str, Sequence[float]],
    cost_name: str,
) -> Path:
    """A log–log PNG of every series against the load."""
    from eyeops.plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, costs in series.items():
        ax.plot(loads, costs, "o-", label=f"{name} (slope {describe(loads, costs)['slope']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(load_name)
    ax.set_ylabel(cost_name)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, out)


def report(
    out_dir: Path | None,
    name: str,
    title: str,
    load_name: str,
    loads: Sequence[float],
    series: Mapping[str, Sequence[float]],
    cost_name: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Print the table and one JSON summary; with `out_dir`, also write `<name>.png` and
    `<name>.md` there."""
    table = markdown(load_name, loads, series)
    summary = {
        "curve": name,
        "title": title,
        "load_name": load_name,
        "cost_name": cost_name,
        "loads": list(loads),
        "series": {k: [round(v, 6) for v in vs] for k, vs in series.items()},
        "fits": {k: describe(loads, vs) for k, vs in series.items()},
        **dict(extra or {}),
    }
    print(table)
    print(json.dumps(summary))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot(out_dir / f"{name}.png", title, load_name, loads, series, cost_name)
        (out_dir / f"{name}.md").write_text(f"{table}\n", encoding="utf-8")
        (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def rerender(out_dir: Path) -> None:
    """Draw every curve saved in `out_dir` again (tables, figures and fits) from its JSON."""
    for path in sorted(out_dir.glob("*.json")):
        saved = json.loads(path.read_text(encoding="utf-8"))
        extra = {k: v for k, v in saved.items() if k not in ("curve", "loads", "series", "fits")}
        report(
            out_dir,
            saved["curve"],
            saved.get("title", saved["curve"]),
            saved.get("load_name", "load"),
            saved["loads"],
            saved["series"],
            saved.get("cost_name", "cost"),
            extra,
        )


if __name__ == "__main__":
    import sys

    rerender(Path(sys.argv[1]))
