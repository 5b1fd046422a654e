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
    # Unsupported sizes' bounds claim 95 %: refused when the held-out eyes that can check them (implanted
    # with a size unsupported for them; counterfactuals where a simulator has them) show less, by more
    # than two binomial standard errors; judged only from `unsupported_min_eyes` such pairs.
    unsupported_claim: float = 0.95
    unsupported_min_eyes: int = 45


def gate(
    candidate: dict[str, Any], champion: dict[str, Any] | None, tol: GateTolerances | None = None
) -> GateDecision:
    """Compare evaluation metrics (the output of eyeops.lens.evaluate.evaluate) on the same data."""
    tol = tol or GateTolerances()
    if champion is not None and isinstance(candidate.get("champion_on_same_data"), dict):
        champion = candidate["champion_on_same_data"]  # the champion on the candidate's test eyes
    reasons: list[str] = []
    low, high = tol.coverage_range
    coverage = candidate["coverage_factual"]
    if not low <= coverage <= high:
        reasons.append(f"factual coverage {coverage:.3f} outside {low}–{high}")
    for size, value in candidate.get("coverage_factual_by_size", {}).items():
        if value < tol.coverage_per_size_min:
            reasons.append(f"coverage for {size} mm {value:.3f} below {tol.coverage_per_size_min}")
    reasons += unsupported_bounds_reasons(candidate, tol)
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
    notes: list[str] = []
    rates = in_range_rates(candidate, champion)
    if rates is None:
        notes.append(
            "in-range rate not checked: neither the true counterfactual rate nor an off-policy estimate"
            " is in both evaluations (re-evaluate the champion with this version of eyeops)"
        )
    else:
        kind, mine, theirs = rates
        if mine < theirs - tol.in_range_drop:
            reasons.append(
                f"in-range rate ({kind}) {mine:.3f} below the champion's {theirs:.3f} − {tol.in_range_drop}"
            )
        else:
            notes.append(f"in-range rate checked on the {kind}: {mine:.3f} vs the champion's {theirs:.3f}")
    if reasons:
        return GateDecision(False, reasons + notes)
    return GateDecision(True, ["no worse than the champion within tolerances", *notes])


def unsupported_bounds_reasons(candidate: dict[str, Any], tol: GateTolerances) -> list[str]:
    """Whether the bounds of unsupported sizes hold what they claim on the pairs that can check them
    (issue 29): the true counterfactuals where the cohort has them (all of them, and on their own
    those where a band from data holds), else the held-out eyes implanted with a size unsupported
    for them."""
    claim = tol.unsupported_claim

    def under(label: str, coverage: Any, n: int) -> list[str]:
        floor = claim - 2 * (claim * (1 - claim) / max(n, 1)) ** 0.5
        if coverage is None or n < tol.unsupported_min_eyes or coverage >= floor:
            return []
        return [
            f"bounds of unsupported sizes cover {coverage:.3f} of {n} {label}, below the {claim:.0%}"
            f" they claim (floor {floor:.3f})"
        ]

    pairs = int(candidate.get("counterfactual_pairs_unsupported") or 0)
    if candidate.get("coverage_counterfactual_unsupported") is not None and pairs >= tol.unsupported_min_eyes:
        return under("counterfactual pairs", candidate["coverage_counterfactual_unsupported"], pairs) + under(
            "counterfactual pairs where a band from data holds",
            candidate.get("coverage_where_a_margin_holds"),
            int(candidate.get("counterfactual_pairs_where_a_margin_holds") or 0),
        )
    return under(
        "eyes implanted with an unsupported size",
        candidate.get("coverage_unsupported_implanted"),
        int(candidate.get("unsupported_implanted_eyes") or 0),
    )


def in_range_rates(candidate: dict[str, Any], champion: dict[str, Any]) -> tuple[str, float, float] | None:
    """The recommended size's in-range rate of both, as comparable as the evaluations allow: the
    true rate where both cohorts carry counterfactual outcomes (simulations), else the off-policy
    estimate from observed data (real cohorts), else None (not checked)."""
    if (
        candidate.get("in_range_rate_recommended") is not None
        and champion.get("in_range_rate_recommended") is not None
    ):
        return (
            "true counterfactual rate",
            candidate["in_range_rate_recommended"],
            champion["in_range_rate_recommended"],
        )
    mine, theirs = candidate.get("ope_in_range_recommended"), champion.get("ope_in_range_recommended")
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return "off-policy estimate", float(mine["estimate"]), float(theirs["estimate"])
    return None
