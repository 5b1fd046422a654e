"""The promotion gate for lens models: a candidate replaces the champion only if it is no worse
within stated tolerances, and calibrated in absolute terms whatever the champion does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eyeops.registry.store import GateDecision


@dataclass(frozen=True)
class GateTolerances:
    mae_relative: float = 0.05  # candidate MAE may exceed the champion's by at most 5 %
    coverage_range: tuple[float, float] = (0.86, 0.94)  # factual coverage of the 90 % intervals
    coverage_per_size_min: float = 0.84
    in_range_drop: float = 0.02  # recommended in-range rate may fall by at most 2 points


def gate(
    candidate: dict[str, Any], champion: dict[str, Any] | None, tol: GateTolerances | None = None
) -> GateDecision:
    """Compare evaluation metrics (the output of eyeops.lens.evaluate.evaluate) on the same data."""
    tol = tol or GateTolerances()
    reasons: list[str] = []
    low, high = tol.coverage_range
    coverage = candidate["coverage_factual"]
    if not low <= coverage <= high:
        reasons.append(f"factual coverage {coverage:.3f} outside {low}–{high}")
    for size, value in candidate.get("coverage_factual_by_size", {}).items():
        if value < tol.coverage_per_size_min:
            reasons.append(f"coverage for {size} mm {value:.3f} below {tol.coverage_per_size_min}")
    if champion is None:
        return GateDecision(
            not reasons, reasons or ["no champion yet: the first model that passes is promoted"]
        )
    limit = champion["mae_um"] * (1 + tol.mae_relative)
    if candidate["mae_um"] > limit:
        reasons.append(
            f"MAE {candidate['mae_um']:.1f} µm above the champion's {champion['mae_um']:.1f} µm"
            f" + {tol.mae_relative:.0%}"
        )
    if "in_range_rate_recommended" in candidate and "in_range_rate_recommended" in champion:
        floor = champion["in_range_rate_recommended"] - tol.in_range_drop
        if candidate["in_range_rate_recommended"] < floor:
            reasons.append(
                f"in-range rate {candidate['in_range_rate_recommended']:.3f} below the champion's"
                f" {champion['in_range_rate_recommended']:.3f} − {tol.in_range_drop}"
            )
    return GateDecision(not reasons, reasons or ["no worse than the champion within tolerances"])
