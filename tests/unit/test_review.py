"""Review decisions in the results database (eyeops.review), apart from the web console: a release
writes fields, audit, the Feast push and labelled crops in one transaction; a second reviewer on
the same version is refused with who saved first; invalid values are refused with the reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from eyeops.db.review import ReviewStore
from eyeops.db.review_types import Conflict, NotReviewable, labels_for
from eyeops.db.schema import FeaturePushRow, LabelledCrop, ReviewAudit, ReviewItem
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from eyeops.features.ingest import feature_push_for
from eyeops.ocr.dataset import CropSet
from eyeops.review.cropset import export_crops
from eyeops.review.images import BadCorners, view_exam
from eyeops.review.validate import review_values
from eyeops.settings import Settings
from eyeops.synth.exams import render_one
from tests.review_seed import seed_exam

KIND = "optical_biometer"


@pytest.fixture
def store(sqlite_url: str) -> ReviewStore:
    migrate(sqlite_url)
    return ReviewStore(ResultsStore.from_url(sqlite_url).engine)


def test_release_writes_fields_audit_push_and_crops_in_one_go(
    store: ReviewStore, layouts: LayoutRegistry
) -> None:
    layout = layouts[KIND]
    exam_id, truth = seed_exam(store.results, layout, 0, misread={"al_mm": "23.99"})
    exam = store.exam(exam_id)
    assert exam is not None and exam.record.status == "review" and exam.image is not None
    assert [f for f, _ in exam.open_items] == ["al_mm"]
    view = view_exam(exam.image, layout, Settings())
    assert view.aligned is not None and set(view.crops) == {f.name for f in layout.all_fields()}
    readings, problems = review_values(layout, truth)
    assert problems == []
    store.release(
        exam_id,
        exam.version,
        "ana",
        readings,
        labels_for(layout, readings, truth, exam.record.fields, view.crops),
    )

    done = store.exam(exam_id)
    assert done is not None and done.record.status == "accepted" and not done.waiting
    assert {r.status for r in done.record.fields} == {"reviewed"}
    assert done.version == exam.version + 1 and done.reviewed_by == "ana"
    changed = [a for a in done.audit if a.action == "correct"]
    assert [(a.field_name, a.old_value, a.new_value, a.user) for a in changed] == [
        ("al_mm", "23.99", str(float(truth["al_mm"])), "ana")
    ]
    assert sum(a.action == "confirm" for a in done.audit) == len(readings) - 1
    with store.engine.connect() as conn:
        assert (
            conn.scalar(
                select(func.count()).select_from(FeaturePushRow).where(FeaturePushRow.exam_id == exam_id)
            )
            == 1
        )
        assert (
            conn.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.resolved_at.is_(None)))
            == 0
        )
        crops = conn.execute(select(LabelledCrop.field_name, LabelledCrop.text, LabelledCrop.corrected)).all()
    assert ("al_mm", truth["al_mm"], 1) in crops and len(crops) == len(readings)
    push = feature_push_for(done.record)  # the released exam feeds the lens features
    assert push is not None and push.values["al_mm"] == pytest.approx(float(truth["al_mm"]))


def test_second_reviewer_on_the_same_version_is_refused_with_who_saved(
    store: ReviewStore, layouts: LayoutRegistry
) -> None:
    layout = layouts[KIND]
    exam_id, truth = seed_exam(store.results, layout, 1, doubtful=["k1_d"])
    exam = store.exam(exam_id)
    assert exam is not None
    readings, _ = review_values(layout, truth)
    store.release(exam_id, exam.version, "ana", readings, [])
    with pytest.raises(Conflict, match="ana saved this exam first"):
        store.release(exam_id, exam.version, "ben", readings, [])
    with pytest.raises(Conflict, match="ana"):
        store.reject(exam_id, exam.version, "ben", "unreadable")
    after = store.exam(exam_id)
    assert after is not None and {a.user for a in after.audit} == {"ana"}
    with pytest.raises(NotReviewable):  # on the new version: released already
        store.reject(exam_id, after.version, "ben", "unreadable")


def test_reject_leaves_the_queue_and_never_reaches_feast(store: ReviewStore, layouts: LayoutRegistry) -> None:
    exam_id, _ = seed_exam(store.results, layouts[KIND], 2, doubtful=["acd_mm"])
    exam = store.exam(exam_id)
    assert exam is not None
    store.reject(exam_id, exam.version, "ana", "not this patient")
    assert store.queue() == []
    done = store.exam(exam_id)
    assert done is not None and done.record.status == "rejected"
    assert feature_push_for(done.record) is None
    with store.engine.connect() as conn:
        assert (
            conn.scalar(
                select(func.count()).select_from(FeaturePushRow).where(FeaturePushRow.exam_id == exam_id)
            )
            == 0
        )
        assert (
            conn.scalar(select(ReviewAudit.new_value).where(ReviewAudit.action == "reject"))
            == "not this patient"
        )


def test_invalid_values_are_refused_with_the_rule_not_the_value(layouts: LayoutRegistry) -> None:
    layout = layouts[KIND]
    truth = dict(render_one(layout, 4242, "eval", 3, clean=True).texts)
    _, problems = review_values(layout, truth)
    assert problems == []
    bad = {**truth, "al_mm": "99.99", "patient_id": "X12"}
    _, problems = review_values(layout, bad)
    reasons = {p.field: p.reason for p in problems}
    assert reasons["al_mm"].startswith("out_of_range") and "99.99" not in reasons["al_mm"]
    assert reasons["patient_id"].startswith("grammar") and "X12" not in reasons["patient_id"]
    _, problems = review_values(layout, {k: v for k, v in truth.items() if k != "k2_d"})
    assert [p.field for p in problems] == ["k2_d"]


def test_queue_is_oldest_first_and_filters(store: ReviewStore, layouts: LayoutRegistry) -> None:
    first, _ = seed_exam(store.results, layouts[KIND], 4, doubtful=["k1_d"])
    second, _ = seed_exam(store.results, layouts["autorefractor"], 5, doubtful=["sphere_d"])
    with store.engine.begin() as conn:  # the second arrived first: it waited longer
        conn.execute(
            update(ReviewItem)
            .where(ReviewItem.exam_id == second)
            .values(created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        )
    assert [e.exam_id for e in store.queue()] == [second, first]
    assert [e.exam_id for e in store.queue(older_than=dt.timedelta(days=30))] == [second]
    assert [e.exam_id for e in store.queue(device_kind="autorefractor")] == [second]
    assert {e.exam_id for e in store.queue(reason="low_confidence")} == {first, second}
    assert store.queue(reason="cross_check") == []
    backlog = {b.device_kind: b.exams for b in store.backlog()}
    assert backlog == {KIND: 1, "autorefractor": 1}


def test_export_writes_a_version_the_training_pipeline_reads(
    store: ReviewStore, layouts: LayoutRegistry, tmp_path: Path
) -> None:
    layout = layouts[KIND]
    out = tmp_path / "crops"
    assert export_crops(store, out)["crops"] == 0
    exam_id, truth = seed_exam(store.results, layout, 6, misread={"k1_d": "40.00"})
    exam = store.exam(exam_id)
    assert exam is not None and exam.image is not None
    view = view_exam(exam.image, layout, Settings())
    readings, _ = review_values(layout, truth)
    store.release(
        exam_id,
        exam.version,
        "ana",
        readings,
        labels_for(layout, readings, truth, exam.record.fields, view.crops),
    )
    manifest = export_crops(store, out)
    assert manifest["crops"] == len(readings) and manifest["corrected"] == 1
    data = CropSet.load(out / "reviewed.npz")
    assert len(data) == len(readings) and data.crops.shape[1:] == (32, 128)
    assert data.texts[data.fields.index("k1_d")] == truth["k1_d"] and set(data.kinds) == {KIND}
    assert np.array_equal(data.crops[0], view.crops[data.fields[0]])
    again = export_crops(store, out)  # nothing new: the same version
    assert again["version"] == manifest["version"] and len(list(out.glob("reviewed-*.npz"))) == 1


def test_marked_corners_must_make_a_screen(store: ReviewStore, layouts: LayoutRegistry) -> None:
    layout = layouts[KIND]
    exam_id, _ = seed_exam(store.results, layout, 7, doubtful=["k1_d"])
    exam = store.exam(exam_id)
    assert exam is not None and exam.image is not None
    view = view_exam(exam.image, layout, Settings())
    h, w = view.original.shape
    with pytest.raises(BadCorners):
        view_exam(exam.image, layout, Settings(), corners=[[0, 0], [w, 0], [w, h]])
    with pytest.raises(BadCorners):  # crossed: not top-left, top-right, bottom-right, bottom-left
        view_exam(exam.image, layout, Settings(), corners=[[0, 0], [w, h], [w, 0], [0, h]])
    marked = view_exam(
        exam.image, layout, Settings(), corners=[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    )
    assert marked.aligned is not None and marked.aligned.shape == (
        layout.template.height,
        layout.template.width,
    )


def test_only_exams_a_person_must_see_keep_their_image(store: ReviewStore, layouts: LayoutRegistry) -> None:
    layout = layouts[KIND]
    accepted, _ = seed_exam(store.results, layout, 8)
    doubtful, _ = seed_exam(store.results, layout, 9, doubtful=["k2_d"])
    kept = {exam_id: store.exam(exam_id).image is not None for exam_id in (accepted, doubtful)}  # type: ignore[union-attr]
    assert kept == {accepted: False, doubtful: True}


def test_a_second_look_records_agreement_and_sends_disagreements_back(
    store: ReviewStore, layouts: LayoutRegistry
) -> None:
    layout = layouts[KIND]
    agreed, truth = seed_exam(store.results, layout, 10, doubtful=["k1_d"])
    differs, truth2 = seed_exam(store.results, layout, 11, doubtful=["k1_d"])
    for exam_id, texts in ((agreed, truth), (differs, truth2)):
        exam = store.exam(exam_id)
        assert exam is not None
        readings, _ = review_values(layout, texts)
        store.release(exam_id, exam.version, "ana", readings, [], second_look=True)
    waiting = store.exam(agreed)
    assert waiting is not None and waiting.second_look and waiting.released_by == "ana"
    assert {e.exam_id for e in store.queue(reason="second_look")} == {agreed, differs}
    with pytest.raises(NotReviewable, match="another reviewer"):
        store.second_look(agreed, waiting.version, "ana", review_values(layout, truth)[0])
    assert store.second_look(agreed, waiting.version, "ben", review_values(layout, truth)[0]) == []
    done = store.exam(agreed)
    assert done is not None and done.record.status == "accepted" and not done.waiting
    other = store.exam(differs)
    assert other is not None
    typed = {**truth2, "k1_d": "40.00" if truth2["k1_d"] != "40.00" else "41.00"}
    assert store.second_look(differs, other.version, "ben", review_values(layout, typed)[0]) == ["k1_d"]
    back = store.exam(differs)
    assert back is not None and back.record.status == "review"
    assert [f for f, _ in back.open_items] == ["k1_d"]
    looks = {(field, outcome): n for _, field, outcome, n in store.second_looks()}
    assert looks[("k1_d", "disagree")] == 1 and looks[("k1_d", "agree")] == 1
    assert sum(n for (_, outcome), n in looks.items() if outcome == "agree") == 2 * len(truth) - 1
    readings, _ = review_values(layout, truth2)  # a third reviewer decides; the release pushes again
    store.release(differs, back.version, "carla", readings, [])
    final = store.exam(differs)
    assert final is not None and final.record.status == "accepted" and not final.waiting
