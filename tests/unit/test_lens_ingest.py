from __future__ import annotations

import datetime as dt
import importlib
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from eyeops.exams import ExamRecord
from eyeops.features.ingest import ExamFeatureSink, feature_push_for, view_for_device
from eyeops.features.online import Row
from eyeops.fields import FieldReading

HEADER = {"patient_id": "P0012345", "laterality": "OS", "exam_date": "2026-03-14"}


def biometer(status: str = "accepted", **header: str | None) -> ExamRecord:
    values = {
        "al_mm": 26.4,
        "acd_mm": 3.3,
        "lt_mm": 3.7,
        "wtw_mm": 11.8,
        "k1_d": 43.5,
        "k2_d": 44.75,
        "cct_um": 531.0,
    }
    fields = [FieldReading(n, str(v), v, None, 0.99, "accepted") for n, v in values.items()]
    return ExamRecord("a" * 64, "optical_biometer", status, fields, header={**HEADER, **header})


def test_accepted_biometry_becomes_a_push_for_the_eye():
    push = feature_push_for(biometer())
    assert push is not None
    assert (push.view, push.eye_id) == ("biometry", "P0012345-OS")
    assert (
        push.values["wtw_mm"] == 11.8
        and push.values["cct_um"] == 531
        and isinstance(push.values["cct_um"], int)
    )
    assert push.measured_at == dt.datetime(2026, 3, 14, tzinfo=dt.UTC)


def test_nothing_is_pushed_without_acceptance_identity_or_a_view():
    assert feature_push_for(biometer(status="review")) is None
    assert feature_push_for(biometer(laterality=None)) is None
    tonometer = ExamRecord("b" * 64, "noncontact_tonometer", "accepted", [], header=HEADER)
    assert feature_push_for(tonometer) is None
    assert view_for_device("anterior_segment_oct") == "anterior_segment"
    assert view_for_device("autorefractor") == "refraction"


class Recording:
    """An online store (`eyeops.features.online.OnlineStore`) that keeps what was pushed."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, list[Row]]] = []

    def read(self, eye_ids: Sequence[str]) -> list[dict[str, Any]]:
        online = {row[0]: dict(row[1]) for _, rows in self.pushes for row in rows}
        return [{"eye_id": eye, **online.get(eye, {})} for eye in eye_ids]

    def push(self, view: str, rows: Sequence[Row]) -> None:
        self.pushes.append((view, list(rows)))


def test_the_sink_pushes_accepted_exams_through_the_online_store_interface_one_push_per_view():
    store = Recording()
    sink: ExamFeatureSink = ExamFeatureSink(store)
    assert sink(biometer()) is not None and sink(biometer(status="review")) is None
    assert [view for view, _ in store.pushes] == ["biometry"]
    store.pushes.clear()
    other = biometer(patient_id="P0099999")
    made = sink.many([biometer(), biometer(status="review"), other])
    assert [m is not None for m in made] == [True, False, True]
    assert [(view, [eye for eye, _, _ in rows]) for view, rows in store.pushes] == [
        ("biometry", ["P0012345-OS", "P0099999-OS"])
    ]
    assert store.read(["P0099999-OS"])[0]["al_mm"] == 26.4


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("eyeops.lens.feature_views", "eyeops.features.views", "VIEWS"),
        ("eyeops.lens.ingest", "eyeops.features.ingest", "feature_push_for"),
        ("eyeops.db.feature_outbox", "eyeops.features.outbox", "FeatureOutboxWriter"),
        ("eyeops.lens.feature_store", "eyeops.features.repository", "prepare_repo"),
        ("eyeops.lens.feature_store", "eyeops.features.offline_log", "append_parquet"),
    ],
)
def test_the_old_module_names_keep_working_for_one_release_and_say_where_they_went(
    old: str, new: str, name: str
) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new.rsplit('.', 1)[0]}"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
