"""The third independent cohort simulator: the other simulator's columns, monotone counterfactuals, the
observed vault as the implanted size's counterfactual, heteroscedastic and nonlinear outcomes, a policy
that leaves some sizes unsupported in some strata, the odd share, and a command line that writes parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.foreign import cohort, cohort_third

N = 20000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return cohort_third.simulate(N, 1)


@pytest.fixture(scope="module")
def plausible(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~cohort.implausible_rows(frame)]


def test_columns_ids_and_fellow_eyes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(cohort.COLUMNS)
    assert len(frame) == N
    assert frame["eye_id"].is_unique
    assert frame["patient_id"].str.fullmatch(r"P\d{7}").all()
    assert set(frame["laterality"]) == {"OD", "OS"}
    eyes = frame.groupby("patient_id").size()
    assert eyes.max() == 2
    assert 0.75 < (eyes == 2).mean() < 0.95  # most patients give both eyes
    two = frame[frame["patient_id"].isin(eyes.index[eyes == 2])]
    per_patient = two.groupby("patient_id")
    assert (per_patient["age_years"].nunique() == 1).all()
    assert (per_patient["sex"].nunique() == 1).all()


def test_deterministic_per_seed() -> None:
    pd.testing.assert_frame_equal(cohort_third.simulate(500, 7), cohort_third.simulate(500, 7))
    assert not cohort_third.simulate(500, 7).equals(cohort_third.simulate(500, 8))


def test_counterfactuals_non_decreasing_in_size(frame: pd.DataFrame) -> None:
    vaults = frame[list(cohort.VAULT_COLUMNS)].to_numpy()
    assert (np.diff(vaults, axis=1) >= 0).all()
    assert vaults.min() >= 0
    assert vaults.max() <= cohort_third.VAULT_MAX_UM


def test_observed_vault_is_the_implanted_counterfactual(frame: pd.DataFrame, plausible: pd.DataFrame) -> None:
    index = np.searchsorted(np.asarray(cohort_third.SIZES), plausible["implanted_size_mm"].to_numpy())
    assert np.allclose(np.asarray(cohort_third.SIZES)[index], plausible["implanted_size_mm"])
    vaults = plausible[list(cohort.VAULT_COLUMNS)].to_numpy()
    assert (plausible["vault_um"].to_numpy() == vaults[np.arange(len(plausible)), index]).all()
    assert len(frame) - len(plausible) == round(N * 0.0005)


def test_every_odd_row_has_exactly_one_implausible_value(frame: pd.DataFrame) -> None:
    odd = frame[cohort.implausible_rows(frame)]
    outside = np.zeros(len(odd), dtype=np.int64)
    for column, (low, high) in cohort.RANGES.items():
        outside += ((odd[column] < low) | (odd[column] > high)).to_numpy(dtype=np.int64)
    assert len(odd) > 0
    assert (outside == 1).all()


def test_noise_is_heteroscedastic(plausible: pd.DataFrame) -> None:
    expected = cohort_third.expected_vaults(plausible).ravel()
    residual = plausible[list(cohort.VAULT_COLUMNS)].to_numpy().ravel() - expected
    low = residual[(expected > 100) & (expected < 400)]
    high = residual[(expected > 900) & (expected < 1300)]
    assert low.size > 1000 and high.size > 1000
    assert high.std() > 1.8 * low.std()


def test_outcome_is_not_linear_in_size(plausible: pd.DataFrame) -> None:
    means = plausible[list(cohort.VAULT_COLUMNS)].mean().to_numpy()
    gain_per_mm = np.diff(means) / np.diff(np.asarray(cohort_third.SIZES))
    assert gain_per_mm[1] > 1.3 * gain_per_mm[0]  # slow below the threshold, steep beyond it


def test_policy_leaves_sizes_unsupported(plausible: pd.DataFrame) -> None:
    shares = plausible["implanted_size_mm"].value_counts(normalize=True)
    assert (shares.reindex(cohort_third.SIZES) > 0.05).all()  # every size is used overall …
    small = plausible[plausible["wtw_mm"] < 11.4]
    large = plausible[plausible["wtw_mm"] > 12.2]
    assert len(small) > 500 and len(large) > 500
    assert (small["implanted_size_mm"] == 13.7).mean() < 0.01  # … but not in every stratum
    assert (large["implanted_size_mm"] == 12.1).mean() < 0.01


def test_command_line_writes_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cohort.parquet"
    assert cohort_third.main(["--n", "300", "--seed", "2", "--out", str(out)]) == 0
    written = pd.read_parquet(out)
    assert list(written.columns) == list(cohort.COLUMNS)
    assert len(written) == 300
    assert "300 eyes" in capsys.readouterr().out
