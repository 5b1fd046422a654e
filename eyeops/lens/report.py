"""The lens evaluation as a page a data scientist reads: coverage per size against the target band,
the in-range rate each policy reaches with its interval, interval and bound widths, the
propensity overlap between sizes, and the comparison with the champion."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np

from eyeops.lens.sizes import SIZES_MM

HEADLINE = (
    ("mae_um", "MAE (µm)"),
    ("coverage_factual", "factual coverage"),
    ("coverage_counterfactual_unsupported", "counterfactual coverage, unsupported sizes"),
    ("mean_interval_width_um", "interval width (µm)"),
    ("unsupported_bound_width_um", "bound width (µm)"),
    ("in_range_rate_recommended", "in range, recommended (true)"),
)


def _value(metrics: Mapping[str, Any] | None, key: str) -> str:
    if metrics is None or metrics.get(key) is None:
        return "—"
    value = metrics[key]
    if isinstance(value, dict) and "estimate" in value:
        return f"{value['estimate']:.3f} ({value['ci_low']:.3f}–{value['ci_high']:.3f})"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def evaluation_page(
    metrics: Mapping[str, Any],
    champion: Mapping[str, Any] | None = None,
    propensity: np.ndarray | None = None,
) -> str:
    """An HTML page (figures inline) for `metrics` (eyeops.lens.evaluate.evaluate), beside the
    champion's metrics on its own evaluation when there is one; `propensity` (eyes × sizes) draws
    the overlap the supported/unsupported split rests on."""
    from eyeops.plots import figure_html, pyplot

    plt = pyplot()
    parts = [f"<h1>Lens model {html.escape(str(metrics.get('model_version', '')))}: evaluation</h1>"]
    rows = "".join(
        f"<tr><td>{label}</td><td>{_value(metrics, key)}</td><td>{_value(champion, key)}</td></tr>"
        for key, label in (
            *HEADLINE,
            ("ope_in_range_recommended", "in range, recommended (off-policy, 95 % CI)"),
            ("ope_in_range_nomogram", "in range, nomogram (off-policy, 95 % CI)"),
            ("ope_in_range_surgeons", "in range, surgeons' choices (observed)"),
        )
    )
    parts.append(
        f"<table border=1 cellpadding=4><tr><th></th><th>candidate</th><th>champion</th></tr>{rows}</table>"
    )

    parts.append(_unsupported_section(metrics))

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    by_size = metrics.get("coverage_factual_by_size", {})
    labels = [f"{s:.1f}" for s in SIZES_MM]
    axes[0].bar(labels, [by_size.get(label, np.nan) for label in labels], color="#1565c0")
    axes[0].axhspan(0.88, 0.92, color="#2e7d32", alpha=0.15, label="target 0.88–0.92")
    axes[0].axhline(0.86, color="#c62828", linewidth=1, label="per-size floor 0.86")
    axes[0].set_ylim(0.7, 1.0)
    axes[0].set_title("factual coverage by size", fontsize=9)
    axes[0].legend(fontsize=7)
    policies = [
        (name, metrics.get(f"ope_in_range_{name}"), metrics.get(f"in_range_rate_{name}"))
        for name in ("recommended", "nomogram", "surgeons")
    ]
    for i, (_, estimate, true_rate) in enumerate(policies):
        if isinstance(estimate, dict):
            value = estimate["estimate"]
            axes[1].errorbar(
                i, value, yerr=[[value - estimate["ci_low"]], [estimate["ci_high"] - value]],
                fmt="o", color="#1565c0", capsize=4, label="off-policy estimate, 95 % CI" if i == 0 else None,
            )  # fmt: skip
        if true_rate is not None:
            axes[1].plot(i, true_rate, "x", color="#c62828", label="true (simulation)" if i == 0 else None)
    axes[1].set_xticks(range(3), [p[0] for p in policies])
    axes[1].set_title("share of eyes in 250–750 µm, by policy", fontsize=9)
    axes[1].legend(fontsize=7)
    widths = [metrics.get("mean_interval_width_um"), metrics.get("unsupported_bound_width_um")]
    axes[2].bar(["intervals (supported)", "bounds (unsupported)"], [w or 0 for w in widths], color="#9e9e9e")
    axes[2].set_title("mean width (µm)", fontsize=9)
    parts.append(figure_html(fig, "coverage, in-range rate by policy, widths"))

    if propensity is not None and len(propensity):
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        for j, size in enumerate(SIZES_MM):
            ax.hist(propensity[:, j], bins=40, range=(0, 1), histtype="step", label=f"{size:.1f} mm")
        ax.axvline(0.125, color="black", linestyle="dashed", linewidth=1, label="support threshold δ")
        ax.set_title("propensity of each size over the test eyes (overlap)", fontsize=9)
        ax.legend(fontsize=7)
        parts.append(figure_html(fig, "propensity overlap"))
    return "<html><body>" + "".join(parts) + "</body></html>"


BOUNDS_COMPARED = (
    ("monotone", "coverage_counterfactual_unsupported_monotone", "unsupported_bound_width_monotone_um"),
    ("fixed 200 µm/mm (before)", "coverage_counterfactual_unsupported_fixed_margin",
     "unsupported_bound_width_fixed_margin_um"),
    ("served (margin from data)", "coverage_counterfactual_unsupported", "unsupported_bound_width_um"),
)  # fmt: skip


def _unsupported_section(metrics: Mapping[str, Any]) -> str:
    """Sizes the data do not support for an eye: per size, the margin its bounds use, the eyes it
    rests on, or why there is none (monotone bounds); then the bounds' coverage of true
    counterfactual vaults (a simulator) and their width, monotone, fixed margin and served."""
    rows = []
    for m in metrics.get("gain_margins") or []:
        margin, scale = m.get("margin_um_per_mm"), m.get("scale")
        if isinstance(scale, int | float):
            bound = f"± {scale:g} × expected error"
        elif m.get("band_eyes"):
            bound = (
                f"band per eye × expected error, weighted from {int(m['band_eyes'])} eyes"
                f" ({float(m.get('effective_eyes') or 0):.0f} effective)"
            )
        elif isinstance(margin, int | float) and np.isfinite(margin):
            bound = f"{margin:.0f} µm/mm"
        elif m.get("steps") == "unchecked":
            bound = "none: per-step bounds (published)"
        else:
            bound = "none: monotone bounds"
        why = m.get("why") or ("fixed" if m.get("eyes") is None else "estimated")
        steps = m.get("steps")
        checked = "—" if steps is None else f"{steps} ({int(m.get('outside_steps') or 0)} outside)"
        rows.append(
            "<tr>"
            f"<td>{float(m['size_mm']):.1f} mm</td>"
            f"<td>{bound}</td>"
            f"<td>{'—' if m.get('eyes') is None else int(m['eyes'])}</td>"
            f"<td>{checked}</td>"
            f"<td>{html.escape(str(why))}</td>"
            "</tr>"
        )
    parts = [
        "<h2>Bounds for unsupported sizes</h2>",
        "<table border=1 cellpadding=4><tr><th>size</th><th>bound</th><th>eyes</th>"
        "<th>per-step gain</th><th>why</th></tr>" + "".join(rows) + "</table>",
    ]
    compared = "".join(
        f"<tr><td>{label}</td><td>{_value(metrics, cov)}</td><td>{_value(metrics, width)}</td></tr>"
        for label, cov, width in BOUNDS_COMPARED
    )
    parts.append(
        "<table border=1 cellpadding=4><tr><th>bounds</th><th>counterfactual coverage (0.95 claimed)</th>"
        f"<th>mean width (µm)</th></tr>{compared}</table>"
    )
    facts = (
        ("unsupported_fell_back_share", "share of unsupported pairs without a band from data"),
        ("width_ratio_where_a_margin_holds", "width against monotone where a band holds (target ≤ 0.6)"),
        ("coverage_where_a_margin_holds", "coverage where a band holds"),
        ("coverage_unsupported_implanted", "coverage on held-out eyes implanted with an unsupported size"),
        ("unsupported_implanted_eyes", "those eyes"),
    )
    parts.append(
        "<ul>" + "".join(f"<li>{label}: {_value(metrics, key)}</li>" for key, label in facts) + "</ul>"
    )
    return "".join(parts)
