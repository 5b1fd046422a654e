"""A third, independent simulator of ICL (implantable collamer lens) surgery cohorts, written apart from
the project's model code and from ``tests.foreign.cohort``; it shares only that module's output columns
and command-line shape. Every number below is an assumption of this world, chosen to be plausible, not
taken from a study.

What this world assumes:

* Population: young adults (21–45 years, assumed), mostly of European ancestry with a small share of
  East Asian ancestry that (assumed) shifts the anterior segment slightly smaller; a wide white-to-white
  spread (11.0–12.8 mm); myopes of −3 to −20 D whose axial length follows the refraction.
* Biometry is correlated (all coefficients assumed): ATA and STS follow WTW with their own scatter,
  ACD (measured from the endothelium) grows with WTW and axial length and shrinks with age, the
  crystalline lens thickens with age and in shallow chambers, keratometry flattens in larger and longer
  eyes, and K2 − K1 follows the refractive cylinder. Fellow eyes share a patient component.
* Outcome: the vault is not linear in lens size. It rises slowly while the lens is shorter than about
  STS + 0.3 mm and steeply beyond that threshold (a softplus hinge); the steep slope and the threshold
  move with ACD and lens thickness (interaction), and vaults above about 1500 µm saturate towards the
  2000 µm ceiling. Each eye has two noise draws (a level and a responsiveness), both applied so that
  its four counterfactual vaults are non-decreasing in size; the noise SD grows with the expected vault
  and with |size − STS| (60 µm floor, 250 µm cap, assumed).
* Policy: three surgeons, none following a plain WTW rule: one sizes from STS with a table, one with
  an ACD + WTW nomogram, one sizes from WTW but upsizes high myopes by one or two steps. Each deviates
  by one size step in 10 % of eyes, never by two, so some eye × size combinations have (near) zero
  propensity. High myopes are (assumed) referred more often to the upsizing surgeon.
* Most patients contribute both eyes (fellow eyes share ``patient_id``, surgeon and exam date); about
  15 % contribute one eye. A share ``odd_share`` of rows carries one implausible value (a unit slip);
  the vaults of those rows come from the true biometry.

How it differs from ``tests.foreign.cohort``: a younger, mostly European population instead of an older,
partly Asian one; a threshold/saturating outcome driven by the lens-to-sulcus mismatch instead of an
eye-specific slope per mm; three surgeons with tables/nomograms and bounded one-step deviations instead of
five surgeons aiming at a measurement plus offset; some unilateral patients.

    python -m tests.foreign.cohort_third --n 20000 --seed 1 --out cohort.parquet
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from tests.foreign.cohort import COLUMNS, SIZES, VAULT_COLUMNS, write

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The output contract and the writer are the other simulator's (one home for what a cohort file
# holds); what this world assumes is all below.
VAULT_MAX_UM = 2000
FIRST_PATIENT = 9_000_000  # a range apart from the other simulator's patient ids
SURGERY_START = np.datetime64("2021-03-01")
SURGERY_DAYS = 3 * 365
UNILATERAL_EYE_SHARE = 0.081  # share of eyes from one-eyed patients: about 15 % of patients (assumed)

# Outcome (all assumed): vault at a lens 0.5 mm shorter than STS, slow and steep gains in µm per mm, the
# hinge sharpness in 1/mm, the hinge position relative to STS, and the start and span of saturation.
VAULT_BASE_UM = 100.0
GAIN_LOW_UM_PER_MM = 120.0
GAIN_HIGH_UM_PER_MM = 700.0
HINGE_SHARPNESS = 5.0
HINGE_MM = 0.3
SATURATION_START_UM = 1500.0
SATURATION_SPAN_UM = VAULT_MAX_UM - SATURATION_START_UM
# Noise SD (assumed): base, growth per µm of expected vault, growth per mm of |size − STS|, cap.
NOISE_BASE_UM = 60.0
NOISE_PER_VAULT = 0.10
NOISE_PER_MISMATCH_UM = 80.0
NOISE_CAP_UM = 250.0
RESPONSIVENESS_SD = 0.25  # log-SD of an eye's responsiveness to size (assumed)

# Surgeons (assumed): share of patients without / with high myopia (patient mean sphere <= -10 D).
SURGEON_SHARES: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.40, 0.35, 0.25),
    (0.30, 0.25, 0.45),
)
STS_TABLE_MM: tuple[float, ...] = (11.45, 11.95, 12.45)  # surgeon 0: STS cut-offs between the sizes
DEVIATION_SHARE = 0.10


def _standard(rng: np.random.Generator, patient_of_eye: IntArray, n_patients: int, r: float) -> FloatArray:
    """Standard normal per eye whose fellow eyes correlate with ``r`` (a shared patient component)."""
    shared = rng.standard_normal(n_patients)[patient_of_eye]
    own = rng.standard_normal(patient_of_eye.size)
    return math.sqrt(r) * shared + math.sqrt(1.0 - r) * own


def _quarter(x: FloatArray) -> FloatArray:
    """Rounds to 0.25 D steps, as refractions are recorded."""
    return np.round(x * 4.0) / 4.0


def _clipped(x: FloatArray, low: float, high: float, decimals: int = 2) -> FloatArray:
    """Clips to the assumed range and rounds as the device reports."""
    return np.asarray(np.round(np.clip(x, low, high), decimals), dtype=np.float64)


def _softplus(x: FloatArray, sharpness: float) -> FloatArray:
    return np.logaddexp(0.0, sharpness * x) / sharpness


def _saturate(x: FloatArray) -> FloatArray:
    """Identity up to the saturation start, then a tanh approach to the ceiling (monotone, smooth)."""
    above = SATURATION_START_UM + SATURATION_SPAN_UM * np.tanh((x - SATURATION_START_UM) / SATURATION_SPAN_UM)
    return np.where(x > SATURATION_START_UM, above, x)


def _linear_predictor(sts: FloatArray, acd: FloatArray, lt: FloatArray) -> FloatArray:
    """Unsaturated vault (eyes × sizes): a slow gain plus a hinge whose position and slope depend on ACD
    and lens thickness (deep chambers and thin lenses vault earlier and more)."""
    size = np.asarray(SIZES)[None, :]
    mismatch = size - sts[:, None]
    base = VAULT_BASE_UM + 300.0 * (acd - 3.3) - 350.0 * (lt - 3.6)
    hinge = HINGE_MM - 0.25 * (acd - 3.3) + 0.30 * (lt - 3.6)
    steep = GAIN_HIGH_UM_PER_MM * np.clip(1.0 + 0.9 * (acd - 3.3) - 0.7 * (lt - 3.6), 0.45, 1.6)
    return (
        base[:, None]
        + GAIN_LOW_UM_PER_MM * (mismatch + 0.5)
        + steep[:, None] * _softplus(mismatch - hinge[:, None], HINGE_SHARPNESS)
    )


def _noise_sd(expected: FloatArray, sts: FloatArray) -> FloatArray:
    mismatch = np.abs(np.asarray(SIZES)[None, :] - sts[:, None])
    sd = NOISE_BASE_UM + NOISE_PER_VAULT * np.maximum(expected, 0.0) + NOISE_PER_MISMATCH_UM * mismatch
    return np.clip(sd, NOISE_BASE_UM, NOISE_CAP_UM)


def expected_vaults(frame: pd.DataFrame) -> FloatArray:
    """Noise-free vault (eyes × sizes) from a frame's STS, ACD and lens thickness, before rounding and
    clipping to [0, 2000]; meaningful for the plausible rows only."""
    sts = frame["sts_mm"].to_numpy(dtype=np.float64)
    acd = frame["acd_mm"].to_numpy(dtype=np.float64)
    lt = frame["lt_mm"].to_numpy(dtype=np.float64)
    return _saturate(_linear_predictor(sts, acd, lt))


def _true_vaults(rng: np.random.Generator, sts: FloatArray, acd: FloatArray, lt: FloatArray) -> IntArray:
    """Counterfactual vaults (eyes × sizes), non-decreasing in size for every eye.

    Two draws per eye: a responsiveness that scales the rise above the smallest size (positive, so the
    rise stays monotone) and a level ``u`` scaled by the size-specific SD; a running maximum keeps the
    sequence non-decreasing where a growing SD meets a negative ``u``."""
    n = sts.size
    linear = _linear_predictor(sts, acd, lt)
    responsiveness = np.exp(RESPONSIVENESS_SD * rng.standard_normal(n) - RESPONSIVENESS_SD**2 / 2.0)
    scaled = linear[:, :1] + responsiveness[:, None] * (linear - linear[:, :1])
    mean = _saturate(scaled)
    sd = _noise_sd(_saturate(linear), sts)
    level = rng.standard_normal(n)
    vault = np.maximum.accumulate(mean + sd * level[:, None], axis=1)
    return np.clip(np.round(vault), 0, VAULT_MAX_UM).astype(np.int64)


def _nearest_size(target: FloatArray) -> IntArray:
    nearest: IntArray = np.abs(np.asarray(SIZES)[None, :] - target[:, None]).argmin(axis=1).astype(np.int64)
    return nearest


def _choose_sizes(rng: np.random.Generator, surgeon: IntArray, eye: dict[str, FloatArray]) -> FloatArray:
    """Implanted size per eye: surgeon 0 by an STS table, 1 by an ACD + WTW nomogram, 2 by WTW plus one
    step for high myopia (sphere <= -10 D) and another for extreme myopia (<= -14 D); then a one-step
    deviation in ``DEVIATION_SHARE`` of eyes."""
    by_sts = np.searchsorted(np.asarray(STS_TABLE_MM), eye["sts"], side="right").astype(np.int64)
    by_nomogram = _nearest_size(eye["wtw"] + 0.75 + 0.6 * (eye["acd"] - 3.3))
    steps = (eye["sphere"] <= -10.0).astype(np.int64) + (eye["sphere"] <= -14.0).astype(np.int64)
    by_upsizer = np.minimum(_nearest_size(eye["wtw"] + 0.55) + steps, len(SIZES) - 1)
    index = np.select([surgeon == 0, surgeon == 1], [by_sts, by_nomogram], by_upsizer)
    deviates = rng.random(index.size) < DEVIATION_SHARE
    direction = np.where(rng.random(index.size) < 0.5, -1, 1)
    index = np.clip(index + deviates * direction, 0, len(SIZES) - 1)
    implanted: FloatArray = np.asarray(SIZES, dtype=np.float64)[index]
    return implanted


# One implausible value per odd row: (column, unit slip applied to the true value).
ODDITIES: tuple[tuple[str, Callable[[FloatArray], FloatArray]], ...] = (
    ("acd_mm", lambda x: x * 1000.0),  # µm in a mm field
    ("lt_mm", lambda x: x * 1000.0),
    ("wtw_mm", lambda x: x / 10.0),  # cm in a mm field
    ("sts_mm", lambda x: x / 10.0),
    ("al_mm", lambda x: x / 10.0),
    ("ata_mm", lambda x: x * 1000.0),
    ("k1_d", lambda x: np.round(337.5 / x, 2)),  # radius in mm in a dioptre field
    ("age_years", lambda x: x * 12.0),  # months in a years field
)


def _add_oddities(rng: np.random.Generator, frame: pd.DataFrame, odd_share: float) -> None:
    """Gives round(n · odd_share) distinct random rows one implausible value each, in place."""
    n_odd = round(len(frame) * odd_share)
    if n_odd == 0:
        return
    rows = rng.choice(len(frame), size=n_odd, replace=False)
    kinds = rng.integers(0, len(ODDITIES), n_odd)
    for kind, (column, slip) in enumerate(ODDITIES):
        picked = rows[kinds == kind]
        if picked.size == 0:
            continue
        labels = frame.index[picked]
        values = slip(frame[column].to_numpy(dtype=np.float64)[picked])
        if frame[column].dtype.kind == "i":
            frame.loc[labels, column] = np.round(values).astype(np.int64)
        else:
            frame.loc[labels, column] = values


def _eyes_of_patients(rng: np.random.Generator, n: int) -> tuple[int, IntArray, npt.NDArray[np.object_]]:
    """Number of patients, the patient of each eye and its laterality: most patients give both eyes
    (OD then OS), the rest one eye of random side."""
    n_single = round(n * UNILATERAL_EYE_SHARE)
    if (n - n_single) % 2:
        n_single += 1
    n_single = min(n_single, n)
    n_both = (n - n_single) // 2
    n_patients = n_both + n_single
    single = np.zeros(n_patients, dtype=bool)
    single[rng.choice(n_patients, size=n_single, replace=False)] = True
    eyes_per_patient = np.where(single, 1, 2)
    patient_of_eye = np.repeat(np.arange(n_patients, dtype=np.int64), eyes_per_patient)
    lone_side = np.where(rng.random(n_patients) < 0.5, "OD", "OS")
    laterality: list[str] = []
    for p in range(n_patients):
        laterality.extend([str(lone_side[p])] if single[p] else ["OD", "OS"])
    return n_patients, patient_of_eye, np.asarray(laterality, dtype=object)


def simulate(n: int, seed: int, odd_share: float = 0.0005) -> pd.DataFrame:
    """A cohort of ``n`` eyes, deterministic per ``seed``."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    n_patients, patient_of_eye, laterality = _eyes_of_patients(rng, n)

    def fellow(r: float) -> FloatArray:
        return _standard(rng, patient_of_eye, n_patients, r)

    # Patients: young adults, mostly European (all shares assumed).
    age_p = np.round(21.0 + 24.0 * rng.beta(1.8, 2.6, n_patients)).astype(np.int64)
    female_p = rng.random(n_patients) < 0.56
    east_asian_p = rng.random(n_patients) < 0.08
    myopia_p = 3.0 + rng.gamma(2.2, 2.6, n_patients)  # patient mean myopia in D
    age = age_p[patient_of_eye].astype(np.float64)
    male = (~female_p)[patient_of_eye].astype(np.float64)
    east_asian = east_asian_p[patient_of_eye].astype(np.float64)

    # Biometry, correlated within the eye and between fellow eyes (coefficients assumed).
    sphere = _quarter(np.clip(-myopia_p[patient_of_eye] + 0.7 * rng.standard_normal(n), -20.0, -3.0))
    cyl = -_quarter(np.clip(rng.gamma(1.3, 0.55, n), 0.0, 6.0)) + 0.0
    wtw_raw = 11.85 + 0.10 * male - 0.22 * east_asian + 0.36 * fellow(0.85)
    wtw = _clipped(wtw_raw, 11.0, 12.8)
    ata = _clipped(11.95 + 0.80 * (wtw - 11.85) - 0.1 * east_asian + 0.22 * fellow(0.7), 11.0, 13.0)
    sts_raw = 11.95 + 0.45 * (wtw - 11.85) + 0.35 * (ata - 11.95) - 0.1 * east_asian + 0.22 * fellow(0.7)
    sts = _clipped(sts_raw, 11.0, 13.0)
    al_raw = 23.4 + 0.36 * -sphere + 0.45 * (wtw - 11.85) + 0.45 * fellow(0.8)
    al = _clipped(al_raw, 24.0, 30.0)
    acd_raw = 3.25 + 0.25 * (wtw - 11.85) + 0.04 * (al - 26.5) - 0.010 * (age - 32.0) + 0.18 * fellow(0.85)
    acd = _clipped(acd_raw, 2.8, 3.8)
    lt_raw = 3.62 + 0.018 * (age - 32.0) - 0.25 * (acd - 3.25) + 0.13 * fellow(0.85)
    lt = _clipped(lt_raw, 3.2, 4.2)
    k_mean = 43.9 - 0.9 * (wtw - 11.85) - 0.25 * (al - 26.5) + 1.2 * fellow(0.9)
    corneal_astigmatism = 0.85 * -cyl + 0.15 + np.abs(0.2 * rng.standard_normal(n))
    k1 = _clipped(k_mean - corneal_astigmatism / 2.0, 41.0, 47.0)
    k2 = _clipped(k_mean + corneal_astigmatism / 2.0, 41.0, 47.0)
    cct = np.round(np.clip(535.0 + 30.0 * fellow(0.9), 480.0, 600.0)).astype(np.int64)
    clr_raw = 230.0 - 500.0 * (acd - 3.25) + 300.0 * (lt - 3.62) + 4.0 * (age - 32.0) + 90.0 * fellow(0.7)
    clr = np.round(np.clip(clr_raw, -300.0, 850.0)).astype(np.int64)

    vaults = _true_vaults(rng, sts, acd, lt)

    # Surgeon per patient; high myopes are referred more often to the upsizer.
    high_myope_p = myopia_p >= 10.0
    shares = np.where(high_myope_p[:, None], SURGEON_SHARES[1], SURGEON_SHARES[0])
    surgeon_p = (rng.random(n_patients)[:, None] > np.cumsum(shares, axis=1)).sum(axis=1).astype(np.int64)
    eye = {"sts": sts, "wtw": wtw, "acd": acd, "sphere": sphere}
    implanted = _choose_sizes(rng, surgeon_p[patient_of_eye], eye)
    size_index = np.searchsorted(np.asarray(SIZES), implanted)
    observed = vaults[np.arange(n), size_index]

    # Dates: exam 2–16 weeks before the first surgery, the fellow eye 1–21 days after the first.
    first = SURGERY_START + rng.integers(0, SURGERY_DAYS - 21, n_patients).astype("timedelta64[D]")
    gap = rng.integers(1, 22, n_patients).astype("timedelta64[D]")
    exam = first - rng.integers(14, 113, n_patients).astype("timedelta64[D]")
    second_eye = np.zeros(n, dtype=bool)
    second_eye[1:] = patient_of_eye[1:] == patient_of_eye[:-1]
    surgery_date = first[patient_of_eye] + np.where(second_eye, gap[patient_of_eye], np.timedelta64(0, "D"))

    offset = FIRST_PATIENT + 20_000 * (seed % 40)
    patient_ids = np.asarray([f"P{offset + p:07d}" for p in range(n_patients)], dtype=object)
    patient_id = patient_ids[patient_of_eye]
    eye_id = np.asarray([f"{p}-{side}" for p, side in zip(patient_id, laterality, strict=True)], dtype=object)

    frame = pd.DataFrame(
        {
            "eye_id": eye_id,
            "patient_id": patient_id,
            "laterality": laterality,
            "age_years": age_p[patient_of_eye],
            "sex": np.where(female_p[patient_of_eye], "F", "M").astype(object),
            "exam_date": pd.to_datetime(exam[patient_of_eye]),
            "wtw_mm": wtw,
            "acd_mm": acd,
            "al_mm": al,
            "lt_mm": lt,
            "k1_d": k1,
            "k2_d": k2,
            "cct_um": cct,
            "ata_mm": ata,
            "clr_um": clr,
            "sts_mm": sts,
            "sphere_d": sphere,
            "cyl_d": cyl,
            "implanted_size_mm": implanted,
            "surgery_date": pd.to_datetime(surgery_date),
            "vault_um": observed.astype(np.int64),
            **{column: vaults[:, j] for j, column in enumerate(VAULT_COLUMNS)},
        },
        columns=list(COLUMNS),
    )
    _add_oddities(rng, frame, odd_share)
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.foreign.cohort_third",
        description="Simulate a third, independent ICL surgery cohort.",
    )
    parser.add_argument("--n", type=int, default=20000, help="number of eyes")
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
