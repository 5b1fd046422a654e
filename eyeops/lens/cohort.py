"""Simulated ICL cohorts with known counterfactual outcomes, and the cohort schema.

Every parameter is explicit in `CohortParams`, with its source or marked as a design choice. The
vault function is monotone in size for every eye (the idiosyncratic term is the eye's, shared by
all four sizes), so monotone treatment response holds by construction; the surgeon's policy is the
nomogram plus judgement, so assignment is confounded and large sizes are (almost) never tried on
small eyes: positivity fails structurally, as in real data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eyeops.errors import EyeopsError
from eyeops.lens.features import BASE_FEATURES, PLAUSIBLE
from eyeops.lens.sizes import SIZES_MM, nomogram_offset, round_to_size, size_column

COHORT_COLUMNS: tuple[str, ...] = (
    "eye_id",
    "patient_id",
    "laterality",
    "age_years",
    "sex",
    "exam_date",
    *BASE_FEATURES[1:],  # wtw_mm … cyl_d, in the model's order
    "implanted_size_mm",
    "surgery_date",
    "vault_um",
)
COUNTERFACTUAL_COLUMNS: tuple[str, ...] = tuple(size_column(s) for s in SIZES_MM)
MAX_EYES = 2 * 100_000


@dataclass(frozen=True)
class CohortParams:
    """Population, policy and outcome parameters. Units are in the names."""

    # Population: young high myopes, the ICL candidates. Design choices except where cited.
    age_mean: float = 32.0
    age_sd: float = 7.0
    age_range: tuple[float, float] = (21.0, 50.0)
    female_share: float = 0.6
    sphere_mean_d: float = -9.0
    sphere_sd_d: float = 3.0
    wtw_mean_mm: float = 11.75  # DOMAIN §1: 11.6–11.9 ± 0.45 (IOLMaster 700 cohorts)
    wtw_sd_mm: float = 0.42
    ata_minus_wtw_mean_mm: float = 0.10  # WTW vs ATA: mean difference 0.10 mm (PubMed 34015039)
    ata_minus_wtw_sd_mm: float = 0.28  # limits of agreement −0.48…+0.64 mm ≈ ±1.96 SD
    sts_minus_ata_mean_mm: float = -0.15  # design choice
    sts_minus_ata_sd_mm: float = 0.10
    acd_mean_mm: float = 3.25  # myopic Pentacam cohort, 3.25 ± 0.26 (Front Med 2021)
    acd_sd_mm: float = 0.26
    min_candidate_acd_mm: float = 2.8  # Sanders 2003: shallower chambers are not candidates
    fellow_eye_sd_fraction: float = 0.3  # fellow eyes share most of their biometry (design)
    # Surgeon policy: the nomogram's target plus judgement (design choices).
    policy_target_sd_mm: float = 0.22
    policy_upsizing_mm: float = 0.4  # the clinic sizes up from the 2003 rule for today's lenses
    policy_ata_weight: float = 0.3  # surgeons who also look at the AS-OCT angle-to-angle width
    # Outcome: vault(x, s) = intercept + slope(x)·(s − ideal(x)) + covariate terms + eye term.
    vault_intercept_um: float = 480.0
    size_slope_um_per_mm: float = 660.0  # ≈ +330 µm per +0.5 mm (PMC8101126: 657 per mm)
    size_slope_acd_mod: float = 0.2  # the size effect is larger in shallower chambers (design)
    ideal_size_over_sts_mm: float = 0.7  # design choice: typical eyes are best served by 12.6–13.2
    lt_coef_um_per_mm: float = -430.0  # PMC8101126: −432 per mm LT
    age_coef_um_per_year: float = -3.0  # vault decreases with age (DOMAIN §3)
    clr_coef_um_per_um: float = -0.2  # and with crystalline lens rise
    acd_coef_um_per_mm: float = 150.0  # and increases with ACD
    noise_sd_um: float = 120.0  # fellow-eye difference 26 ± 122 µm (Cerpa Manito 2020)
    vault_max_um: float = 2000.0  # physical upper limit used by the bounds (K1, DOMAIN §4)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def structural_vault(x: pd.DataFrame, size_mm: float | np.ndarray, p: CohortParams) -> np.ndarray:
    """The noise-free vault of each eye under `size_mm`; non-decreasing in size for every eye."""
    slope = p.size_slope_um_per_mm * (1.0 + p.size_slope_acd_mod * (p.acd_mean_mm - x["acd_mm"].to_numpy()))
    ideal = x["sts_mm"].to_numpy() + p.ideal_size_over_sts_mm
    value = (
        p.vault_intercept_um
        + slope * (np.asarray(size_mm, dtype=float) - ideal)
        + p.lt_coef_um_per_mm * (x["lt_mm"].to_numpy() - 3.7)
        + p.age_coef_um_per_year * (x["age_years"].to_numpy() - p.age_mean)
        + p.clr_coef_um_per_um * (x["clr_um"].to_numpy() - 68.0)
        + p.acd_coef_um_per_mm * (x["acd_mm"].to_numpy() - p.acd_mean_mm)
    )
    return np.asarray(value, dtype=float)


def _biometry(rng: np.random.Generator, n_patients: int, p: CohortParams) -> pd.DataFrame:
    """Two eyes per patient: a patient-level draw plus a smaller eye-level deviation."""
    f = p.fellow_eye_sd_fraction

    def pair(mean: float, sd: float) -> np.ndarray:
        base = rng.normal(mean, sd * np.sqrt(1 - f**2), n_patients)
        return np.repeat(base, 2) + rng.normal(0, sd * f, 2 * n_patients)

    age = np.repeat(np.clip(rng.normal(p.age_mean, p.age_sd, n_patients), *p.age_range), 2)
    sex = np.repeat(np.where(rng.random(n_patients) < p.female_share, "F", "M"), 2)
    sphere = np.clip(pair(p.sphere_mean_d, p.sphere_sd_d), -20.0, -3.0)
    cyl = -np.clip(np.abs(pair(0.75, 0.6)), 0.0, 4.0)
    al = np.clip(23.4 - 0.33 * sphere + rng.normal(0, 0.5, 2 * n_patients), 20.0, 32.0)
    wtw = np.clip(pair(p.wtw_mean_mm, p.wtw_sd_mm), 10.5, 13.0)
    ata = np.clip(
        wtw + rng.normal(p.ata_minus_wtw_mean_mm, p.ata_minus_wtw_sd_mm, 2 * n_patients), 10.2, 13.8
    )
    sts = np.clip(
        ata + rng.normal(p.sts_minus_ata_mean_mm, p.sts_minus_ata_sd_mm, 2 * n_patients), 10.2, 13.8
    )
    acd = np.clip(
        pair(p.acd_mean_mm, p.acd_sd_mm) + 0.05 * (al - 26.4) - 0.004 * (age - p.age_mean), 2.3, 4.5
    )
    lt = np.clip(
        3.7 + 0.02 * (age - 30) - 0.3 * (acd - p.acd_mean_mm) + rng.normal(0, 0.18, 2 * n_patients), 3.0, 5.0
    )
    clr = np.clip(
        68 + 8 * (age - p.age_mean) - 250 * (acd - p.acd_mean_mm) + rng.normal(0, 120, 2 * n_patients),
        -400,
        900,
    )
    k1 = np.clip(pair(43.8, 1.5), 38.0, 50.0)
    k2 = np.clip(k1 + np.abs(cyl) * 0.8 + np.abs(rng.normal(0.2, 0.2, 2 * n_patients)), k1, 52.0)
    cct = np.clip(pair(535.0, 35.0), 430.0, 650.0)
    return pd.DataFrame(
        {
            "age_years": np.round(age).astype(int),
            "sex": sex,
            "wtw_mm": np.round(wtw, 2),
            "acd_mm": np.round(acd, 2),
            "al_mm": np.round(al, 2),
            "lt_mm": np.round(lt, 2),
            "k1_d": np.round(k1, 2),
            "k2_d": np.round(k2, 2),
            "cct_um": np.round(cct).astype(int),
            "ata_mm": np.round(ata, 2),
            "clr_um": np.round(clr).astype(int),
            "sts_mm": np.round(sts, 2),
            "sphere_d": np.round(sphere * 4) / 4,
            "cyl_d": np.round(cyl * 4) / 4,
        }
    )


def surgeon_sizes(x: pd.DataFrame, rng: np.random.Generator, p: CohortParams) -> np.ndarray:
    """Nomogram target plus judgement (angle-to-angle, noise), rounded the nomogram's way."""
    acd = x["acd_mm"].to_numpy()
    target = (
        x["wtw_mm"].to_numpy()
        + nomogram_offset(acd)
        + p.policy_upsizing_mm
        + p.policy_ata_weight * (x["ata_mm"].to_numpy() - x["wtw_mm"].to_numpy() - p.ata_minus_wtw_mean_mm)
        + rng.normal(0, p.policy_target_sd_mm, len(x))
    )
    return round_to_size(target, round_up=acd > 3.5)


def simulate_cohort(n: int, seed: int, params: CohortParams | None = None) -> pd.DataFrame:
    """`n` eyes (two per patient, candidates only) with the implanted size, its vault, and the true
    vault under all four sizes (columns `vault_um_12.1` … — for evaluation only)."""
    if n < 2:
        raise ValueError("a cohort needs at least 2 eyes")
    p = params or CohortParams()
    rng = np.random.default_rng(seed)
    if n > MAX_EYES:
        raise ValueError(f"at most {MAX_EYES} eyes per simulated cohort (patient ids are P + 7 digits)")
    frames: list[pd.DataFrame] = []
    drawn = 0
    while drawn < n:  # draw patients until enough eyes are candidates (ACD ≥ the minimum)
        batch = _biometry(rng, max(64, n - drawn), p)
        batch["pair"] = np.repeat(np.arange(len(batch) // 2), 2) + 1_000_000 * len(frames)
        batch["laterality"] = np.tile(["OD", "OS"], len(batch) // 2)
        batch = batch[batch["acd_mm"] >= p.min_candidate_acd_mm]
        frames.append(batch)
        drawn += len(batch)
    x = pd.concat(frames, ignore_index=True).iloc[:n].reset_index(drop=True)
    _, patient_index = np.unique(x.pop("pair").to_numpy(), return_inverse=True)
    # Seeds map to disjoint id blocks, so cohorts drawn with different seeds can share a feature store.
    numbers = 1_000_000 + (seed % 90) * 100_000 + patient_index
    x.insert(0, "patient_id", [f"P{k:07d}" for k in numbers])
    x.insert(0, "eye_id", x["patient_id"] + "-" + x["laterality"])
    eye_term = rng.normal(0, p.noise_sd_um, n)
    truth = {}
    for size in SIZES_MM:
        truth[size_column(size)] = np.clip(structural_vault(x, size, p) + eye_term, 0.0, p.vault_max_um)
    implanted = surgeon_sizes(x, rng, p)
    start = dt.date(2019, 1, 1).toordinal()
    exam_days = rng.integers(0, 6 * 365, n)
    exam_date = [dt.date.fromordinal(start + int(d)) for d in exam_days]
    surgery_date = [
        d + dt.timedelta(days=int(k)) for d, k in zip(exam_date, rng.integers(7, 60, n), strict=True)
    ]
    vault = np.choose(
        np.searchsorted(np.array(SIZES_MM), implanted), [truth[size_column(s)] for s in SIZES_MM]
    )
    out = x.assign(
        exam_date=pd.to_datetime(exam_date),
        implanted_size_mm=implanted,
        surgery_date=pd.to_datetime(surgery_date),
        vault_um=np.round(vault).astype(int),
        **{k: np.round(v).astype(int) for k, v in truth.items()},
    )
    return out[[*COHORT_COLUMNS, *COUNTERFACTUAL_COLUMNS]]


# -- the schema every cohort file must follow (simulated or real) ---------------------------------


class CohortError(EyeopsError, ValueError):
    """A cohort file that does not follow the schema; the message lists every problem found."""


def cohort_schema(with_counterfactuals: bool) -> Any:
    """The cohort file's data expectations as a pandera schema (ranges, categories, uniqueness)."""
    import pandera.pandas as pa

    def plausible(column: str) -> Any:
        low, high = PLAUSIBLE[column]
        return pa.Column(
            float, pa.Check.in_range(low, high, error=f"outside the plausible range {low}–{high}")
        )

    columns: dict[str, Any] = {
        "eye_id": pa.Column(str, unique=True),
        "patient_id": pa.Column(str),
        "laterality": pa.Column(str, pa.Check.isin(["OD", "OS"], error="not OD or OS")),
        "sex": pa.Column(str, pa.Check.isin(["F", "M"], error="not F or M")),
        "exam_date": pa.Column("datetime64[ns]"),
        "surgery_date": pa.Column("datetime64[ns]"),
        "implanted_size_mm": pa.Column(float, pa.Check.isin(list(SIZES_MM), error=f"not one of {SIZES_MM}")),
        **{c: plausible(c) for c in PLAUSIBLE},
    }
    if with_counterfactuals:
        columns.update({c: pa.Column(float, pa.Check.in_range(0, 2000)) for c in COUNTERFACTUAL_COLUMNS})
    return pa.DataFrameSchema(
        columns,
        checks=pa.Check(lambda df: df["surgery_date"] >= df["exam_date"], error="surgery before the exam"),
        coerce=True,
    )


def validate_cohort(frame: pd.DataFrame) -> pd.DataFrame:
    """Check columns, types, ranges, categories, duplicates and date order (pandera, every failure
    collected); return the frame with types coerced and dates parsed, or CohortError listing all."""
    import pandera.errors

    missing = [c for c in COHORT_COLUMNS if c not in frame.columns]
    if missing:
        raise CohortError(f"missing columns: {', '.join(missing)}; the schema is {', '.join(COHORT_COLUMNS)}")
    out = frame.copy()
    problems: list[str] = []
    for column in ("exam_date", "surgery_date"):
        out[column] = pd.to_datetime(out[column], errors="coerce").dt.tz_localize(None)
        if out[column].isna().any():
            problems.append(f"{column}: {int(out[column].isna().sum())} values are not dates")
    numeric = [*PLAUSIBLE, "implanted_size_mm", *[c for c in COUNTERFACTUAL_COLUMNS if c in out]]
    for column in numeric:
        out[column] = pd.to_numeric(out[column], errors="coerce")
        bad = int(out[column].isna().sum())
        if bad:
            problems.append(f"{column}: {bad} missing or non-numeric values")
    if problems:
        raise CohortError("; ".join(problems))
    schema = cohort_schema(all(c in out.columns for c in COUNTERFACTUAL_COLUMNS))
    try:
        validated: pd.DataFrame = schema.validate(out, lazy=True)
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            where = column if isinstance(column, str) else "rows"
            text = "duplicated" if str(check) == "field_uniqueness" else str(check)
            problems.append(f"{where}: {len(group)} values {text}")
        raise CohortError("; ".join(problems)) from err
    for column in ("age_years", "cct_um", "clr_um", "vault_um", *COUNTERFACTUAL_COLUMNS):
        if column in validated:
            validated[column] = validated[column].round().astype(int)
    return validated


def read_cohort(path: Path) -> pd.DataFrame:
    """A cohort from parquet or CSV, validated."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise CohortError(f"{path}: expected a .parquet or .csv file")
    return validate_cohort(frame)


def write_cohort(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    else:
        raise CohortError(f"{path}: expected a .parquet or .csv file")
