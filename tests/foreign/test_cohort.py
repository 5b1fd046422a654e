"""The independent cohort simulator: the promised columns and ids, deterministic per seed, monotone in
size for every eye, a confounded policy with structural positivity failure, the odd share, and a
command line that writes parquet and CSV."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eyeops.lens.features import PLAUSIBLE
from tests.foreign import cohort


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return cohort.simulate(20000, 1)


def test_columns_ids_and_types(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(cohort.COLUMNS)
    assert list(frame.columns[-4:]) == ["vault_um_12.1", "vault_um_12.6", "vault_um_13.2", "vault_um_13.7"]
    assert len(frame) == 20000
    assert frame["eye_id"].is_unique
    assert frame["patient_id"].str.fullmatch(r"P\d{7}").all()
    assert (frame["eye_id"] == frame["patient_id"] + "-" + frame["laterality"]).all()
    assert (frame.groupby("patient_id")["laterality"].agg(lambda s: "".join(sorted(s))) == "ODOS").all()
    assert frame["patient_id"].iloc[0] == f"P{5_000_000 + 100_000 * (1 % 40):07d}"
    assert set(frame["sex"]) == {"F", "M"}
    assert set(frame["implanted_size_mm"]) <= set(cohort.SIZES)
    for column in ("age_years", "cct_um", "clr_um", "vault_um", *cohort.VAULT_COLUMNS):
        assert frame[column].dtype.kind == "i", column
    for column in ("exam_date", "surgery_date"):
        assert pd.api.types.is_datetime64_any_dtype(frame[column]), column
    lead = (frame["surgery_date"] - frame["exam_date"]).dt.days
    assert lead.between(1, 120).all()
    assert frame["surgery_date"].dt.year.between(2023, 2026).all()
    assert set(frame["surgery_date"].dt.year) == {2023, 2024, 2025, 2026}
    assert frame["age_years"].between(21, 55).all()
    # fellow eyes share their biometry more than strangers do
    sane = frame[~cohort.implausible_rows(frame)]
    pairs = sane.pivot(index="patient_id", columns="laterality", values="wtw_mm").dropna()
    assert np.corrcoef(pairs["OD"], pairs["OS"])[0, 1] > 0.7


def test_deterministic_per_seed_and_even() -> None:
    first = cohort.simulate(501, 7)
    pd.testing.assert_frame_equal(first, cohort.simulate(501, 7))
    assert len(first) == 500
    other = cohort.simulate(500, 8)
    assert not first["vault_um"].equals(other["vault_um"])
    assert set(first["patient_id"]).isdisjoint(other["patient_id"])
    assert len(cohort.simulate(1, 7)) == 0


def test_monotone_in_size_and_observed_is_the_implanted_column(frame: pd.DataFrame) -> None:
    vaults = frame[list(cohort.VAULT_COLUMNS)].to_numpy()
    assert (np.diff(vaults, axis=1) >= 0).all()
    assert ((vaults >= 0) & (vaults <= cohort.VAULT_MAX_UM)).all()
    column = np.searchsorted(cohort.SIZES, frame["implanted_size_mm"].to_numpy())
    assert (frame["vault_um"].to_numpy() == vaults[np.arange(len(frame)), column]).all()
    # an eye-specific effect of size: the mean slope lies in the published range, its spread is real
    slope = (vaults[:, 2] - vaults[:, 1]) / 0.6
    inner = (vaults[:, 1] > 100) & (vaults[:, 2] < 1900)
    assert 450 < slope[inner].mean() < 800
    assert slope[inner].std() > 60


def test_policy_is_confounded_and_positivity_fails(frame: pd.DataFrame) -> None:
    sane = frame[~cohort.implausible_rows(frame)]
    by_quartile = sane.groupby(pd.qcut(sane["sts_mm"], 4), observed=True)["implanted_size_mm"].mean()
    assert by_quartile.is_monotonic_increasing
    assert by_quartile.iloc[-1] - by_quartile.iloc[0] > 0.6
    small = sane[sane["sts_mm"] < 11.3]
    assert (small["implanted_size_mm"] == 13.7).mean() < 0.005
    assert (sane[sane["sts_mm"] > 12.5]["implanted_size_mm"] == 12.1).mean() < 0.005
    # at a fixed size a larger STS lowers the vault, yet the raw data hide most of that
    design = np.column_stack([np.ones(len(sane)), sane["sts_mm"], sane["acd_mm"], sane["lt_mm"]])
    causal = np.linalg.lstsq(design, sane["vault_um_12.6"].to_numpy(float), rcond=None)[0][1]
    raw = np.linalg.lstsq(design, sane["vault_um"].to_numpy(float), rcond=None)[0][1]
    assert causal < -300
    assert raw > causal + 200


def test_odd_share(frame: pd.DataFrame) -> None:
    assert cohort.RANGES == PLAUSIBLE
    odd = cohort.implausible_rows(frame)
    assert odd.sum() == 10  # 0.05 % of 20000
    outside = pd.DataFrame(
        {c: (frame[c] < low) | (frame[c] > high) for c, (low, high) in PLAUSIBLE.items()}
    ).sum(axis=1)
    assert (outside[odd] == 1).all()
    assert cohort.implausible_rows(cohort.simulate(20000, 1, odd_share=0.0)).sum() == 0
    assert cohort.implausible_rows(cohort.simulate(4000, 2, odd_share=0.01)).sum() == 40


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_writes_a_file(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"cohort{suffix}"
    assert cohort.main(["--n", "300", "--seed", "3", "--out", str(out)]) == 0
    assert "300 eyes" in capsys.readouterr().out
    written = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(written.columns) == list(cohort.COLUMNS)
    assert len(written) == 300
    if suffix == ".csv":
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in written["surgery_date"])
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in written["exam_date"])
    else:
        pd.testing.assert_frame_equal(written, cohort.simulate(300, 3), check_dtype=False)
