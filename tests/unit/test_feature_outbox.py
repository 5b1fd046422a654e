"""The feature outbox: queued with the exam, drained by one writer thread, kept when a push fails."""

from __future__ import annotations

import threading
import time

import pytest

from eyeops.db import ResultsStore, migrate
from eyeops.db.feature_outbox import FeatureOutboxWriter
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading

pytestmark = pytest.mark.unit
LOG = {"request_id": "r", "device_kind": "optical_biometer", "http_status": 200}


def record(n: int, status: str = "accepted") -> ExamRecord:
    fields = [FieldReading("al_mm", "23.51", 23.51, "mm", 0.99, "accepted")]
    return ExamRecord(f"{n:064d}", "optical_biometer", status, fields)


def store_at(url: str) -> ResultsStore:
    migrate(url)
    return ResultsStore.from_url(url)


def test_only_accepted_exams_saved_with_pushes_are_queued(sqlite_url: str) -> None:
    store = store_at(sqlite_url)
    store.save_exam(record(1), LOG, push_features=True)
    store.save_exam(record(2, "review"), LOG, push_features=True)
    store.save_exam(record(3), LOG)  # a service without a feature store queues nothing
    assert not store.save_exam(record(1), LOG, push_features=True)  # a duplicate queues nothing more
    assert store.feature_push_counts() == {"queued": 1, "pushed": 0}


def test_the_writer_thread_drains_what_an_earlier_process_left_and_each_new_push(sqlite_url: str) -> None:
    store = store_at(sqlite_url)
    for n in range(5):  # queued while no writer ran (a crash, a restart)
        store.save_exam(record(n), LOG, push_features=True)
    pushed: list[str] = []
    active = [0]
    overlapped = threading.Event()

    def sink(exam: ExamRecord) -> object:
        active[0] += 1
        if active[0] > 1:
            overlapped.set()
        time.sleep(0.01)
        pushed.append(exam.exam_id)
        active[0] -= 1
        return exam.exam_id

    writer = FeatureOutboxWriter(store, sink, poll_s=30).start()
    try:
        for n in range(5, 25):
            store.save_exam(record(n), LOG, push_features=True)
            writer.notify()
        deadline = time.monotonic() + 20
        while store.feature_push_counts()["queued"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.stop()
    assert pushed == [f"{n:064d}" for n in range(25)]  # every push once, in queue order
    assert not overlapped.is_set()
    assert store.feature_push_counts() == {"queued": 0, "pushed": 25}


def test_backoff_grows_and_is_capped() -> None:
    writer = FeatureOutboxWriter(ResultsStore.from_url("sqlite://"), lambda _e: None, max_backoff_s=60)
    assert [writer.backoff_s(a) for a in (1, 2, 3, 4, 10)] == [1, 2, 4, 8, 60]
