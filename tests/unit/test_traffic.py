"""Learning from traffic: which served fields become labels, and which devices may teach."""

from dataclasses import replace

import numpy as np
import pytest

from eyeops.ocr.arbitrate import Calibration, Calibrations
from eyeops.ocr.traffic import (
    DeviceHistory,
    LearningPolicy,
    TrafficField,
    device_refusal,
    harvest,
    split_heldout,
)

CALIBRATIONS = Calibrations(
    primary=Calibration((0.5, 0.9, 0.99), (0.5, 0.95, 0.999)),
    second=Calibration((0.5, 0.9, 0.99), (0.5, 0.9, 0.99)),
    agreed=Calibration((0.5, 0.9, 0.99), (0.9, 0.99, 0.9999)),
    dependence=3.0,
)


def _field(i: int, **kw: object) -> TrafficField:
    base = TrafficField(
        exam_id=f"e{i // 4}",
        device_id="dev-a",
        device_kind="lensmeter",
        field=("sphere_d", "cylinder_d", "axis_deg", "prism_d")[i % 4],
        grammar="-?[0-9]+",
        crop=np.full((32, 128), i % 255, np.uint8),
        text="1.25",
        confidence=0.995,
        second_text="1.25",
        second_confidence=0.995,
        exam_status="accepted",
        models="trocr r10 + ppocr v4",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_only_confident_agreement_in_accepted_exams_becomes_a_pseudo_label():
    fields = [
        _field(0),  # both alike, confident, accepted: a label
        _field(1, exam_status="review"),  # its exam went to a person
        _field(2, exam_status="failed"),
        _field(3, second_text="1.28"),  # the readers disagree
        _field(4, second_text=None, second_confidence=None),  # the second reader was not asked
        _field(5, confidence=0.6, second_confidence=0.6),  # alike, but both could be wrong
        _field(6, text="", second_text=""),
    ]
    window = {"dev-a": DeviceHistory(10, 9, frozenset({"lensmeter"}))}
    got = harvest(fields, window, {}, CALIBRATIONS)
    assert len(got.labels) == 1 and got.labels.texts == ["1.25"]
    assert got.provenance == [
        {
            "exam_id": "e0",
            "device_id": "dev-a",
            "device_kind": "lensmeter",
            "field": "sphere_d",
            "models": "trocr r10 + ppocr v4",
            "source": "agreement",
        }
    ]
    assert got.per_device["dev-a"]["pseudo"] == 1 and got.per_device["dev-a"]["fields"] == 7


def test_reviewed_fields_join_with_the_persons_label_and_are_the_only_ones_held_out():
    pseudo_crop, reviewed_crop = np.full((32, 128), 1, np.uint8), np.full((32, 128), 2, np.uint8)
    fields = [_field(i, exam_id=f"e{i}", crop=pseudo_crop) for i in range(200)]
    fields += [
        _field(i, exam_id=f"r{i}", exam_status="review", text="1.2", reviewed_text="1.25", crop=reviewed_crop)
        for i in range(200)
    ]
    got = harvest(fields, {}, {}, CALIBRATIONS)
    assert got.manifest()["pseudo"] == 200 and got.manifest()["reviewed"] == 200
    assert got.labels.texts.count("1.25") == 400  # the person's text, never the model's
    train, held = split_heldout(got, share=0.2)
    assert len(train) + len(held) == 400
    assert 20 <= len(held) <= 60  # about a fifth of the 200 reviewed exams
    held_again = split_heldout(got, share=0.2)[1]
    assert np.array_equal(held.crops, held_again.crops)  # stable: the same exams every round
    # no pseudo-label is ever held out: the gate judges on what people said
    assert (held.crops == 2).all()
    assert (train.crops == 1).all(axis=(1, 2)).sum() == 200


def test_a_cap_per_device_keeps_the_newest_spread_over_its_fields():
    fields = [_field(i) for i in range(400)]  # 100 of each field, oldest first
    got = harvest(fields, {}, {}, CALIBRATIONS, LearningPolicy(cap_per_device=40))
    assert len(got.labels) == 40
    assert sorted(got.labels.fields) == sorted(["sphere_d", "cylinder_d", "axis_deg", "prism_d"] * 10)
    kept = {int(c[0, 0]) for c in got.labels.crops}
    assert kept == {i % 255 for i in range(360, 400)}  # the newest ones
    assert got.per_device["dev-a"]["over_cap"] == 360


def test_a_device_that_disagrees_with_its_own_history_teaches_nothing_but_its_reviews_stand():
    policy = LearningPolicy()
    past = DeviceHistory(500, 450, frozenset({"lensmeter"}))
    other_kind = device_refusal(DeviceHistory(50, 45, frozenset({"lensmeter", "biometer"})), past, policy)
    assert other_kind is not None and "biometer" in other_kind and "misconfigured" in other_kind
    dropped = device_refusal(DeviceHistory(50, 20, frozenset({"lensmeter"})), past, policy)
    assert dropped == "accepted 40% of its exams in this window against 90% before"
    assert device_refusal(DeviceHistory(50, 43, frozenset({"lensmeter"})), past, policy) is None  # noise
    assert (
        device_refusal(DeviceHistory(50, 5, frozenset({"x"})), DeviceHistory(3, 3, frozenset()), policy)
        is None
    )
    fields = [_field(0), _field(1, exam_status="review", reviewed_text="2.00")]
    got = harvest(
        fields, {"dev-a": DeviceHistory(50, 20, frozenset({"lensmeter"}))}, {"dev-a": past}, CALIBRATIONS
    )
    assert got.refused_devices == {"dev-a": dropped}
    assert got.labels.texts == ["2.00"] and got.provenance[0]["source"] == "review"


def test_the_manifest_carries_counts_and_reasons_never_readings():
    got = harvest([_field(0, text="P1234567", second_text="P1234567")], {}, {}, CALIBRATIONS)
    assert "P1234567" not in repr(got.manifest())
    with pytest.raises(ValueError, match="a crop of"):
        harvest([_field(0, crop=np.zeros((10, 10), np.uint8))], {}, {}, CALIBRATIONS)
