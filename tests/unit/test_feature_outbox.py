"""The feature outbox: queued with the exam, drained by one writer thread, kept when a push fails."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence

from eyeops.db import ResultsStore, migrate
from eyeops.db.schema import Exam
from eyeops.exams import ExamRecord
from eyeops.features.outbox import FeatureOutboxWriter
from eyeops.fields import FieldReading

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


class Batching:
    """A sink that takes many exams at once (as ExamFeatureSink does), failing on request."""

    def __init__(self, fail_many: bool = False, fail_one: str | None = None) -> None:
        self.fail_many, self.fail_one = fail_many, fail_one
        self.batches: list[list[str]] = []
        self.single: list[str] = []

    def __call__(self, exam: ExamRecord) -> object:
        if exam.exam_id == self.fail_one:
            raise RuntimeError("feature store refused")
        self.single.append(exam.exam_id)
        return exam.exam_id

    def many(self, records: Sequence[ExamRecord]) -> list[object]:
        if self.fail_many:
            raise RuntimeError("feature store refused")
        self.batches.append([r.exam_id for r in records])
        return [r.exam_id for r in records]


def test_a_batching_sink_takes_every_due_exam_in_one_call(sqlite_url: str) -> None:
    store = store_at(sqlite_url)
    for n in range(7):
        store.save_exam(record(n), LOG, push_features=True)
    sink = Batching()
    outcomes: list[str] = []
    writer = FeatureOutboxWriter(store, sink, on_outcome=outcomes.append)
    assert writer.drain(limit=5) == 5
    assert writer.drain(limit=5) == 2
    assert sink.batches == [[f"{n:064d}" for n in range(5)], [f"{n:064d}" for n in (5, 6)]]
    assert sink.single == [] and outcomes == ["pushed"] * 7
    assert store.feature_push_counts() == {"queued": 0, "pushed": 7}


def test_when_the_batch_fails_each_exam_goes_alone_and_only_the_failing_one_waits(sqlite_url: str) -> None:
    store = store_at(sqlite_url)
    for n in range(4):
        store.save_exam(record(n), LOG, push_features=True)
    bad = f"{2:064d}"
    sink = Batching(fail_many=True, fail_one=bad)
    writer = FeatureOutboxWriter(store, sink)
    assert writer.drain() == 3
    assert sink.single == [f"{n:064d}" for n in (0, 1, 3)]
    assert store.feature_push_counts() == {"queued": 1, "pushed": 3}
    assert writer.drain() == 0  # the failed push waits for its backoff
    (_, exam_id, attempts), *_ = store.due_feature_pushes(writer.clock() + dt.timedelta(seconds=2))
    assert (exam_id, attempts) == (bad, 1)


def test_a_deleted_exam_is_not_pushed_and_leaves_nothing_queued(sqlite_url: str) -> None:
    store = store_at(sqlite_url)
    for n in range(3):
        store.save_exam(record(n), LOG, push_features=True)
    with store.session() as s:
        s.delete(s.get(Exam, f"{1:064d}"))
    sink = Batching()
    assert FeatureOutboxWriter(store, sink).drain() == 2
    assert sink.batches == [[f"{0:064d}", f"{2:064d}"]]
    assert store.feature_push_counts() == {"queued": 0, "pushed": 2}
