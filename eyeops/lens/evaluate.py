"""Evaluate a lens model on a cohort: accuracy, coverage (factual and, where the cohort carries the
true counterfactuals, counterfactual), overlap, and the in-range rate of the recommendation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Required, TypedDict

import numpy as np
import pandas as pd

from eyeops.lens.cohort import COUNTERFACTUAL_COLUMNS, CohortParams, structural_vault
from eyeops.lens.model import LensModel
from eyeops.lens.ope import PolicyEstimate, policy_value
from eyeops.lens.sizes import SIZES_MM

PARAMS_SUFFIX = ".params.json"


def params_sidecar(cohort_path: Path) -> Path:
    """Where `eyeops synth cohort` writes the parameters a cohort was drawn with."""
    return cohort_path.with_name(cohort_path.name + PARAMS_SUFFIX)


def _in_range(values: np.ndarray, target: tuple[float, float]) -> np.ndarray:
    return (values >= target[0]) & (values <= target[1])


class OpeCheck(TypedDict):
    true: float
    estimate: float
    within_ci: bool


class LensMetrics(TypedDict, total=False):
    """What `evaluate` measures: the record the CLI prints, the pipeline logs and the gate reads.
    Keys marked NotRequired exist only when the test cohort allows them (simulator parameters,
    counterfactual columns, a champion evaluated on the same eyes)."""

    model_version: Required[str]
    test_eyes: Required[int]
    mae_um: Required[float]
    rmse_um: Required[float]
    coverage_factual: Required[float]
    coverage_factual_by_size: Required[dict[str, float]]
    supported_share_by_size: Required[dict[str, float]]
    implanted_supported_share: Required[float]
    mean_interval_width_um: Required[float]
    unsupported_bound_width_um: Required[float | None]
    step_gain_um_per_mm: Required[list[float]]
    gain_margin_um_per_mm: Required[float]
    gain_margins: Required[list[dict[str, Any]]]
    coverage_counterfactual_unsupported_fixed_margin: float | None
    unsupported_bound_width_fixed_margin_um: float | None
    unsupported_fell_back_share: float | None
    unsupported_implanted_eyes: int
    coverage_unsupported_implanted: float | None
    width_ratio_where_a_margin_holds: float | None
    coverage_where_a_margin_holds: float | None
    recommended_share_by_size: Required[dict[str, float]]
    in_range_rate_implanted: Required[float]
    ope_in_range_recommended: PolicyEstimate
    ope_in_range_nomogram: PolicyEstimate
    ope_in_range_surgeons: PolicyEstimate
    oracle_mae_um: float | None
    oracle_note: str
    coverage_counterfactual_supported: float | None
    coverage_counterfactual_unsupported: float | None
    coverage_counterfactual_unsupported_monotone: float | None
    unsupported_bound_width_monotone_um: float | None
    coverage_naive_unsupported: float | None
    counterfactual_pairs_supported: int
    counterfactual_pairs_unsupported: int
    counterfactual_pairs_where_a_margin_holds: int
    in_range_rate_recommended: float
    in_range_rate_nomogram: float
    in_range_rate_best_possible: float
    mae_counterfactual_um: float
    ope_check: dict[str, OpeCheck]
    champion_on_same_data: LensMetrics
    train_seconds: float
    train_cohort: dict[str, Any]
    test_cohort: dict[str, Any]


def evaluate(model: LensModel, test: pd.DataFrame, params: CohortParams | None = None) -> LensMetrics:
    """Metrics of `model` on `test`. `params` (the simulator's) gives the oracle error."""
    pred = model.predict(test)
    rows = np.arange(len(test))
    idx = np.searchsorted(np.array(SIZES_MM), test["implanted_size_mm"].to_numpy(dtype=float))
    y = test["vault_um"].to_numpy(dtype=float)
    fitted = pred.vault_um[rows, idx]
    factual_in = (y >= pred.lower_um[rows, idx]) & (y <= pred.upper_um[rows, idx])
    target = model.config.target_um
    out: LensMetrics = {
        "model_version": model.version,
        "test_eyes": len(test),
        "mae_um": float(np.abs(y - fitted).mean()),
        "rmse_um": float(np.sqrt(((y - fitted) ** 2).mean())),
        "coverage_factual": float(factual_in.mean()),
        "coverage_factual_by_size": {
            f"{s:.1f}": float(factual_in[idx == j].mean()) for j, s in enumerate(SIZES_MM)
        },
        "supported_share_by_size": {
            f"{s:.1f}": float(pred.supported[:, j].mean()) for j, s in enumerate(SIZES_MM)
        },
        "implanted_supported_share": float(pred.supported[rows, idx].mean()),
        "mean_interval_width_um": float((pred.upper_um - pred.lower_um)[pred.supported].mean()),
        "unsupported_bound_width_um": float((pred.upper_um - pred.lower_um)[~pred.supported].mean())
        if (~pred.supported).any()
        else None,
        "step_gain_um_per_mm": list(model.config.step_gain_um_per_mm),
        "gain_margin_um_per_mm": model.config.gain_margin_um_per_mm,
        "gain_margins": _margins_report(model),
        "recommended_share_by_size": {
            f"{s:.1f}": float((pred.recommended_size_mm == s).mean()) for s in SIZES_MM
        },
        "in_range_rate_implanted": float(_in_range(y, target).mean()),
    }
    # The checkable pairs of unsupported bounds in any cohort, real ones too: test eyes implanted
    # with a size unsupported for them, and whether their outcome lies within its bounds.
    odd = ~pred.supported[rows, idx]
    held = (pred.lower_um[rows, idx] <= y) & (y <= pred.upper_um[rows, idx])
    out["unsupported_implanted_eyes"] = int(odd.sum())
    out["coverage_unsupported_implanted"] = float(held[odd].mean()) if odd.any() else None
    # Off-policy: the in-range rate each policy would reach, from the observed outcomes only.
    policies = {"recommended": pred.recommended_size_mm, "nomogram": pred.nomogram_size_mm}
    values = {name: policy_value(model, test, sizes) for name, sizes in policies.items()}
    observed_in = _in_range(y, target).astype(float)
    half = 1.959964 * float(observed_in.std(ddof=1)) / np.sqrt(len(observed_in))
    out["ope_in_range_recommended"] = values["recommended"].to_dict()
    out["ope_in_range_nomogram"] = values["nomogram"].to_dict()
    out["ope_in_range_surgeons"] = {
        "estimate": round(float(observed_in.mean()), 4),
        "ci_low": round(float(observed_in.mean()) - half, 4),
        "ci_high": round(float(observed_in.mean()) + half, 4),
        "eyes": len(observed_in),
        "matched_share": 1.0,
    }
    if params is not None:
        truth_fn = np.column_stack(
            [np.clip(structural_vault(test, s, params), 0.0, params.vault_max_um) for s in SIZES_MM]
        )
        out["oracle_mae_um"] = float(np.abs(y - truth_fn[rows, idx]).mean())
    else:
        out["oracle_mae_um"] = None
        out["oracle_note"] = "no simulator parameters beside the test cohort: the true function is unknown"
    if all(c in test.columns for c in COUNTERFACTUAL_COLUMNS):
        truth = test[list(COUNTERFACTUAL_COLUMNS)].to_numpy(dtype=float)
        inside = (truth >= pred.lower_um) & (truth <= pred.upper_um)
        counterfactual = np.ones_like(truth, dtype=bool)
        counterfactual[rows, idx] = False
        cf_sup = counterfactual & pred.supported
        cf_uns = counterfactual & ~pred.supported
        # What plain, unweighted intervals (the supported-size recipe applied everywhere) would cover.
        naive_lower, naive_upper = _naive_intervals(model, test, pred.vault_um)
        naive_inside = (truth >= naive_lower) & (truth <= naive_upper)
        rec = np.searchsorted(np.array(SIZES_MM), pred.recommended_size_mm)
        nom = np.searchsorted(np.array(SIZES_MM), pred.nomogram_size_mm)
        # The same unsupported pairs under plain monotone bounds (no limit on the gain per step).
        plain_lo, plain_hi = _plain_bounds(model, test)
        plain_inside = (truth >= plain_lo) & (truth <= plain_hi)
        out["coverage_counterfactual_supported"] = float(inside[cf_sup].mean()) if cf_sup.any() else None
        out["coverage_counterfactual_unsupported"] = float(inside[cf_uns].mean()) if cf_uns.any() else None
        out["coverage_counterfactual_unsupported_monotone"] = (
            float(plain_inside[cf_uns].mean()) if cf_uns.any() else None
        )
        out["unsupported_bound_width_monotone_um"] = (
            float((plain_hi - plain_lo)[cf_uns].mean()) if cf_uns.any() else None
        )
        out["coverage_naive_unsupported"] = float(naive_inside[cf_uns].mean()) if cf_uns.any() else None
        # Side by side (issue 29): one fixed margin of 200 µm/mm for every size, as before.
        fixed_lo, fixed_hi = _fixed_margin_bounds(model, test, FIXED_MARGIN_BEFORE)
        fixed_inside = (truth >= fixed_lo) & (truth <= fixed_hi)
        out["coverage_counterfactual_unsupported_fixed_margin"] = (
            float(fixed_inside[cf_uns].mean()) if cf_uns.any() else None
        )
        out["unsupported_bound_width_fixed_margin_um"] = (
            float((fixed_hi - fixed_lo)[cf_uns].mean()) if cf_uns.any() else None
        )
        if pred.band is not None:  # a band from data, per eye and size
            anchored = cf_uns & pred.band
        else:
            margins, _ = model.margins()
            anchored = cf_uns & np.isfinite(margins)[None, :]
        fell_back = cf_uns & ~anchored
        out["unsupported_fell_back_share"] = float(fell_back.sum() / cf_uns.sum()) if cf_uns.any() else None
        out["width_ratio_where_a_margin_holds"] = (  # the target: at most 0.6 of plain monotone bounds
            float((pred.upper_um - pred.lower_um)[anchored].mean() / (plain_hi - plain_lo)[anchored].mean())
            if anchored.any()
            else None
        )
        out["coverage_where_a_margin_holds"] = float(inside[anchored].mean()) if anchored.any() else None
        out["counterfactual_pairs_where_a_margin_holds"] = int(anchored.sum())
        out["counterfactual_pairs_supported"] = int(cf_sup.sum())
        out["counterfactual_pairs_unsupported"] = int(cf_uns.sum())
        out["in_range_rate_recommended"] = float(_in_range(truth[rows, rec], target).mean())
        out["in_range_rate_nomogram"] = float(_in_range(truth[rows, nom], target).mean())
        out["in_range_rate_best_possible"] = float(_in_range(truth, target).any(axis=1).mean())
        out["mae_counterfactual_um"] = float(np.abs(truth - pred.vault_um)[counterfactual].mean())
        # The off-policy estimates against the true rates the simulator knows.
        true_rates = {
            "recommended": out["in_range_rate_recommended"],
            "nomogram": out["in_range_rate_nomogram"],
        }
        out["ope_check"] = {
            name: {
                "true": round(rate, 4),
                "estimate": values[name].estimate,
                "within_ci": bool(values[name].ci_low <= rate <= values[name].ci_high),
            }
            for name, rate in true_rates.items()
        }
    return out


FIXED_MARGIN_BEFORE = 200.0  # µm per mm: the one margin every size had before it came from data


def _margins_report(model: LensModel) -> list[dict[str, Any]]:
    """Per size: what the bounds use (a scale from data, or an anchored margin), the eyes it was
    estimated on, and why there is none."""
    rule = model.manifest.get("unsupported_bounds") if model.config.margin_from_data else None
    if rule:  # the weighted band's tables stay in the model folder
        return [{k: v for k, v in entry.items() if k not in ("scores", "weights")} for entry in rule["sizes"]]
    found = model.manifest.get("gain_margins") if model.config.margin_from_data else None
    if found:
        return [dict(m) for m in found]
    return [
        {"size_mm": s, "margin_um_per_mm": model.config.gain_margin_um_per_mm, "eyes": None, "why": "fixed"}
        for s in SIZES_MM
    ]


def _plain_bounds(model: LensModel, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's answer for `test` as it would be with plain monotone bounds."""
    import copy
    from dataclasses import replace

    plain = copy.copy(model)
    plain.config = replace(
        model.config,
        step_gain_um_per_mm=(0.0, float("inf")),
        gain_margin_um_per_mm=float("inf"),
        margin_from_data=False,
    )
    pred = plain.predict(test)
    return pred.lower_um, pred.upper_um


def _fixed_margin_bounds(
    model: LensModel, test: pd.DataFrame, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """The model's bounds for `test` with one fixed margin for every size (before issue 29)."""
    import copy
    from dataclasses import replace

    fixed = copy.copy(model)
    fixed.config = replace(model.config, gain_margin_um_per_mm=margin, margin_from_data=False)
    pred = fixed.predict(test)
    return pred.lower_um, pred.upper_um


def _naive_intervals(
    model: LensModel, test: pd.DataFrame, vault: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted split-conformal radius per size, applied to every eye whatever its support."""
    lower, upper = np.zeros_like(vault), np.zeros_like(vault)
    for j, size in enumerate(SIZES_MM):
        calib = model.calibration[size]
        n = len(calib.abs_sorted)
        k = int(np.ceil((1 - model.config.alpha) * (n + 1))) - 1
        radius = calib.abs_sorted[min(k, n - 1)] if n else np.inf
        lower[:, j] = np.clip(vault[:, j] - radius, 0.0, model.config.vault_max_um)
        upper[:, j] = np.clip(vault[:, j] + radius, 0.0, model.config.vault_max_um)
    return lower, upper


def load_params(cohort_path: Path) -> CohortParams | None:
    sidecar = params_sidecar(cohort_path)
    if not sidecar.exists():
        return None
    data = json.loads(sidecar.read_text())
    data.pop("seed", None)
    data.pop("n", None)
    data["age_range"] = tuple(data["age_range"])
    return CohortParams(**data)
