"""The promotion gate for OCR recognisers: a candidate must beat Tesseract on the held-out exams and
be no worse than the champion read on the same exams, within stated tolerances, overall and for
every device kind: a fine-tune on one device's traffic or reference image may not buy its gain with
another device's readings (per kind on the held-out exams, and on held-out reviewed crops where the
evaluation has them, `heldout_crops`: {kind: {"crops": n, "exact_match": share}})."""

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
    # Per device kind, on the same exams (or crops) as the champion: about one field in 200.
    device_field_accuracy_drop: float = 0.005
    device_silent_error_rise: float = 0.0
    # Per kind, the share of exams accepted with no person: a model that sends more of a device's
    # exams to reviewers makes that device worse for the clinic, however accurate.
    device_accepted_drop: float = 0.05


def _within(drop: float, count: object) -> float:
    """The drop a set of `count` items can show by chance: at least a net change of one item (a
    set of 50 fields cannot tell 0.005 from noise); `drop` where the count is unknown."""
    if isinstance(count, int | float) and count > 0:
        return max(drop, 1.5 / float(count))
    return drop


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
    for key, drop, count in (
        ("field_accuracy", tol.field_accuracy_drop, "fields"),
        ("exam_accuracy", tol.exam_accuracy_drop, "exams"),
    ):
        allowed = _within(drop, candidate.get(count))
        if candidate[key] < reference[key] - allowed:
            label = key.replace("_", " ")
            reasons.append(
                f"{label} {candidate[key]:.4f} below the champion's {reference[key]:.4f} − {allowed:.4g}"
            )
    # Compared only when both were scored (metrics registered before the evaluation scored statuses
    # lack it), and only at the same threshold.
    key, rise = "silent_error_rate", tol.silent_error_rate_rise
    same_threshold = candidate.get("confidence_threshold") == reference.get("confidence_threshold")
    if key in candidate and key in reference and same_threshold and candidate[key] > reference[key] + rise:
        reasons.append(
            f"silent error rate {candidate[key]:.5f} above the champion's {reference[key]:.5f} + {rise}"
        )
    reasons += _per_device(candidate, reference, tol)
    return GateDecision(
        not reasons, reasons or ["no worse than the champion within tolerances, on every device"]
    )


def _per_device(candidate: dict[str, Any], reference: dict[str, Any], tol: OcrGateTolerances) -> list[str]:
    """Reasons a candidate makes some device kind worse than the champion on the same exams/crops."""
    reasons: list[str] = []
    theirs = reference.get("per_device") or {}
    for kind, ours in sorted((candidate.get("per_device") or {}).items()):
        if kind not in theirs:
            continue
        before, after = theirs[kind]["field_accuracy"], ours["field_accuracy"]
        drop = _within(tol.device_field_accuracy_drop, ours.get("fields"))
        if after < before - drop:
            reasons.append(
                f"{kind}: field accuracy {after:.4f} below the champion's {before:.4f} − {drop:.4g}"
            )
        if "accepted_exam_rate" in ours and "accepted_exam_rate" in theirs[kind]:
            b, a = theirs[kind]["accepted_exam_rate"], ours["accepted_exam_rate"]
            allowed = _within(tol.device_accepted_drop, ours.get("exams"))
            if a < b - allowed:
                reasons.append(
                    f"{kind}: exams accepted with no person {a:.3f}, below the champion's {b:.3f} −"
                    f" {allowed:.4g} (more of its exams to reviewers)"
                )
        rise = tol.device_silent_error_rise
        if "silent_error_rate" in ours and "silent_error_rate" in theirs[kind]:
            b, a = theirs[kind]["silent_error_rate"], ours["silent_error_rate"]
            if a > b + rise:
                reasons.append(f"{kind}: silent error rate {a:.5f} above the champion's {b:.5f}")
    crops_theirs = reference.get("heldout_crops") or {}
    for kind, ours in sorted((candidate.get("heldout_crops") or {}).items()):
        drop = _within(tol.device_field_accuracy_drop, ours.get("crops"))
        if kind in crops_theirs and ours["exact_match"] < crops_theirs[kind]["exact_match"] - drop:
            reasons.append(
                f"{kind}: held-out reviewed crops read {ours['exact_match']:.4f}, below the champion's"
                f" {crops_theirs[kind]['exact_match']:.4f} − {drop:.4g} ({ours['crops']} crops)"
            )
    return reasons
