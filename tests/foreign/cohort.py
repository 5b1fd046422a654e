"""An independent simulator of ICL (implantable collamer lens) surgery cohorts, written apart from the
project's own so that its assumptions differ: an older, partly Asian population of moderate and high
myopes, a nonlinear outcome with an eye-specific slope per mm of lens size, and surgeons who size by
STS, ATA or WTW with their own offsets.

Every eye carries its four true counterfactual vaults (``vault_um_12.1`` … ``vault_um_13.7``), each
non-decreasing in size (monotone treatment response); ``vault_um`` is the one of the implanted size.
A share ``odd_share`` of rows carries one implausible value (a unit slip, a misread), as real
exports do; the vaults of those rows come from the true biometry.

    python -m tests.foreign.cohort --n 20000 --seed 1 --out cohort.parquet
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SIZES: tuple[float, ...] = (12.1, 12.6, 13.2, 13.7)
VAULT_COLUMNS: tuple[str, ...] = tuple(f"vault_um_{s}" for s in SIZES)
COLUMNS: tuple[str, ...] = (
    "eye_id",
    "patient_id",
    "laterality",
    "age_years",
    "sex",
    "exam_date",
    "wtw_mm",
    "acd_mm",
    "al_mm",
    "lt_mm",
    "k1_d",
    "k2_d",
    "cct_um",
    "ata_mm",
    "clr_um",
    "sts_mm",
    "sphere_d",
    "cyl_d",
    "implanted_size_mm",
    "surgery_date",
    "vault_um",
    *VAULT_COLUMNS,
)
# The ranges a sane export stays within (the same limits the project validates against); every row
# that is not an oddity lies inside them, every oddity has exactly one value outside.
RANGES: dict[str, tuple[float, float]] = {
    "age_years": (18, 60),
    "wtw_mm": (10.0, 13.5),
    "acd_mm": (2.0, 4.5),
    "al_mm": (20.0, 32.0),
    "lt_mm": (2.5, 6.0),
    "k1_d": (38.0, 52.0),
    "k2_d": (38.0, 52.0),
    "cct_um": (400, 700),
    "ata_mm": (10.0, 14.0),
    "clr_um": (-400, 900),
    "sts_mm": (10.0, 14.0),
    "sphere_d": (-25.0, 10.0),
    "cyl_d": (-8.0, 0.0),
    "vault_um": (0, 2000),
}
VAULT_MAX_UM = 2000
FIRST_PATIENT = 5_000_000
SURGERY_START = np.datetime64("2023-01-01")
SURGERY_DAYS = 4 * 365  # 2023-01-01 … 2026-12-30

# Surgeons: (share of patients, measurement the size is based on, offset in mm, ACD bonus in mm per mm
# above 3.3, CLR allowance in mm per 100 µm of lens rise above 60 µm, judgement SD in mm). None of them
# follows the manufacturer's WTW + 0.5 rounding rule.
SURGEONS: tuple[tuple[float, str, float, float, float, float], ...] = (
    (0.30, "sts", 1.00, 0.00, 0.06, 0.12),  # spur-to-spur, moderate oversize
    (0.25, "ata", 0.80, 0.25, 0.10, 0.15),  # angle-to-angle, deeper chambers get more
    (0.20, "sts", 1.25, -0.10, 0.00, 0.10),  # aggressive oversizer, cautious with deep chambers
    (0.15, "wtw", 0.95, 0.40, 0.00, 0.20),  # WTW-based, strong ACD adjustment
    (0.10, "ata", 0.90, 0.00, 0.12, 0.25),  # occasional surgeon, more scatter
)


def _correlated(
    rng: np.random.Generator, n_patients: int, sd: float, fellow_r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Deviations (SD ``sd``) of the right and left eye of each patient with correlation ``fellow_r``."""
    shared = rng.standard_normal(n_patients) * np.sqrt(fellow_r)
    own = rng.standard_normal((2, n_patients)) * np.sqrt(1.0 - fellow_r)
    return sd * (shared + own[0]), sd * (shared + own[1])


def _fellow(rng: np.random.Generator, n_patients: int, sd: float, fellow_r: float) -> np.ndarray:
    """Per-eye deviations in eye order (OD, OS of patient 0, OD, OS of patient 1, …)."""
    od, os_ = _correlated(rng, n_patients, sd, fellow_r)
    return np.column_stack([od, os_]).ravel()


def _quarter(x: np.ndarray) -> np.ndarray:
    """Rounded to the refraction grid of 0.25 D."""
    return np.round(x * 4.0) / 4.0


def _true_vaults(
    rng: np.random.Generator,
    eye: dict[str, np.ndarray],
    patient_of_eye: np.ndarray,
    n_patients: int,
) -> np.ndarray:
    """The four counterfactual vaults (µm, int) of every eye, shape (n, 4), non-decreasing along axis 1.

    vault(s) = base + slope · L · tanh((s − STS − c) / L) + u + e_s, with
    base = 520 + 150·(ACD − 3.2) − 0.45·(CLR − 60) − (170 + 5·(age − 35))·(LT − 4.2) − 3·(age − 35)
           + 60·(WTW − STS + 0.1) (a crowded angle, STS large against WTW, lowers the vault),
    slope = (680 + 170·(ACD − 3.2) + 180·(STS − WTW + 0.1) − 0.35·(CLR − 60)) · lognormal(0, 0.13),
            clipped to 380…950 µm/mm (eye-specific),
    the oversize saturating with scale L = 1.8 mm around the neutral oversize c = 1.0 mm,
    u a heavy-tailed (t, 5 df) error of SD ≈ 115 µm common to the four sizes, 40 % of its variance shared
    by fellow eyes, and e_s a size-specific error of SD 20 µm; a running maximum over sizes keeps each
    eye monotone.
    """
    n = len(eye["acd"])
    acd, clr, lt, age = eye["acd"], eye["clr"], eye["lt"], eye["age"]
    sts, wtw = eye["sts"], eye["wtw"]
    base = (
        520.0
        + 150.0 * (acd - 3.2)
        - 0.45 * (clr - 60.0)
        - (170.0 + 5.0 * (age - 35.0)) * (lt - 4.2)
        - 3.0 * (age - 35.0)
        + 60.0 * (wtw - sts + 0.1)
    )
    slope = 680.0 + 170.0 * (acd - 3.2) + 180.0 * (sts - wtw + 0.1) - 0.35 * (clr - 60.0)
    slope = np.clip(slope * rng.lognormal(0.0, 0.13, n), 380.0, 950.0)
    scale, neutral = 1.8, 1.0
    sizes = np.asarray(SIZES)[None, :]
    oversize = sizes - sts[:, None] - neutral
    mean = base[:, None] + slope[:, None] * scale * np.tanh(oversize / scale)
    # t(5) has variance 5/3; scale it to unit SD, then share 40 % of the variance between fellow eyes
    t_patient = rng.standard_t(5, n_patients) / np.sqrt(5.0 / 3.0)
    t_eye = rng.standard_t(5, n) / np.sqrt(5.0 / 3.0)
    shared = 115.0 * (np.sqrt(0.4) * t_patient[patient_of_eye] + np.sqrt(0.6) * t_eye)
    size_specific = rng.normal(0.0, 20.0, (n, len(SIZES)))
    vault = mean + shared[:, None] + size_specific
    vault = np.maximum.accumulate(vault, axis=1)
    return np.clip(np.round(vault), 0, VAULT_MAX_UM).astype(np.int64)


def _choose_sizes(rng: np.random.Generator, eye: dict[str, np.ndarray], surgeon: np.ndarray) -> np.ndarray:
    """The implanted size of every eye: each surgeon aims at basis + offset (+ ACD bonus) with some
    judgement noise and takes a size near that aim; 13.7 is never used below STS 11.5 mm and 12.1
    never above STS 12.4 mm (the structural positivity failure)."""
    n = len(surgeon)
    aim = np.empty(n)
    for k, (_, basis, offset, acd_bonus, clr_allowance, judgement) in enumerate(SURGEONS):
        mine = surgeon == k
        deep = np.clip(eye["acd"][mine] - 3.3, 0.0, None)
        rise = (eye["clr"][mine] - 60.0) / 100.0
        noise = rng.normal(0.0, judgement, mine.sum())
        aim[mine] = eye[basis][mine] + offset + acd_bonus * deep + clr_allowance * rise + noise
    sizes = np.asarray(SIZES)
    logits = -((sizes[None, :] - aim[:, None]) ** 2) / (2.0 * 0.18**2)
    logits[:, 3] = np.where(eye["sts"] < 11.5, -np.inf, logits[:, 3])
    logits[:, 0] = np.where(eye["sts"] > 12.4, -np.inf, logits[:, 0])
    # at most one extreme is barred, so every row keeps a finite maximum
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    pick = (rng.random(n)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    chosen: np.ndarray = sizes[np.minimum(pick, len(SIZES) - 1)]
    return chosen


# One implausible value per odd row: (column, function of the true value and a uniform draw).
_ODDITIES: tuple[tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], ...] = (
    ("sts_mm", lambda v, u: np.round(8.0 + 1.8 * u, 2)),  # STS of a misplaced caliper: below 10
    ("sts_mm", lambda v, u: np.round(v / 10.0, 3)),  # lost decimal place
    ("clr_um", lambda v, u: np.round(920.0 + 400.0 * u)),  # CLR above 900
    ("wtw_mm", lambda v, u: np.round(v * 10.0, 1)),  # 11.7 → 117.0
    ("acd_mm", lambda v, u: np.round(v * 10.0, 1)),  # 3.12 → 31.2
    ("k1_d", lambda v, u: np.round(337.5 / v, 2)),  # radius in mm instead of dioptres
    ("cct_um", lambda v, u: np.round(v / 100.0)),  # 535 → 5
    ("al_mm", lambda v, u: np.round(v + 12.0 + 5.0 * u, 2)),  # a misread tens digit
)


def _add_oddities(rng: np.random.Generator, frame: pd.DataFrame, odd_share: float) -> None:
    """Gives round(n · odd_share) random rows one implausible value each, in place."""
    count = min(round(len(frame) * odd_share), len(frame))
    if count <= 0:
        return
    rows = rng.choice(len(frame), size=count, replace=False)
    kinds = rng.integers(0, len(_ODDITIES), count)
    for row, kind in zip(rows, kinds, strict=True):
        column, corrupt = _ODDITIES[kind]
        value = corrupt(np.asarray([frame.at[row, column]], dtype=float), rng.random(1))[0]
        frame.at[row, column] = int(value) if frame[column].dtype.kind == "i" else float(value)


def simulate(n: int, seed: int, odd_share: float = 0.0005) -> pd.DataFrame:
    """A cohort of ``n`` eyes (rounded down to an even number; two per patient), deterministic per seed."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not 0.0 <= odd_share <= 1.0:
        raise ValueError(f"odd_share must lie in 0…1, got {odd_share}")
    rng = np.random.default_rng(seed)
    n_patients = n // 2
    n_eyes = 2 * n_patients
    patient_of_eye = np.repeat(np.arange(n_patients), 2)

    # patients: ages 21-55 skewed young, 58 % women, 45 % of Asian descent, 45 % moderate myopes
    age_p = np.round(21.0 + 34.0 * rng.beta(1.6, 2.4, n_patients)).astype(np.int64)
    female_p = rng.random(n_patients) < 0.58
    asian_p = rng.random(n_patients) < 0.45
    moderate_p = rng.random(n_patients) < 0.45
    se_p = np.where(
        moderate_p,
        rng.uniform(-8.0, -3.0, n_patients),
        -8.0 - rng.gamma(2.0, 2.2, n_patients),
    )
    surgeon_p = rng.choice(len(SURGEONS), size=n_patients, p=[s[0] for s in SURGEONS])

    age = age_p[patient_of_eye]
    female = female_p[patient_of_eye]
    asian = asian_p[patient_of_eye]
    male = (~female).astype(float)
    asn = asian.astype(float)

    se = np.clip(se_p[patient_of_eye] + _fellow(rng, n_patients, 0.7, 0.3), -21.0, -1.5)
    wtw = 11.62 + 0.22 * male - 0.28 * asn + _fellow(rng, n_patients, 0.38, 0.88)
    wtw = np.clip(wtw, 10.4, 13.1)
    al = 23.2 - 0.31 * se + 0.35 * male - 0.15 * asn + _fellow(rng, n_patients, 0.65, 0.8)
    al = np.clip(al, 21.0, 31.5)
    acd = (
        3.18
        + 0.06 * (al - 25.5)
        + 0.30 * (wtw - 11.6)
        - 0.013 * (age - 35.0)
        + 0.08 * male
        - 0.07 * asn
        + _fellow(rng, n_patients, 0.24, 0.85)
    )
    acd = np.clip(acd, 2.5, 4.3)
    lt = 3.48 + 0.021 * age + 0.05 * asn + _fellow(rng, n_patients, 0.2, 0.85)
    lt = np.clip(lt, 3.0, 5.8)
    ata = np.clip(wtw + 0.10 + _fellow(rng, n_patients, 0.28, 0.6), 10.3, 13.7)
    sts = np.clip(ata - 0.22 + _fellow(rng, n_patients, 0.16, 0.5), 10.2, 13.6)
    clr = 40.0 + 9.0 * (age - 35.0) + 260.0 * (lt - 4.2) - 230.0 * (acd - 3.2)
    clr = np.clip(clr + _fellow(rng, n_patients, 110.0, 0.7), -380.0, 880.0)
    k1 = 43.7 + 0.45 * asn + 0.35 * female - 0.4 * (al - 25.5) + _fellow(rng, n_patients, 1.3, 0.9)
    k1 = np.clip(k1, 39.0, 48.5)
    astig = rng.gamma(1.6, 0.55, n_eyes)
    k2 = np.clip(k1 + astig, 39.0, 50.0)
    cyl = np.clip(_quarter(-0.85 * (k2 - k1) + rng.normal(0.0, 0.3, n_eyes)), -6.0, 0.0)
    sphere = np.clip(_quarter(se - cyl / 2.0), -22.0, 1.0)
    cct = np.clip(np.round(532.0 + _fellow(rng, n_patients, 34.0, 0.9)), 440, 640).astype(np.int64)

    eye = {
        "acd": np.round(acd, 2),
        "clr": np.round(clr),
        "lt": np.round(lt, 2),
        "age": age.astype(float),
        "sts": np.round(sts, 2),
        "wtw": np.round(wtw, 2),
        "ata": np.round(ata, 2),
    }
    vaults = _true_vaults(rng, eye, patient_of_eye, n_patients)
    surgeon = surgeon_p[patient_of_eye]
    implanted = _choose_sizes(rng, eye, surgeon)
    observed = vaults[np.arange(n_eyes), np.searchsorted(SIZES, implanted)]

    # dates: first eye on a day in 2023-2026, fellow eye 1-14 days later, one exam 1-106 days before
    first = SURGERY_START + rng.integers(0, SURGERY_DAYS - 14, n_patients).astype("timedelta64[D]")
    gap = rng.integers(1, 15, n_patients).astype("timedelta64[D]")
    right_first = rng.random(n_patients) < 0.7
    od_date = np.where(right_first, first, first + gap)
    os_date = np.where(right_first, first + gap, first)
    exam = first - rng.integers(1, 107, n_patients).astype("timedelta64[D]")
    surgery_date = np.column_stack([od_date, os_date]).ravel()

    offset = FIRST_PATIENT + 100_000 * (seed % 40)
    patient_ids = np.asarray([f"P{offset + p:07d}" for p in range(n_patients)], dtype=object)
    patient_id = patient_ids[patient_of_eye]
    laterality = np.tile(np.asarray(["OD", "OS"], dtype=object), n_patients)
    eye_id = np.asarray([f"{p}-{side}" for p, side in zip(patient_id, laterality, strict=True)], dtype=object)

    frame = pd.DataFrame(
        {
            "eye_id": eye_id,
            "patient_id": patient_id,
            "laterality": laterality,
            "age_years": age.astype(np.int64),
            "sex": np.where(female, "F", "M").astype(object),
            "exam_date": pd.to_datetime(exam[patient_of_eye]),
            "wtw_mm": eye["wtw"],
            "acd_mm": eye["acd"],
            "al_mm": np.round(al, 2),
            "lt_mm": eye["lt"],
            "k1_d": np.round(k1, 2),
            "k2_d": np.round(k2, 2),
            "cct_um": cct,
            "ata_mm": eye["ata"],
            "clr_um": eye["clr"].astype(np.int64),
            "sts_mm": eye["sts"],
            "sphere_d": sphere,
            "cyl_d": cyl + 0.0,  # no negative zeros
            "implanted_size_mm": implanted,
            "surgery_date": pd.to_datetime(surgery_date),
            "vault_um": observed.astype(np.int64),
            **{column: vaults[:, j] for j, column in enumerate(VAULT_COLUMNS)},
        },
        columns=list(COLUMNS),
    )
    _add_oddities(rng, frame, odd_share)
    return frame


def implausible_rows(frame: pd.DataFrame) -> pd.Series:
    """Whether each row has a value outside ``RANGES``."""
    outside = pd.Series(False, index=frame.index)
    for column, (low, high) in RANGES.items():
        outside |= (frame[column] < low) | (frame[column] > high)
    return outside


def write(frame: pd.DataFrame, out: Path) -> None:
    """Writes ``.parquet`` or ``.csv`` (dates as YYYY-MM-DD)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    elif out.suffix == ".csv":
        frame.to_csv(out, index=False, date_format="%Y-%m-%d")
    else:
        raise ValueError(f"{out}: write .parquet or .csv")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.foreign.cohort", description="Simulate an independent ICL surgery cohort."
    )
    parser.add_argument("--n", type=int, default=20000, help="number of eyes (rounded down to even)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--odd-share", type=float, default=0.0005, help="share of rows with an odd value")
    parser.add_argument("--out", type=Path, required=True, help="a .parquet or .csv file")
    args = parser.parse_args(argv)
    if args.out.suffix not in (".parquet", ".csv"):
        parser.error(f"--out must end in .parquet or .csv, got {args.out}")
    frame = simulate(args.n, args.seed, args.odd_share)
    write(frame, args.out)
    shares = frame["implanted_size_mm"].value_counts(normalize=True).sort_index()
    summary = ", ".join(f"{size}: {share:.3f}" for size, share in shares.items())
    print(f"{args.out}: {len(frame)} eyes, implanted sizes {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
