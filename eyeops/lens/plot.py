"""A picture of one eye's answer: per size the interval (supported) or the bounds (unsupported, with
what they assume), the predicted vault, the 250–750 µm target band, and the recommendation."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_recommendation(answer: dict[str, Any], out: Path) -> None:
    from eyeops.plots import pyplot, save_png

    plt = pyplot()
    sizes = answer["sizes"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhspan(250, 750, color="#2e7d32", alpha=0.12, label="target 250–750 µm")
    for i, s in enumerate(sizes):
        supported = s["supported"]
        ax.vlines(
            i,
            s["lower_um"],
            s["upper_um"],
            colors="#1565c0" if supported else "#9e9e9e",
            linewidth=8 if supported else 3,
            linestyles="solid" if supported else "dashed",
        )
        ax.plot(i, s["vault_um"], "o", color="black", zorder=3)
        note = f"P={s['p_in_range']:.2f}" if supported else "bounds"
        ax.annotate(
            note, (i, s["upper_um"]), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
        )
    recommended = [i for i, s in enumerate(sizes) if s["size_mm"] == answer["recommended_size_mm"]]
    if recommended:
        ax.axvline(recommended[0], color="#f9a825", linewidth=1.5, label="recommended")
    ax.set_xticks(range(len(sizes)), [f"{s['size_mm']:.1f}" for s in sizes])
    ax.set_xlabel("ICL size (mm)   ▮ interval (supported)   ┆ bounds (not supported)")
    ax.set_ylabel("postoperative vault (µm)")
    ax.set_ylim(0, max(2000.0, max(s["upper_um"] for s in sizes) + 100))
    title = answer.get("eye_id", "eye")
    ax.set_title(
        f"{title}: recommended {answer['recommended_size_mm']:.1f} mm"
        f" (nomogram {answer['nomogram_size_mm']:.1f} mm), model {answer['model_version']}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    # Bounds are what the data allow under stated assumptions, not a prediction; since margins come
    # from data per size (issue 29), each unsupported size may assume something else: one line each.
    assumed = [
        f"{s['size_mm']:.1f} mm bounds assume: {s['assumes']}"
        for s in sizes
        if not s["supported"] and s.get("assumes")
    ]
    for row, line in enumerate(reversed(assumed)):
        fig.text(0.01, 0.01 + 0.03 * row, line, fontsize=6.5, color="#616161")
    save_png(fig, out)
