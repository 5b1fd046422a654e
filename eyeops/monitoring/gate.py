"""The promotion gate of the drift detectors."""

from __future__ import annotations

from typing import Any

from eyeops.registry.store import GateDecision


def gate(candidate: dict[str, Any], champion: dict[str, Any] | None) -> GateDecision:
    """Detectors are fitted, not trained: they pass if held-out reference windows (data with no
    shift) raise no more false alarms than their stated rate allows (the 99 % binomial quantile at
    p_val) and a known shift is caught."""
    reasons = []
    if candidate["heldout_false_alarm_rate"] > candidate["false_alarm_budget"]:
        reasons.append(
            f"held-out reference windows raised alarms at {candidate['heldout_false_alarm_rate']:.3f},"
            f" above the budget {candidate['false_alarm_budget']:.3f}"
        )
    if not candidate["shift_detected"]:
        reasons.append("a 0.5 SD shift in the first feature was not detected on a held-out window")
    return GateDecision(not reasons, reasons or ["quiet on held-out reference data; catches a known shift"])
