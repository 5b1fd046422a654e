"""Fit the arbitration's calibrations from both recognisers' readings of labelled exams, and draw
their reliability diagrams (`eyeops ocr calibrate`).

The rows are `compare_with_tesseract(..., records=rows)`'s: per shown field, TrOCR's text, raw
confidence and validation verdict, PP-OCR's text and raw confidence, and the truth. Fitted on sets
apart from those reported (docs/recogniser.md, "Two recognisers, one decision").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eyeops.ocr.arbitrate import Calibration, Calibrations

# Agreement accepts a reading the confidence bar refused only where agreeing readings at that
# confidence were right at least this often on the calibration rows, counting one pseudo-error per
# pooled block: at most one silent error per 200 such fields, and a block must hold ≥ 199 right
# agreeing readings in a row before it can reach the bar at all.
AGREE_AT_LEAST = 0.995


def fit_calibrations(
    rows: Sequence[Mapping[str, Any]],
    agree_at_least: float = AGREE_AT_LEAST,
    lineage: Mapping[str, Any] | None = None,
    min_block: int = 30,
) -> Calibrations:
    """Isotonic maps raw confidence → P(right) for each recogniser, and for TrOCR where PP-OCR
    agrees with it (the rows whose two texts are the same); and the dependence of their errors:
    how many fields both read wrong, over how many independent errors at the calibrated
    probabilities would give (at least 1), and how many both read wrong with the same text (plus
    one), over the same (`same_wrong`, at most the dependence)."""
    rows = [r for r in rows if r.get("truth") is not None]
    if not rows:
        raise ValueError("no readings to calibrate on: the exams had no aligned fields")
    primary = Calibration.fit(
        [float(r["confidence"]) for r in rows], [r["text"] == r["truth"] for r in rows], min_block
    )
    second = Calibration.fit(
        [float(r["second_confidence"]) for r in rows],
        [r["second_text"] == r["truth"] for r in rows],
        min_block,
    )
    agreeing = [r for r in rows if r["text"] == r["second_text"]]
    agreed = (
        Calibration.fit(
            [float(r["confidence"]) for r in agreeing], [r["text"] == r["truth"] for r in agreeing], min_block
        )
        if agreeing
        else Calibration((0.0, 1.0), (0.0, 0.0))
    )
    expected = sum(
        (1.0 - primary(float(r["confidence"]))) * (1.0 - second(float(r["second_confidence"]))) for r in rows
    )
    both = sum(r["text"] != r["truth"] and r["second_text"] != r["truth"] for r in rows)
    dependence = max(1.0, both / expected) if expected > 0 else 1.0
    # The joint error agreement lets through: the same wrong text. One pseudo-error, so that no
    # such error on the calibration crops never claims they cannot happen.
    same = sum(r["text"] != r["truth"] and r["text"] == r["second_text"] for r in rows)
    same_wrong = min(dependence, (same + 1) / expected) if expected > 0 else dependence
    return Calibrations(
        primary,
        second,
        agreed,
        agree_at_least,
        dict(lineage or {}),
        round(dependence, 4),
        float(f"{same_wrong:.4g}"),
    )


def reliability(
    rows: Sequence[Mapping[str, Any]], text: str, confidence: str, bins: int = 10
) -> list[dict[str, float]]:
    """Per equal-count bin of a recogniser's raw confidence: mean confidence, share right, count."""
    pairs = sorted((float(r[confidence]), r[text] == r["truth"]) for r in rows if r.get("truth") is not None)
    out = []
    for b in range(bins):
        chunk = pairs[b * len(pairs) // bins : (b + 1) * len(pairs) // bins]
        if chunk:
            out.append(
                {
                    "confidence": sum(c for c, _ in chunk) / len(chunk),
                    "right": sum(ok for _, ok in chunk) / len(chunk),
                    "count": float(len(chunk)),
                }
            )
    return out


def expected_calibration_error(rows: Sequence[Mapping[str, Any]], text: str, score: Any) -> float:
    """Mean |score − right| over 10 equal-count bins of `score(row)`, weighted by count."""
    pairs = sorted(
        (float(score(r)), float(r[text] == r["truth"])) for r in rows if r.get("truth") is not None
    )
    n = len(pairs)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(10):
        chunk = pairs[b * n // 10 : (b + 1) * n // 10]
        if chunk:
            total += abs(sum(c for c, _ in chunk) - sum(y for _, y in chunk))
    return total / n


def calibration_summary(rows: Sequence[Mapping[str, Any]], calibrations: Calibrations) -> dict[str, Any]:
    """Expected calibration error of each recogniser, raw and calibrated, on `rows`."""
    return {
        "fields": sum(r.get("truth") is not None for r in rows),
        "trocr_ece_raw": expected_calibration_error(rows, "text", lambda r: r["confidence"]),
        "trocr_ece_calibrated": expected_calibration_error(
            rows, "text", lambda r: calibrations.primary(r["confidence"])
        ),
        "ppocr_ece_raw": expected_calibration_error(rows, "second_text", lambda r: r["second_confidence"]),
        "ppocr_ece_calibrated": expected_calibration_error(
            rows, "second_text", lambda r: calibrations.second(r["second_confidence"])
        ),
    }


def reliability_html(rows: Sequence[Mapping[str, Any]], calibrations: Calibrations, title: str) -> str:
    """The evaluation report's reliability diagram: per recogniser, share right against confidence
    (raw and calibrated, equal-count bins), with the calibration errors in a table."""
    import html

    from eyeops.plots import figure_html, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
    for ax, (name, text, conf, cal) in zip(
        axes,
        (
            ("TrOCR (trocr)", "text", "confidence", calibrations.primary),
            ("PP-OCR (ppocr)", "second_text", "second_confidence", calibrations.second),
        ),
        strict=True,
    ):
        raw = reliability(rows, text, conf)
        calibrated = reliability([{**r, "_c": cal(float(r[conf]))} for r in rows], text, "_c")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.plot([b["confidence"] for b in raw], [b["right"] for b in raw], "o-", label="raw confidence")
        ax.plot(
            [b["confidence"] for b in calibrated],
            [b["right"] for b in calibrated],
            "s-",
            label="calibrated",
        )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("confidence (10 equal-count bins)")
        ax.set_xlim(0, 1.02)
    axes[0].set_ylabel("share read exactly right")
    axes[0].legend(fontsize=8)
    summary = calibration_summary(rows, calibrations)
    cells = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in summary.items() if k != "fields"
    )
    return (
        f"<h2>{html.escape(title)}</h2><p>{summary['fields']} fields; expected calibration error (10"
        f" equal-count bins)</p><table>{cells}</table>{figure_html(fig, 'reliability diagram')}"
    )
