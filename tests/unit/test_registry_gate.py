from __future__ import annotations

import json

import pytest

from eyeops.lens.gate import GateTolerances, gate
from eyeops.registry import ModelRegistry, RegistryError

GOOD = {
    "mae_um": 95.0,
    "coverage_factual": 0.90,
    "coverage_factual_by_size": {"12.1": 0.9, "12.6": 0.91, "13.2": 0.9, "13.7": 0.87},
    "in_range_rate_recommended": 0.65,
}


def artifact(tmp_path, name: str):  # type: ignore[no-untyped-def]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"version": name}))
    return folder


def test_register_promote_rollback_and_refuse_duplicates(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.champion("lens") is None
    v1 = registry.register("lens", "1", artifact(tmp_path, "a"), {"mae_um": 95.0}, data_sha256="abc")
    assert (v1.path / "manifest.json").exists() and v1.metrics == {"mae_um": 95.0}
    assert v1.storage_uri.startswith("file://") and v1.metadata["data_sha256"] == "abc"
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("lens", "1", artifact(tmp_path, "b"), {})
    registry.register("lens", "2", artifact(tmp_path, "c"), {"mae_um": 93.0})
    assert registry.versions("lens") == ["1", "2"]
    registry.promote("lens", "1", "first model")
    registry.promote("lens", "2", "better MAE")
    assert registry.champion("lens").version == "2"  # type: ignore[union-attr]
    assert registry.rollback("lens").version == "1"
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("lens")  # 1 was the first: a second rollback does not toggle back to 2
    registry.register("lens", "3", artifact(tmp_path, "e"), {"mae_um": 92.0})
    registry.promote("lens", "2", "again")
    registry.promote("lens", "3", "better still")
    assert registry.lineage("lens") == ["1", "2", "3"]
    assert [registry.rollback("lens").version for _ in range(2)] == ["2", "1"]  # walks back the history
    with pytest.raises(RegistryError, match="no version"):
        registry.promote("lens", "9", "typo")
    with pytest.raises(RegistryError, match="not allowed"):
        registry.register("lens", "../x", artifact(tmp_path, "d"), {})


def test_gate_promotes_first_model_and_refuses_a_worse_one():
    first = gate(GOOD, None)
    assert first.promote and "no champion" in first.reasons[0]
    degraded = {**GOOD, "mae_um": 130.0, "in_range_rate_recommended": 0.55}
    decision = gate(degraded, GOOD)
    assert not decision.promote
    assert any("MAE 130.0" in r for r in decision.reasons) and any(
        "in-range rate" in r for r in decision.reasons
    )
    # A real cohort has no counterfactual columns: the off-policy estimate is compared instead,
    # and a check neither evaluation can make is said, never skipped in silence.
    real = {k: v for k, v in GOOD.items() if k != "in_range_rate_recommended"}
    ope = {"estimate": 0.70, "ci_low": 0.68, "ci_high": 0.72}
    worse = gate(
        {**real, "ope_in_range_recommended": {**ope, "estimate": 0.60}},
        {**real, "ope_in_range_recommended": ope},
    )
    assert not worse.promote and any("in-range rate (off-policy estimate) 0.600" in r for r in worse.reasons)
    unchecked = gate(real, real)
    assert unchecked.promote and any(r.startswith("in-range rate not checked:") for r in unchecked.reasons)
    miscalibrated = {**GOOD, "coverage_factual": 0.80, "coverage_factual_by_size": {"13.7": 0.7}}
    assert not gate(miscalibrated, None).promote
    assert gate({**GOOD, "mae_um": 99.0}, GOOD).promote  # within 5 %
    assert not gate({**GOOD, "mae_um": 99.0}, GOOD, GateTolerances(mae_relative=0.01)).promote


def test_registry_commands(tmp_path, capsys):
    from eyeops.cli import main

    registry = ModelRegistry(tmp_path)
    registry.register("lens", "1", artifact(tmp_path, "a"), GOOD, gate_promoted=True, gate_reasons=["ok"])
    registry.register(
        "lens", "2", artifact(tmp_path, "b"), {**GOOD, "mae_um": 90.0}, gate_promoted=False,
        gate_reasons=["coverage 0.80 below 0.88"],
    )  # fmt: skip
    root = ["registry", "--root", str(tmp_path)]
    assert main([*root, "promote", "lens", "1", "--note", "first"]) == 0
    assert main([*root, "promote", "lens", "2", "--note", "better"]) == 0
    assert main([*root, "rollback", "lens"]) == 0
    capsys.readouterr()
    assert main([*root, "list", "lens"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("* 1 ") and "MAE   95.0" in lines[0] and "gate: promoted" in lines[0]
    assert lines[1].startswith("  2 ") and "gate: REFUSED" in lines[1]
    assert lines[2].strip() == "refused because: coverage 0.80 below 0.88"
    assert lines[-1].endswith(": 1")  # 2 was rolled back: 1 stands alone


def test_the_gate_refuses_bounds_that_under_cover_what_they_claim():
    """Issue 29: bounds of unsupported sizes claim 95 %; the fixed margin covered 0.933 of the
    counterfactuals of a world written apart, and nothing refused it."""
    under = {**GOOD, "coverage_counterfactual_unsupported": 0.933, "counterfactual_pairs_unsupported": 9722}
    refused = gate(under, None)
    assert not refused.promote and any(
        "cover 0.933 of 9722 counterfactual pairs" in r for r in refused.reasons
    )
    # within two binomial standard errors of the claim, or too few pairs to tell: not refused for it
    assert gate({**under, "coverage_counterfactual_unsupported": 0.949}, None).promote
    assert gate({**under, "counterfactual_pairs_unsupported": 30}, None).promote
    # a real cohort: the held-out eyes implanted with a size unsupported for them
    real = {**GOOD, "coverage_unsupported_implanted": 0.80, "unsupported_implanted_eyes": 60}
    decision = gate(real, None)
    assert not decision.promote and any(
        "60 eyes implanted with an unsupported size" in r for r in decision.reasons
    )
    assert gate({**real, "coverage_unsupported_implanted": 0.93}, None).promote  # floor 0.894 at n = 60


def test_the_gate_refuses_a_band_from_data_that_under_covers_where_it_holds():
    """Issue 29: the bounds may cover 0.967 of all counterfactual pairs while the band from data
    covers 0.908 of the 3,020 where it holds (the third world's second draw): refused for the band."""
    band = {
        **GOOD,
        "coverage_counterfactual_unsupported": 0.967,
        "counterfactual_pairs_unsupported": 9621,
        "coverage_where_a_margin_holds": 0.908,
        "counterfactual_pairs_where_a_margin_holds": 3020,
    }
    decision = gate(band, None)
    assert not decision.promote
    assert any(
        "cover 0.908 of 3020 counterfactual pairs where a band from data holds" in r for r in decision.reasons
    )
    assert not any("of 9621" in r for r in decision.reasons)  # all pairs together hold their claim
    assert gate({**band, "coverage_where_a_margin_holds": 0.947}, None).promote  # floor 0.942 at 3,020
    assert gate({**band, "counterfactual_pairs_where_a_margin_holds": 0}, None).promote  # no band
