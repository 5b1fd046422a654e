"""Issue 29: bounds for unsupported sizes from the eyes that show them (eyeops.lens.unsupported): the
per-step gain checked, a band scaled to each eye's expected error, and why a size has neither."""

from __future__ import annotations

import numpy as np
import pytest

from eyeops.lens.bounds import monotone_bounds, response_bounds
from eyeops.lens.unsupported import (
    assumption,
    eye_scales,
    scaled_bounds,
    scaled_margins,
    scales_of,
    steps_of,
    weighted_margins,
)

STEPS = (330.0, 1100.0)


def _eyes(n: int, outside: int = 0, seed: int = 5):
    """`n` eyes implanted with 13.7 mm, unsupported for them; scores |r| / σ̂ are a permutation of
    1 … n, and the first `outside` fall outside the per-step bounds."""
    rng = np.random.default_rng(seed)
    size_idx = np.full(n, 3)
    supported = np.tile([True, True, True, False], (n, 1))
    scale = rng.uniform(50.0, 150.0, n)
    score = rng.permutation(np.arange(1, n + 1, dtype=float))
    inside = np.ones(n, dtype=bool)
    inside[:outside] = False
    return score * scale, scale, inside, size_idx, supported


def test_the_scale_is_the_order_statistic_of_the_normalized_residuals():
    abs_r, scale, inside, size_idx, supported = _eyes(99)
    marginal = scaled_margins(abs_r, scale, inside, size_idx, supported, 0.05, 30, STEPS, None)
    # rank ⌈100 · 0.95⌉ = 95: the 95th smallest of 1 … 99
    assert marginal[3]["scale"] == pytest.approx(95.0)
    assert marginal[3]["steps"] == "checked" and marginal[3]["why"] is None and marginal[3]["eyes"] == 99
    # training-conditional: rank 98 of 99 (its coverage Beta(98, 2) is ≥ 0.95 with probability 0.9)
    strict = scaled_margins(abs_r, scale, inside, size_idx, supported, 0.05, 30, STEPS, 0.9)
    assert strict[3]["scale"] == pytest.approx(98.0)
    # sizes no eye was implanted with: no band, the per-step bounds unchecked, and why
    for entry in strict[:3]:
        assert entry["scale"] is None and entry["steps"] == "unchecked" and "0 eyes" in entry["why"]


def test_eyes_outside_the_per_step_bounds_count_against_them_and_refuse_them_when_too_many():
    abs_r, scale, inside, size_idx, supported = _eyes(99, outside=1)
    one = scaled_margins(abs_r, scale, inside, size_idx, supported, 0.05, 30, STEPS, 0.9)[3]
    # one eye outside is allowed at rank 98 of 99; its score is +inf, so the 98th is the next up
    assert one["steps"] == "checked" and one["outside_steps"] == 1 and np.isfinite(one["scale"])
    abs_r, scale, inside, size_idx, supported = _eyes(99, outside=5)
    many = scaled_margins(abs_r, scale, inside, size_idx, supported, 0.05, 30, STEPS, 0.9)[3]
    assert many["scale"] is None and many["steps"] == "refused" and many["outside_steps"] == 5
    assert "5 of 99 eyes" in many["why"] and "330–1100 µm per mm" in many["why"]
    assert steps_of([one, one, one, many]).tolist() == [True, True, True, False]


def test_too_few_eyes_give_no_band_and_say_how_many_are_needed():
    abs_r, scale, inside, size_idx, supported = _eyes(38)
    few = scaled_margins(abs_r, scale, inside, size_idx, supported, 0.05, 30, STEPS, 0.9)[3]
    assert few["scale"] is None and few["steps"] == "unchecked" and "at least 45 are needed" in few["why"]
    assert "published, unchecked here" in assumption(few, STEPS)


def test_the_band_follows_each_eyes_expected_error_within_the_bounds_given():
    vault = np.array([[400.0, 700.0, 1000.0, 1300.0], [400.0, 700.0, 1000.0, 1300.0]])
    supported = np.array([[True, True, False, False], [True, True, False, False]])
    lower, upper = monotone_bounds(vault - 100, vault + 100, supported, 2000.0)
    sigma = np.array([[50.0, 50.0, 60.0, 80.0], [50.0, 50.0, 120.0, 160.0]])
    scales = np.array([np.inf, np.inf, 2.5, np.inf])
    lo, hi, band = scaled_bounds(vault, sigma, supported, lower, upper, scales, 2000.0)
    assert band.tolist() == [[False, False, True, False]] * 2
    assert (lo[:, 2], hi[:, 2]) == (pytest.approx([850.0, 700.0]), pytest.approx([1150.0, 1300.0]))
    assert (lo[:, 3] == lower[:, 3]).all() and (hi[:, 3] == upper[:, 3]).all()  # no scale: as given
    assert (lo[:, :2] == lower[:, :2]).all() and (hi[:, :2] == upper[:, :2]).all()  # supported: as given
    # a band that misses the bounds given keeps the bounds given
    far = scaled_bounds(vault - np.array([0, 0, 2000.0, 0]), sigma, supported, lower, upper, scales, 2000.0)
    assert (far[0][:, 2] == lower[:, 2]).all() and (far[1][:, 2] == upper[:, 2]).all() and not far[2].any()
    assert scales_of([{"scale": None}, {"scale": 2.5}]).tolist() == [np.inf, 2.5]


def test_a_size_whose_per_step_gain_was_refused_gets_the_plain_monotone_bound():
    vault = np.array([[400.0, 700.0, 1000.0, 1300.0]])
    supported = np.array([[True, True, False, False]])
    lower, upper = vault - 100, vault + 100
    stepped = response_bounds(lower, upper, supported, 2000.0, STEPS)
    mixed = response_bounds(lower, upper, supported, 2000.0, STEPS, np.array([True, True, True, False]))
    plain = monotone_bounds(lower, upper, supported, 2000.0)
    assert mixed[0][0, 2] == stepped[0][0, 2] and mixed[1][0, 2] == stepped[1][0, 2]
    assert mixed[0][0, 3] == plain[0][0, 3] and mixed[1][0, 3] == plain[1][0, 3]
    assert mixed[1][0, 3] - mixed[0][0, 3] > stepped[1][0, 3] - stepped[0][0, 3]


def _robust_quantile(scores, weights, outside, own, alpha, gamma):
    """The definition, one candidate at a time: the smallest score whose worst-case weighted CDF
    (lower weights at and below it, upper weights above it, outside the steps and for the new eye)
    reaches 1 − α."""
    for k, s in enumerate(scores):
        at = weights[: k + 1].sum() / gamma
        rest = gamma * (weights[k + 1 :].sum() + outside + own)
        if at / (at + rest) >= 1 - alpha:
            return s
    return np.inf


def test_the_weighted_band_is_the_robust_weighted_quantile_and_reaches_only_eyes_like_those_it_rests_on():
    abs_r, scale, inside, size_idx, supported = _eyes(99, outside=1)
    propensity = np.random.default_rng(3).uniform(0.02, 0.12, 99)
    propensity[5] = 0.004  # below the floor: takes no part
    entries = weighted_margins(
        abs_r, scale, inside, size_idx, supported, propensity, 0.05, 30, STEPS, 0.9, 0.01
    )
    table = entries[3]
    assert "scale" not in table and table["steps"] == "checked" and table["band_eyes"] == 98
    assert len(table["scores"]) == 97 and table["scores"] == sorted(table["scores"])  # one outside
    assert table["outside_weight"] == pytest.approx((1 - propensity[0]) / propensity[0], rel=1e-5)
    assert 30 < table["effective_eyes"] < 98
    assert all("scores" not in e for e in entries[:3])  # no eye, no table
    scores, weights = np.array(table["scores"]), np.array(table["weights"])
    asked = np.array([0.1, 0.05, 0.02, 0.012, 0.009, 0.001])
    grid = np.tile(asked[:, None], (1, 4))
    for gamma in (1.0, 1.5):
        found = eye_scales(grid, entries, 0.05, gamma, 0.01)
        assert np.isinf(found[:, :3]).all()
        expected = [
            _robust_quantile(scores, weights, table["outside_weight"], (1 - e) / e, 0.05, gamma)
            if e >= 0.01
            else np.inf
            for e in asked
        ]
        assert found[:, 3].tolist() == pytest.approx(expected)
        assert np.isinf(found[4:, 3]).all()  # below the floor, and far beyond every weight: no band
        # 97 eyes hold a band at Γ = 1; the worst case over odds 1.5× off needs more of them
        assert np.isfinite(found[:2, 3]).all() == (gamma == 1.0)
        assert found[:4, 3].tolist() == sorted(found[:4, 3].tolist())  # the less likely the size, the wider
    # the worst case over the odds widens every band
    assert (
        eye_scales(grid, entries, 0.05, 1.2, 0.01)[:4, 3] >= eye_scales(grid, entries, 0.05, 1.0, 0.01)[:4, 3]
    ).all()
    # equal weights and Γ = 1: the split conformal rank, ⌈(n + 1)(1 − α)⌉ among n eyes and the new one
    even = weighted_margins(
        abs_r, scale, np.ones(99, bool), size_idx, supported, np.full(99, 0.05), 0.05, 30, STEPS, None, 0.01
    )
    assert eye_scales(np.full((1, 4), 0.05), even, 0.05, 1.0, 0.01)[0, 3] == pytest.approx(95.0)
    assert "weighted to this eye" in assumption(table, STEPS) and "too unlike" in assumption(
        table, STEPS, band=False
    )
