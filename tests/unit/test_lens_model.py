"""The lens model's rules: monotone in size, support, bounds from the neighbours, the recommendation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eyeops.lens.bounds import monotone_bounds, recommend, response_bounds
from eyeops.lens.cohort import simulate_cohort
from eyeops.lens.conformal import Calibration
from eyeops.lens.model import LensConfig, LensModel, ModelArtifactError
from eyeops.lens.sizes import SIZES_MM


@pytest.fixture(scope="module")
def model() -> LensModel:
    return LensModel.fit(simulate_cohort(4000, seed=21), LensConfig(vault_rounds=200), version="test-1")


@pytest.fixture(scope="module")
def banded() -> LensModel:
    """The same cohort with a looser check (the marginal rank from 20 eyes, odds taken as estimated),
    so that some sizes hold a band from data at this cohort's size."""
    config = LensConfig(vault_rounds=200, margin_confidence=None, margin_min_eyes=20, margin_gamma=1.0)
    return LensModel.fit(simulate_cohort(4000, seed=21), config, version="test-banded")


@pytest.fixture(scope="module")
def eyes() -> pd.DataFrame:
    return simulate_cohort(400, seed=22)


def test_predicted_vault_is_monotone_in_size_for_random_eyes(model):
    rng = np.random.default_rng(0)
    eyes = simulate_cohort(300, seed=23)
    for column in ("wtw_mm", "sts_mm", "lt_mm", "acd_mm", "clr_um"):  # off the training manifold too
        eyes[column] = eyes[column] + rng.normal(0, eyes[column].std(), len(eyes))
    vault = model.predict(eyes).vault_um
    assert (np.diff(vault, axis=1) >= -1e-9).all()


def test_support_rule_and_answer_shape(model, eyes):
    pred = model.predict(eyes)
    assert np.array_equal(pred.supported, pred.propensity >= 0.125)
    assert np.allclose(pred.propensity.sum(axis=1), 1.0)
    assert pred.supported.any(axis=1).all()  # four sizes: the largest propensity is at least 0.25
    assert np.isnan(pred.p_in_range[~pred.supported]).all()
    assert ((pred.p_in_range[pred.supported] >= 0) & (pred.p_in_range[pred.supported] <= 1)).all()
    answer = pred.eye(0, model.version)
    assert [s["size_mm"] for s in answer["sizes"]] == list(SIZES_MM)
    assert answer["model_version"] == "test-1" and answer["recommended_size_mm"] in SIZES_MM
    assert {s["kind"] for s in answer["sizes"]} <= {"interval", "bounds"}


def test_bounds_contain_the_intervals_of_the_neighbouring_supported_sizes():
    lower = np.array([[100.0, 400.0, 700.0, 1000.0], [100.0, 400.0, 700.0, 1000.0]])
    upper = lower + 300
    supported = np.array([[True, False, True, False], [False, True, False, False]])
    lo, hi = monotone_bounds(lower, upper, supported, 2000.0)
    # eye 0: 12.6 lies between supported 12.1 and 13.2; 13.7 has nothing above
    assert (lo[0, 1], hi[0, 1]) == (100.0, 1000.0) and (lo[0, 3], hi[0, 3]) == (700.0, 2000.0)
    # eye 1: only 12.6 supported: 12.1 is [0, its upper], the larger sizes [its lower, 2000]
    assert (lo[1, 0], hi[1, 0]) == (0.0, 700.0) and (lo[1, 2], hi[1, 2]) == (400.0, 2000.0)
    assert (lo[supported] == lower[supported]).all() and (hi[supported] == upper[supported]).all()


def test_a_bounded_gain_per_step_gives_finite_bounds_beyond_the_supported_sizes():
    lower = np.array([[300.0, 600.0, 0.0, 0.0]])
    upper = np.array([[600.0, 900.0, 0.0, 0.0]])
    supported = np.array([[True, True, False, False]])
    lo, hi = response_bounds(lower, upper, supported, 2000.0, (300.0, 1000.0))
    # 13.2 is 0.6 mm above 12.6 (and 1.1 above 12.1): [600 + 180, 900 + 600] ∩ [300 + 330, 600 + 1100]
    assert (lo[0, 2], hi[0, 2]) == pytest.approx((780.0, 1500.0))
    assert (lo[0, 3], hi[0, 3]) == pytest.approx((600.0 + 300 * 1.1, 900.0 + 1000 * 1.1))
    plain_lo, plain_hi = monotone_bounds(lower, upper, supported, 2000.0)
    assert (plain_lo[0, 2], plain_hi[0, 2]) == (600.0, 2000.0)  # what the bound was before
    # Limits that contradict each other (an eye the assumption does not fit) fall back to monotone.
    odd_lower, odd_upper = np.array([[300.0, 0.0, 310.0, 0.0]]), np.array([[320.0, 0.0, 330.0, 0.0]])
    odd = np.array([[True, False, True, False]])
    lo, hi = response_bounds(odd_lower, odd_upper, odd, 2000.0, (300.0, 1000.0))
    assert (lo[0, 1], hi[0, 1]) == (300.0, 330.0)


def test_real_bounds_lie_within_the_monotone_ones_and_say_what_they_assume(model, eyes):
    pred = model.predict(eyes)
    for i in range(len(eyes)):
        for j in np.flatnonzero(~pred.supported[i]):
            below = [k for k in range(j) if pred.supported[i, k]]
            above = [k for k in range(j + 1, 4) if pred.supported[i, k]]
            if below:
                assert pred.lower_um[i, j] >= max(pred.lower_um[i, k] for k in below)
            if above:
                assert pred.upper_um[i, j] <= min(pred.upper_um[i, k] for k in above)
    unsupported = ~pred.supported
    assert (pred.upper_um - pred.lower_um)[unsupported].max() < 2000.0
    answer = pred.eye(int(np.flatnonzero(unsupported.any(axis=1))[0]), model.version)
    bounds = [s for s in answer["sizes"] if s["kind"] == "bounds"]
    assert bounds and all("µm per mm of size" in s["assumes"] for s in bounds)


def test_recommendation_takes_best_supported_probability_and_breaks_ties_by_500():
    vault = np.array(
        [[300.0, 520.0, 800.0, 1100.0], [200.0, 480.0, 620.0, 900.0], [200.0, 400.0, 600.0, 900.0]]
    )
    p_in = np.array([[0.5, 0.8, np.nan, np.nan], [0.4, 0.7, 0.702, 0.1], [0.9, 0.2, 0.3, 0.1]])
    supported = np.array([[True, True, False, False], [True, True, True, True], [False, True, True, True]])
    assert recommend(vault, p_in, supported).tolist() == [12.6, 12.6, 13.2]


def test_weighted_conformal_quantile_counts_the_query_mass():
    calib = Calibration.build(np.array([-10.0, 20.0, -30.0, 40.0]), np.ones(4))
    assert calib.radius(np.array([1.0]), alpha=0.2)[0] == 40.0  # 0.8 × 5 = 4 → 4th residual
    assert np.isinf(calib.radius(np.array([1.0]), alpha=0.1)[0])  # 0.9 × 5 > 4: no finite radius
    assert calib.mass_between(np.array([-15.0]), np.array([25.0]), np.array([1.0]))[0] == pytest.approx(2 / 5)


def test_artifact_round_trip_and_refusals(model, eyes, tmp_path):
    model.save(tmp_path / "m")
    loaded = LensModel.load(tmp_path / "m")
    a, b = model.predict(eyes), loaded.predict(eyes)
    assert np.allclose(a.vault_um, b.vault_um) and np.allclose(a.upper_um, b.upper_um)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert (
        manifest["delta"] == 0.125
        and manifest["alpha"] == 0.1
        and len(manifest["training_data_sha256"]) == 64
    )
    manifest["format_version"] = 99
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelArtifactError, match="format 99"):
        LensModel.load(tmp_path / "m")
    with pytest.raises(ModelArtifactError, match="no manifest"):
        LensModel.load(tmp_path)


def test_the_off_policy_estimate_finds_the_true_in_range_rate_without_counterfactuals(model):
    from eyeops.lens.cohort import COUNTERFACTUAL_COLUMNS
    from eyeops.lens.ope import policy_value
    from eyeops.lens.sizes import size_column

    test = simulate_cohort(3000, seed=23)
    truth = test[list(COUNTERFACTUAL_COLUMNS)].to_numpy(dtype=float)
    observed_only = test.drop(columns=list(COUNTERFACTUAL_COLUMNS))  # what a real cohort holds
    pred = model.predict(observed_only)
    for policy in (pred.recommended_size_mm, pred.nomogram_size_mm):
        value = policy_value(model, observed_only, policy)
        columns = [list(COUNTERFACTUAL_COLUMNS).index(size_column(s)) for s in policy]
        vault = truth[np.arange(len(test)), columns]
        true_rate = float(((vault >= 250) & (vault <= 750)).mean())
        assert value.ci_low <= true_rate <= value.ci_high, (value, true_rate)
        assert value.ci_high - value.ci_low < 0.06 and 0 < value.matched_share < 1


def test_the_evaluation_page_shows_coverage_policies_widths_overlap_and_the_champion(model):
    from eyeops.lens.evaluate import evaluate
    from eyeops.lens.features import feature_matrix
    from eyeops.lens.report import evaluation_page

    test = simulate_cohort(600, seed=24)
    metrics = evaluate(model, test)
    page = evaluation_page(metrics, {**metrics, "mae_um": 123.4}, model.propensities(feature_matrix(test)))
    assert page.count("<img") == 2 and "123.400" in page and "off-policy, 95 % CI" in page
    assert f"{metrics['mae_um']:.3f}" in page
    # Issue 29: per unsupported size, its margin or why it has none; monotone, fixed and served side by side
    assert "Bounds for unsupported sizes" in page and page.count(" mm</td>") == 4
    for margin in metrics["gain_margins"]:
        assert (margin["why"] or "estimated").split(";")[0] in page.replace("&#x27;", "'")
    for label in ("monotone", "fixed 200 µm/mm (before)", "served (margin from data)"):
        assert f"<tr><td>{label}</td>" in page
    assert f"{metrics['coverage_counterfactual_unsupported_monotone']:.3f}" in page


def test_anchored_bounds_follow_the_model_between_sizes_within_the_stated_margin():
    from eyeops.lens.bounds import anchored_bounds

    vault = np.array([[400.0, 700.0, 1000.0, 1300.0]])
    wide = np.full((1, 4), 150.0)
    supported = np.array([[True, True, False, False]])
    lower, upper = monotone_bounds(vault - 100, vault + 100, supported, 2000.0)
    lo, hi = anchored_bounds(vault, wide, supported, lower, upper, 200.0, 2000.0)
    # 13.2 is 0.6 mm from 12.6 (the nearer anchor): 1000 ± (150 + 200 · 0.6)
    assert (lo[0, 2], hi[0, 2]) == pytest.approx((730.0, 1270.0))
    assert (lo[0, 3], hi[0, 3]) == pytest.approx((1300 - 150 - 200 * 1.1, 1300 + 150 + 200 * 1.1))
    assert (lo[0, :2] == lower[0, :2]).all() and (hi[0, :2] == upper[0, :2]).all()  # intervals untouched


def test_the_margin_per_size_is_the_conformal_quantile_of_what_unsupported_eyes_needed():
    """Issue 29: the margin comes from calibration eyes implanted with a size unsupported for them,
    the ⌈(n + 1)(1 − α)⌉-th smallest of the margins they needed; too few eyes, or an estimate beyond
    the published size effects, give none and say why."""
    from eyeops.lens.bounds import anchored_bounds, gain_margins

    rng = np.random.default_rng(3)
    n = 99
    size_idx = np.full(n, 3)  # every eye got 13.7 mm, unsupported for it; 13.2 is its anchor
    supported = np.tile([False, False, True, False], (n, 1))
    wide = np.full((n, 4), 100.0)
    needed = rng.permutation(np.arange(n, dtype=float))  # µm per mm each eye needs: 0 … 98
    abs_residual = wide[:, 2] + needed * 0.5  # 13.2 → 13.7 is 0.5 mm
    found = gain_margins(abs_residual, size_idx, supported, wide, 0.05, 30, 1100.0)
    assert [m["margin_um_per_mm"] for m in found[:3]] == [None, None, None]  # no eyes: none, and why
    assert "0 eyes were implanted with 12.1 mm" in found[0]["why"]
    # rank ⌈100 · 0.95⌉ = 95: the 95th smallest of 0 … 98 is 94
    assert found[3] == {"size_mm": 13.7, "margin_um_per_mm": 94.0, "eyes": 99, "why": None}
    assert (
        gain_margins(abs_residual[:20], size_idx[:20], supported[:20], wide[:20], 0.05, 30, 1100.0)[3][
            "margin_um_per_mm"
        ]
        is None
    )  # 20 eyes < 30
    # training-conditional (the default): an order statistic whose coverage, Beta(r, n + 1 − r), is
    # ≥ 0.95 with probability 0.9: rank 98 of 99 here, and 38 eyes are too few (45 needed)
    strict = gain_margins(abs_residual, size_idx, supported, wide, 0.05, 30, 1100.0, confidence=0.9)[3]
    assert strict["margin_um_per_mm"] == 97.0
    few = gain_margins(abs_residual[:38], size_idx[:38], supported[:38], wide[:38], 0.05, 30, 1100.0, 0.9)[3]
    assert few["margin_um_per_mm"] is None and "at least 45 are needed" in few["why"]
    wild = gain_margins(wide[:, 2] + 800.0, size_idx, supported, wide, 0.05, 30, 1100.0)[3]
    assert wild["margin_um_per_mm"] is None and "beyond the published size effects" in wild["why"]
    # a size without a margin keeps the bounds given; one with a margin is anchored
    vault = np.array([[400.0, 700.0, 1000.0, 1300.0]])
    lower, upper = monotone_bounds(vault - 100, vault + 100, np.array([[True, True, False, False]]), 2000.0)
    margins = np.array([np.inf, np.inf, 200.0, np.inf])
    lo, hi = anchored_bounds(
        vault, np.full((1, 4), 150.0), np.array([[True, True, False, False]]), lower, upper, margins, 2000.0
    )
    assert (lo[0, 2], hi[0, 2]) == pytest.approx((730.0, 1270.0))
    assert (lo[0, 3], hi[0, 3]) == (lower[0, 3], upper[0, 3])


def test_a_fitted_model_states_its_bounds_per_size_and_each_unsupported_size_says_what_it_assumes(
    model, banded, eyes
):
    assert model.manifest["unsupported_bounds"]["gamma"] == 1.5  # the default
    rule = banded.manifest["unsupported_bounds"]
    assert (
        rule["kind"] == "weighted" and rule["folds"] == 4 and rule["gamma"] == 1.0 and rule["floor"] == 0.01
    )
    found = rule["sizes"]
    assert [m["size_mm"] for m in found] == list(SIZES_MM)
    for m in found:
        assert ("scores" in m) == (m["steps"] == "checked") and m["eyes"] >= m["outside_steps"] >= 0
        assert m["steps"] in ("checked", "refused", "unchecked") and (m["why"] is None) == (
            m["steps"] == "checked"
        )
    pred = banded.predict(eyes)
    assert pred.band is not None and pred.band.any() and not (pred.band & pred.supported).any()
    # some eyes at a size with a table are too unlike its eyes for a band
    tabled = np.array(["scores" in m for m in found])
    assert (~pred.band & ~pred.supported)[:, tabled].any()
    for i in np.flatnonzero((~pred.supported).any(axis=1)):
        answer = pred.eye(int(i), banded.version)
        for j, size in enumerate(answer["sizes"]):
            if size["kind"] == "bounds":
                said = size["assumes"]
                assert ("weighted to this eye" in said) == bool(pred.band[i, j])
                assert (
                    pred.band[i, j] or "too unlike" in said or (found[j]["why"] and found[j]["why"] in said)
                )


def test_a_model_saved_with_one_scale_per_size_keeps_answering_with_it(banded, eyes):
    """Folders fitted with the first rule from data (one scale per size, kind "scaled") answer with
    that scale for every eye, and say it."""
    import copy

    model = banded
    old = copy.copy(model)
    entries = [
        {
            k: v
            for k, v in m.items()
            if k not in ("scores", "weights", "outside_weight", "band_eyes", "effective_eyes")
        }
        | ({"scale": 2.5} if m["steps"] == "checked" else {"scale": None})
        for m in model.manifest["unsupported_bounds"]["sizes"]
    ]
    old.manifest = {**model.manifest, "unsupported_bounds": {"kind": "scaled", "sizes": entries}}
    pred = old.predict(eyes)
    scales, _ = old.margins()
    checked = np.isfinite(scales)
    assert checked.any()
    for j in np.flatnonzero(checked):
        said = pred.eye(int(np.flatnonzero(~pred.supported[:, j])[0]), old.version)["sizes"][j]["assumes"]
        assert "2.5 × the expected error" in said
    assert pred.band is not None and pred.band[:, checked].any() and not pred.band[:, ~checked].any()


def test_a_model_saved_with_anchored_margins_keeps_answering_with_them(model, eyes):
    """Folders fitted before the rule from data carry `gain_margins` (µm per mm): they still answer
    with anchored bounds and say so."""
    import copy

    old = copy.copy(model)
    old.manifest = {k: v for k, v in model.manifest.items() if k != "unsupported_bounds"}
    old.manifest["gain_margins"] = [
        {"size_mm": s, "margin_um_per_mm": 150.0, "eyes": 60, "why": None} for s in SIZES_MM
    ]
    pred = old.predict(eyes)
    assert "off by at most 150 µm per mm" in pred.assumes
    margins, _ = old.margins()
    assert (margins == 150.0).all()


def test_the_fast_propensities_answer_exactly_what_scikit_learn_does(model, monkeypatch):
    """Issue 32: the propensity model's probabilities without scikit-learn's per-call validation
    (7x faster for one eye) are the same numbers, bit for bit, and so is every answer."""
    import eyeops.lens.model as lens_model
    from eyeops.lens.features import FEATURES, feature_matrix

    cohort = simulate_cohort(800, seed=31)
    x = feature_matrix(cohort)[list(FEATURES)].to_numpy()
    slow = model.propensity_model.predict_proba(x)
    assert np.array_equal(lens_model.calibrated_proba(model.propensity_model, x), slow)
    for i in range(20):  # one eye at a time, as most requests come
        assert np.array_equal(
            lens_model.calibrated_proba(model.propensity_model, x[i : i + 1]), slow[i : i + 1]
        )
    fast = model.predict(cohort)
    monkeypatch.setattr(
        lens_model, "calibrated_proba", lambda m, rows: np.asarray(m.predict_proba(rows), dtype=float)
    )
    sklearn = model.predict(cohort)
    assert [fast.eye(i, "v") for i in range(len(cohort))] == [sklearn.eye(i, "v") for i in range(len(cohort))]


def test_the_feature_array_is_the_feature_matrix_and_gives_the_same_predictions(model):
    """Issue 32: answers computed from one float array per request (no pandas per column) equal
    those from the DataFrame, bit for bit."""
    from eyeops.lens.features import FEATURES, feature_array, feature_matrix

    cohort = simulate_cohort(500, seed=33)
    frame = feature_matrix(cohort)
    array = feature_array(cohort)
    assert np.array_equal(array, frame[list(FEATURES)].to_numpy(dtype=float))
    assert np.array_equal(model.predict_vault(array), model.predict_vault(frame))
    assert np.array_equal(model.propensities(array), model.propensities(frame))
    if model.loss_estimator is not None:
        vault = model.predict_vault(frame)
        assert np.array_equal(
            model.loss_estimator.predict(array, vault), model.loss_estimator.predict(frame, vault)
        )


def test_the_conformal_rank_holds_for_cohorts_of_a_million_eyes() -> None:
    """A 10⁶-eye cohort failed to train: the exact binomial sum overflowed a float. Past 1,000 eyes
    SciPy's binomial quantile answers; up to there both give the same rank."""
    from eyeops.lens.bounds import EXACT_RANK_UP_TO, _conformal_rank, _conformal_rank_scipy

    for n in (1, 2, 19, 20, 100, 537, EXACT_RANK_UP_TO):
        for alpha, confidence in ((0.05, 0.9), (0.1, 0.95), (0.2, 0.9)):
            marginal = int(np.ceil((n + 1) * (1 - alpha)))
            assert _conformal_rank(n, alpha, confidence) == _conformal_rank_scipy(
                n, 1 - alpha, marginal, confidence
            )
    n = 1_000_000
    rank = _conformal_rank(n, 0.05, 0.9)
    marginal = int(np.ceil((n + 1) * 0.95))
    assert marginal < rank <= n  # a little beyond the marginal rank, never past the data
    assert rank - marginal < 400  # about 1.28 binomial SDs (218 eyes) at n = 10⁶


def test_rows_as_an_array_give_the_answers_of_the_frame(model):
    """Issue 32: the predictor's rows go to the model as one float array (no DataFrame per request);
    every answer equals the frame's, bit for bit."""
    from eyeops.lens.features import BASE_FEATURES, base_array, rows_from_instances

    cohort = simulate_cohort(300, seed=35)
    rows = rows_from_instances(cohort[list(BASE_FEATURES)].to_dict("records"))
    by_array = model.predict_base(base_array(rows))
    by_frame = model.predict(cohort)
    assert [by_array.eye(i, "v") for i in range(len(cohort))] == [
        by_frame.eye(i, "v") for i in range(len(cohort))
    ]
    assert base_array([]).shape == (0, len(BASE_FEATURES))
