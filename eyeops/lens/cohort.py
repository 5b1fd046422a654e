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
    # Heteroscedastic outcomes for the expected-performance bench: the eye term's SD is multiplied by
    # exp(this · (WTW − wtw_mean_mm) / wtw_sd_mm). 0: the same SD for every eye (the default).
    noise_log_slope_per_wtw_sd: float = 0.0
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
    if p.noise_log_slope_per_wtw_sd:
        z = (x["wtw_mm"].to_numpy(dtype=float) - p.wtw_mean_mm) / p.wtw_sd_mm
        eye_term = eye_term * np.exp(p.noise_log_slope_per_wtw_sd * z)
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


MAX_QUARANTINED = 0.01  # share of rows with implausible or missing values a run may set aside
ISO_DATE = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
EXAMPLES = 5  # rows named per problem


def _rows(frame: pd.DataFrame, mask: pd.Series) -> str:
    """`rows 3 (P0000012-OD), 17 (…)` for the first few rows of `mask`: 1-based data rows (a CSV's
    line is the row + 1, after its header)."""
    hits = np.flatnonzero(mask.to_numpy())
    ids = frame["eye_id"].astype(str).to_numpy() if "eye_id" in frame else None
    named = [f"{i + 1} ({ids[i]})" if ids is not None else str(i + 1) for i in hits[:EXAMPLES]]
    more = f" and {len(hits) - EXAMPLES} more" if len(hits) > EXAMPLES else ""
    return ("row " if len(hits) == 1 else "rows ") + ", ".join(named) + more


def _dates(frame: pd.DataFrame, column: str, date_format: str | None, problems: list[str]) -> pd.Series:
    """A date column, parsed strictly: ISO 8601 (YYYY-MM-DD), or exactly `date_format`. A date in any
    other form is refused, never guessed (12.03.2026 is March in one clinic and December in another)."""
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
        parsed = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    else:
        text = values.astype("string").str.strip()
        blank = text.isna() | (text == "")
        if date_format:
            parsed = pd.to_datetime(text.where(~blank), format=date_format, errors="coerce")
            unreadable = parsed.isna() & ~blank
            hint = f"not dates in the form {date_format}"
        else:
            iso = text.str.match(ISO_DATE).fillna(False).astype(bool)
            parsed = pd.to_datetime(text.where(iso & ~blank), format="ISO8601", errors="coerce")
            unreadable = (~iso | parsed.isna()) & ~blank
            hint = "not ISO dates (YYYY-MM-DD); pass --date-format (e.g. %d.%m.%Y) for another form"
        if unreadable.any():
            problems.append(f"{column}: {int(unreadable.sum())} values {hint}: {_rows(frame, unreadable)}")
        if blank.any():
            problems.append(f"{column}: {int(blank.sum())} blank: {_rows(frame, blank)}")
        parsed = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    return parsed.astype("datetime64[ns]")


@dataclass(frozen=True)
class CohortCheck:
    """A cohort after validation: the rows a model may use, and those set aside, with why."""

    frame: pd.DataFrame
    quarantined: pd.DataFrame  # one row per problem: row (1-based), eye_id, column, value, why
    total_rows: int

    @property
    def quarantined_rows(self) -> int:
        return int(self.quarantined["row"].nunique()) if len(self.quarantined) else 0

    def summary(self) -> dict[str, Any]:
        by_column: dict[Any, Any] = (
            dict(self.quarantined.groupby("column")["row"].nunique()) if len(self.quarantined) else {}
        )
        return {
            "rows": self.total_rows,
            "kept": len(self.frame),
            "quarantined": self.quarantined_rows,
            "quarantined_share": round(self.quarantined_rows / max(self.total_rows, 1), 5),
            "quarantined_by_column": {str(k): int(v) for k, v in by_column.items()},
        }

    def report_lines(self) -> list[str]:
        """What was set aside and why, per column with examples (for the CLI and the pipeline)."""
        s = self.summary()
        lines = [
            f"cohort: {s['rows']} rows, {s['kept']} kept, {s['quarantined']} quarantined"
            f" ({100 * s['quarantined_share']:.2f} %)"
        ]
        for (column, why), group in self.quarantined.groupby(["column", "why"], sort=True):
            examples = ", ".join(
                f"{r.row} ({r.eye_id}: {r.value})" for r in group.head(EXAMPLES).itertuples()
            )
            lines.append(f"  {column}: {group['row'].nunique()} rows {why}, e.g. rows {examples}")
        return lines


def check_cohort(
    frame: pd.DataFrame, date_format: str | None = None, max_quarantined: float = MAX_QUARANTINED
) -> CohortCheck:
    """One pass over a cohort. Schema problems (missing columns, wrong types, unknown categories,
    duplicate eyes, dates that are not dates, surgery before the exam) stop the run: CohortError
    lists every one with row numbers and eye ids. Implausible or missing measurements quarantine
    their rows; the run goes on while the quarantined share stays at most `max_quarantined`."""
    missing = [c for c in COHORT_COLUMNS if c not in frame.columns]
    if missing:
        raise CohortError(f"missing columns: {', '.join(missing)}; the schema is {', '.join(COHORT_COLUMNS)}")
    out = frame.reset_index(drop=True).copy()
    problems: list[str] = []
    for column in ("exam_date", "surgery_date"):
        out[column] = _dates(out, column, date_format, problems)
    for column in ("eye_id", "patient_id"):
        blank = out[column].isna() | (out[column].astype("string").str.strip() == "")
        if blank.any():
            problems.append(f"{column}: {int(blank.sum())} blank: {_rows(out, blank)}")
        out[column] = out[column].astype(str)
    for column, allowed in (("laterality", ("OD", "OS")), ("sex", ("F", "M"))):
        bad = ~out[column].isin(allowed)
        if bad.any():
            problems.append(
                f"{column}: {int(bad.sum())} values not {' or '.join(allowed)}: {_rows(out, bad)}"
            )
    quarantine: list[dict[str, Any]] = []
    counterfactual = [c for c in COUNTERFACTUAL_COLUMNS if c in out.columns]
    ranges = {**PLAUSIBLE, **dict.fromkeys(counterfactual, (0.0, 2000.0))}
    for column in [*ranges, "implanted_size_mm"]:
        raw = out[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        blank = raw.isna() | (raw.astype("string").str.strip() == "")
        wrong = numbers.isna() & ~blank
        if wrong.any():
            problems.append(f"{column}: {int(wrong.sum())} values are not numbers: {_rows(out, wrong)}")
        out[column] = numbers.astype(float)
        if column == "implanted_size_mm":
            unknown = ~numbers.round(1).isin(SIZES_MM) & ~blank & ~wrong
            if unknown.any() or blank.any():
                problems.append(
                    f"implanted_size_mm: {int((unknown | blank).sum())} values not one of {SIZES_MM}:"
                    f" {_rows(out, unknown | blank)}"
                )
            continue
        low, high = ranges[column]
        for mask, why in (
            (blank, "missing"),
            (~blank & ~wrong & ~numbers.between(low, high), f"outside the plausible range {low}–{high}"),
        ):
            for i in (int(j) for j in np.flatnonzero(mask.to_numpy())):
                quarantine.append(
                    {"row": i + 1, "eye_id": str(out.at[i, "eye_id"]), "column": column,
                     "value": raw.iat[i], "why": why}
                )  # fmt: skip
    duplicated = out["eye_id"].duplicated(keep=False)
    if duplicated.any():
        problems.append(f"eye_id: {int(duplicated.sum())} values duplicated: {_rows(out, duplicated)}")
    early = out["surgery_date"] < out["exam_date"]
    if early.any():
        problems.append(f"rows: {int(early.sum())} with surgery before the exam: {_rows(out, early)}")
    set_aside = pd.DataFrame(quarantine, columns=["row", "eye_id", "column", "value", "why"])
    check = CohortCheck(out, set_aside, len(out))
    share = check.quarantined_rows / max(len(out), 1)
    if share > max_quarantined:
        counts = set_aside.groupby(["column", "why"], sort=True)["row"].nunique()
        by_column = "; ".join(f"{key[0]}: {n} values {key[1]}" for key, n in counts.items())  # type: ignore[index]
        problems.append(
            f"{check.quarantined_rows} rows ({100 * share:.1f} %) have implausible or missing values,"
            f" over the {100 * max_quarantined:g} % a run may set aside ({by_column}); fix them or"
            " raise the limit (--max-quarantined)"
        )
    if problems:
        raise CohortError("; ".join(problems))
    kept = out.drop(index=[r - 1 for r in set_aside["row"].unique()]).reset_index(drop=True)
    for column in ("age_years", "cct_um", "clr_um", "vault_um", *counterfactual):
        kept[column] = kept[column].round().astype(int)
    return CohortCheck(kept, set_aside, len(out))


def validation_report(
    title: str, facts: list[str], check: CohortCheck | None, error: CohortError | None = None
) -> str:
    """The Markdown a pipeline's validation step leaves: what was checked, then every problem that
    stopped the run, or what was set aside."""
    lines = [f"# {title}", "", *(f"- {fact}" for fact in facts), ""]
    if error is not None:
        lines += [
            "**FAILED**: nothing was trained",
            "",
            *(f"- {p.strip()}" for p in error.message.split("; ")),
        ]
    elif check is not None:
        lines += ["**passed**", "", *(f"- {line.strip()}" for line in check.report_lines())]
    return "\n".join(lines) + "\n"


def validate_cohort(
    frame: pd.DataFrame, date_format: str | None = None, max_quarantined: float = MAX_QUARANTINED
) -> pd.DataFrame:
    """The rows of `frame` a model may use (check_cohort's, without its report)."""
    return check_cohort(frame, date_format, max_quarantined).frame


def load_cohort_file(path: Path) -> pd.DataFrame:
    """A cohort file as it is (CSV values as text, so that nothing is guessed before validation)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    raise CohortError(f"{path}: expected a .parquet or .csv file")


def read_cohort(
    path: Path, date_format: str | None = None, max_quarantined: float = MAX_QUARANTINED
) -> CohortCheck:
    """A cohort from parquet or CSV, validated: its usable rows and the report of those set aside."""
    try:
        frame = load_cohort_file(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, CohortError):
            raise
        raise CohortError(f"{path}: cannot be read ({exc})") from exc
    try:
        return check_cohort(frame, date_format, max_quarantined)
    except CohortError as exc:
        raise CohortError(f"{path}: {exc.message}") from exc


def write_cohort(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    else:
        raise CohortError(f"{path}: expected a .parquet or .csv file")
