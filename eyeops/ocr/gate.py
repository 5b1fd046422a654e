"""The promotion gate for OCR recognisers: a candidate must beat Tesseract on the held-out exams and
be no worse than the champion read on the same exams, within stated tolerances."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eyeops.registry.store import GateDecision


@dataclass(frozen=True)
class OcrGateTolerances:
    field_accuracy_drop: float = 0.001  # one field in a thousand
    exam_accuracy_drop: float = 0.01
    # wrong *and* accepted at the served threshold: about one field more in 2,000
    silent_error_rate_rise: float = 0.0005
    field_accuracy_min: float = 0.95  # below this a model is not fit to serve, champion or not


def gate(
    candidate: dict[str, Any], champion: dict[str, Any] | None, tol: OcrGateTolerances | None = None
) -> GateDecision:
    """`candidate` is eyeops.ocr.offline.compare_with_tesseract's output, optionally with
    `champion_same_set`: the champion read on the same exams (preferred over its stored metrics,
    which may come from another held-out set)."""
    tol = tol or OcrGateTolerances()
    reasons: list[str] = []
    field_acc = candidate["field_accuracy"]
    if field_acc < tol.field_accuracy_min:
        reasons.append(f"field accuracy {field_acc:.4f} below the floor {tol.field_accuracy_min}")
    baseline = candidate.get("tesseract_field_accuracy")
    if baseline is not None and field_acc <= baseline:
        reasons.append(f"field accuracy {field_acc:.4f} does not beat Tesseract's {baseline:.4f}")
    reference = candidate.get("champion_same_set") or champion
    if reference is None:
        return GateDecision(
            not reasons, reasons or ["no champion yet: the first model that passes is promoted"]
        )
    for key, drop in (("field_accuracy", tol.field_accuracy_drop), ("exam_accuracy", tol.exam_accuracy_drop)):
        if candidate[key] < reference[key] - drop:
            label = key.replace("_", " ")
            reasons.append(f"{label} {candidate[key]:.4f} below the champion's {reference[key]:.4f} − {drop}")
    # Compared only when both were scored (metrics registered before the evaluation scored statuses
    # lack it), and only at the same threshold.
    key, rise = "silent_error_rate", tol.silent_error_rate_rise
    same_threshold = candidate.get("confidence_threshold") == reference.get("confidence_threshold")
    if key in candidate and key in reference and same_threshold and candidate[key] > reference[key] + rise:
        reasons.append(
            f"silent error rate {candidate[key]:.5f} above the champion's {reference[key]:.5f} + {rise}"
        )
    return GateDecision(not reasons, reasons or ["no worse than the champion within tolerances"])
