"""The lens features through real Feast: historical (point-in-time) and online agree for the same
eye and time on the local profile (SQLite), with a real Redis online store, and on the cluster
profile (Redis online, registry and offline store in a real PostgreSQL); a pushed exam is online
at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from eyeops.features import repository as fs
from eyeops.features.offline_log import postgres_engine
from eyeops.features.online import FeastOnlineStore
from eyeops.features.views import VIEWS
from eyeops.lens.cohort import simulate_cohort
from eyeops.lens.features import FEATURES, feature_matrix
from tests.conftest import create_pg_database, drop_pg_database

REDIS_DB = 11  # a database of its own on the machine's Redis, emptied before each run


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[object, pd.DataFrame, pd.DataFrame]]:
    """sqlite: the local profile. redis: Redis online. cluster: Redis online, registry and offline
    store in PostgreSQL (a database of its own, dropped afterwards)."""
    current = simulate_cohort(60, seed=31)
    # Recent exams, so that every eye is inside the views' TTL today (the offline join drops the rest).
    days = np.random.default_rng(0).integers(1, 300, len(current))
    current["exam_date"] = pd.Timestamp.now().normalize() - pd.to_timedelta(days, unit="D")
    earlier = current.copy()
    earlier["exam_date"] = current["exam_date"] - pd.Timedelta(days=400)
    earlier["wtw_mm"] = current["wtw_mm"] - 0.3  # an older, different measurement of the same eyes
    online = "sqlite" if request.param == "sqlite" else "redis"
    if online == "redis":
        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    pg_name, pg_url = create_pg_database() if request.param == "cluster" else (None, None)
    try:
        if pg_url is not None:
            monkeypatch.setenv("EYEOPS_FEAST_OFFLINE", "postgres")
        repo = fs.prepare_repo(tmp_path / "repo", online, f"127.0.0.1:6379,db={REDIS_DB}", pg_url)
        fs.write_offline_data(pd.concat([earlier, current], ignore_index=True), repo, pg_url)
        feature_store = fs.open_store(repo)
        fs.apply_and_materialize(feature_store, repo)
        yield feature_store, current, earlier
    finally:
        if pg_name is not None:
            drop_pg_database(pg_name)


def by_eye(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("eye_id").sort_index()


def test_historical_equals_online_for_the_same_eye_and_time(store):
    feature_store, current, _ = store
    eyes = list(current["eye_id"])
    online = by_eye(fs.online_features(feature_store, eyes))
    now = pd.DataFrame({"eye_id": eyes, "event_timestamp": pd.Timestamp.now(tz="UTC")})
    historical = by_eye(fs.historical_features(feature_store, now).drop(columns=["event_timestamp"]))
    columns = [*FEATURES, "sex"]
    pd.testing.assert_frame_equal(online[columns], historical[columns], check_dtype=False, check_like=True)
    # and the model sees the same matrix either way (the on-demand view is the training code)
    assert np.allclose(feature_matrix(online), feature_matrix(historical))
    assert np.allclose(online["wtw_mm"], by_eye(current)["wtw_mm"])


def test_historical_retrieval_is_point_in_time(store):
    feature_store, current, earlier = store
    between = current["exam_date"] - pd.Timedelta(days=200)
    entities = pd.DataFrame({"eye_id": current["eye_id"], "event_timestamp": between.dt.tz_localize("UTC")})
    got = by_eye(fs.historical_features(feature_store, entities))
    assert np.allclose(got["wtw_mm"], by_eye(earlier)["wtw_mm"])  # the later exam is not visible yet
    assert np.allclose(got["ata_minus_wtw_mm"], by_eye(earlier)["ata_mm"] - by_eye(earlier)["wtw_mm"])
    too_late = pd.DataFrame(
        {
            "eye_id": current["eye_id"],
            "event_timestamp": (current["exam_date"] + pd.Timedelta(days=3000)).dt.tz_localize("UTC"),
        }
    )
    stale = fs.historical_features(feature_store, too_late)
    assert stale.empty or stale["wtw_mm"].isna().all()  # beyond the view's TTL nothing is returned


def test_a_pushed_exam_is_online_at_once(store):
    feature_store, current, _ = store
    eye = current["eye_id"].iloc[0]
    values = {c: float(current[c].iloc[0]) for c in VIEWS["biometry"][1]}
    values["cct_um"] = int(values["cct_um"])
    values["wtw_mm"] = 12.34
    FeastOnlineStore(feature_store).push("biometry", [(eye, values, dt.datetime.now(dt.UTC))])
    online = by_eye(fs.online_features(feature_store, [eye]))
    assert online.loc[eye, "wtw_mm"] == pytest.approx(12.34)
    later = pd.DataFrame(
        {"eye_id": [eye], "event_timestamp": [pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=5)]}
    )
    assert by_eye(fs.historical_features(feature_store, later)).loc[eye, "wtw_mm"] == pytest.approx(12.34)


def test_the_ocr_sink_makes_an_accepted_exam_online(store):
    from eyeops.exams import ExamRecord
    from eyeops.features.ingest import ExamFeatureSink
    from eyeops.fields import FieldReading

    feature_store, _, _ = store
    values = {"ata_mm": 12.05, "clr_um": 310.0, "sts_mm": 11.9}
    fields = [FieldReading(n, str(v), v, None, 0.99, "accepted") for n, v in values.items()]
    header = {"patient_id": "P7777777", "laterality": "OD", "exam_date": dt.date.today().isoformat()}
    record = ExamRecord("c" * 64, "anterior_segment_oct", "accepted", fields, header=header)
    assert ExamFeatureSink(FeastOnlineStore(feature_store))(record) is not None
    online = by_eye(FeastOnlineStore(feature_store).read_frame(["P7777777-OD"]))
    assert online.loc["P7777777-OD", "ata_mm"] == pytest.approx(12.05)
    assert online.loc["P7777777-OD", "clr_um"] == 310


def test_an_exam_back_filled_later_is_not_known_before_it_was_written(store):
    feature_store, current, earlier = store
    eye = current["eye_id"].iloc[1]
    surgery = pd.Timestamp(current["exam_date"].iloc[1]) - pd.Timedelta(days=50)  # between the two exams
    values = {c: float(current[c].iloc[1]) for c in VIEWS["biometry"][1]}
    values["cct_um"] = int(values["cct_um"])
    values["wtw_mm"] = 9.87
    # An exam made 100 days before that surgery, read and written only today (a back-fill).
    made = (surgery - pd.Timedelta(days=100)).tz_localize("UTC").to_pydatetime()
    FeastOnlineStore(feature_store).push("biometry", [(eye, values, made)])
    before = pd.DataFrame(
        {"eye_id": [eye], "event_timestamp": [surgery.tz_localize("UTC") - pd.Timedelta(days=1)]}
    )
    got = by_eye(fs.historical_features(feature_store, before))
    # Feast alone would take the back-filled 9.87 (the latest exam dated before the surgery); what
    # was known then is the earlier exam.
    assert got.loc[eye, "wtw_mm"] == pytest.approx(float(by_eye(earlier).loc[eye, "wtw_mm"]))
    expected_gap = float(by_eye(earlier).loc[eye, "ata_mm"]) - float(by_eye(earlier).loc[eye, "wtw_mm"])
    assert got.loc[eye, "ata_minus_wtw_mm"] == pytest.approx(expected_gap)
    now = pd.DataFrame({"eye_id": [eye], "event_timestamp": [pd.Timestamp.now(tz="UTC")]})
    assert by_eye(fs.historical_features(feature_store, now)).loc[eye, "wtw_mm"] == pytest.approx(
        float(by_eye(current).loc[eye, "wtw_mm"])
    )  # today the current exam is the latest, and known


def test_the_ocr_sink_pushes_many_exams_at_once_and_the_later_one_of_an_eye_stays_online(store):
    from eyeops.exams import ExamRecord
    from eyeops.features.ingest import ExamFeatureSink
    from eyeops.features.offline_log import offline_file
    from eyeops.fields import FieldReading

    feature_store, _, _ = store
    today = dt.date.today().isoformat()

    def exam(n: int, eye: str, ata: float, kind: str = "anterior_segment_oct") -> ExamRecord:
        values = {"ata_mm": ata, "clr_um": 300.0 + n, "sts_mm": 11.5}
        fields = [FieldReading(k, str(v), v, None, 0.99, "accepted") for k, v in values.items()]
        header = {"patient_id": eye, "laterality": "OS", "exam_date": today}
        return ExamRecord(f"{n:064d}", kind, "accepted", fields, header=header)

    records = [exam(1, "P5550001", 11.8), exam(2, "P5550002", 12.2), exam(3, "P5550001", 11.9)]
    records.append(exam(4, "P5550003", 12.0, kind="noncontact_tonometer"))  # feeds no view

    def offline_rows() -> int:
        config = feature_store.config.offline_store
        if getattr(config, "type", "file") != "postgres":
            return len(pd.read_parquet(offline_file(feature_store, "anterior_segment")))
        engine = postgres_engine(config)
        try:
            with engine.connect() as connection:
                return int(
                    connection.exec_driver_sql("SELECT count(*) FROM lens_anterior_segment").scalar_one()
                )
        finally:
            engine.dispose()

    before = offline_rows()
    sink = ExamFeatureSink(FeastOnlineStore(feature_store))
    pushes = sink.many(records)
    assert [p is not None for p in pushes] == [True, True, True, False]
    online = by_eye(FeastOnlineStore(feature_store).read_frame(["P5550001-OS", "P5550002-OS"]))
    assert online.loc["P5550001-OS", "ata_mm"] == pytest.approx(11.9)  # the later of its two exams
    assert online.loc["P5550002-OS", "ata_mm"] == pytest.approx(12.2)
    assert offline_rows() == before + 3
    if getattr(feature_store.config.offline_store, "type", "file") != "postgres":
        sink.many(records)  # a retried batch appends nothing twice to the file log
        assert offline_rows() == before + 3
