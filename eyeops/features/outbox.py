"""The one serialized writer of feature pushes, fed by the durable queue in the results database.

The OCR service queues an accepted exam's push in the exam's own transaction
(`ResultsStore.save_exam(..., push_features=True)`); this writer, one thread per process, takes the
due pushes oldest first and hands the stored exams to a sink
(`eyeops.features.ingest.ExamFeatureSink`). A push is marked done only after the sink returned; one
that raised is tried again later with exponential backoff. So a push is never lost (a crash leaves
it queued, the next start drains it), never runs concurrently with another write from this process,
and a failing feature store never fails an exam.

A sink with a `many` method takes every due exam of a drain in one call (one Feast push and one
offline append per view instead of one per exam: under 32 clients the per-exam pushes cost the OCR
service about a fifth of its CPU). When that call raises, the same exams go one at a time, so a
push that fails keeps its own backoff and the others are not held back by it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from eyeops.db.store import ResultsStore
from eyeops.errors import DatabaseUnavailable
from eyeops.exams import ExamRecord

log = logging.getLogger("eyeops.features")

Sink = Callable[[ExamRecord], object]


Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FeatureOutboxWriter:
    """Drains the feature outbox through `sink`, one drain at a time; after a drain that pushed,
    it waits `linger_s` so the next one takes the exams queued meanwhile together.

    `on_outcome` is called with "pushed" (the sink made a push), "skipped" (the exam feeds no
    feature view), or "failed" (the sink raised; the push stays queued).
    """

    def __init__(
        self,
        store: ResultsStore,
        sink: Sink,
        *,
        on_outcome: Callable[[str], None] | None = None,
        poll_s: float = 2.0,
        linger_s: float = 0.5,
        max_backoff_s: float = 300.0,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.sink = sink
        self.on_outcome = on_outcome or (lambda _outcome: None)
        self.poll_s = poll_s
        self.linger_s = linger_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one drain at a time, also when a test calls drain() itself
        self._thread: threading.Thread | None = None

    def backoff_s(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed tries: 1, 2, 4, ... capped."""
        return float(min(self.max_backoff_s, 2 ** max(0, attempts - 1)))

    def drain(self, limit: int = 100) -> int:
        """Push every due queued exam once; returns how many pushes the sink took."""
        with self._lock:
            due = self.store.due_feature_pushes(self.clock(), limit)
            if not due:
                return 0
            records = self.store.get_exams([exam_id for _, exam_id, _ in due])
            gone = [push_id for push_id, exam_id, _ in due if exam_id not in records]
            if gone:  # the exams were deleted: nothing left to push
                self.store.feature_pushes_done(gone, self.clock())
            due = [d for d in due if d[1] in records]
            many = getattr(self.sink, "many", None)
            if many is not None and len(due) > 1:
                try:
                    outcomes = list(many([records[exam_id] for _, exam_id, _ in due]))
                except Exception as exc:  # one at a time below: the failing push keeps its backoff
                    log.warning("feature push of %d exams at once failed (%s); one at a time", len(due), exc)
                else:
                    self.store.feature_pushes_done([push_id for push_id, _, _ in due], self.clock())
                    for made in outcomes:
                        self.on_outcome("pushed" if made is not None else "skipped")
                    return len(due)
            return sum(
                self._push_one(push_id, records[exam_id], attempts) for push_id, exam_id, attempts in due
            )

    def _push_one(self, push_id: int, record: ExamRecord, attempts: int) -> int:
        try:
            made = self.sink(record)
        except Exception as exc:  # a feature-store failure must not stop the queue
            retry = self.clock() + dt.timedelta(seconds=self.backoff_s(attempts + 1))
            log.warning(
                "feature push of exam %s failed (attempt %d, next at %s): %s",
                record.exam_id[:12],
                attempts + 1,
                retry.isoformat(timespec="seconds"),
                type(exc).__name__,
            )
            self.store.feature_push_failed(push_id, f"{type(exc).__name__}: {exc}", retry)
            self.on_outcome("failed")
            return 0
        self.store.feature_pushes_done([push_id], self.clock())
        self.on_outcome("pushed" if made is not None else "skipped")
        return 1

    def notify(self) -> None:
        """A push was queued: wake the writer now instead of at its next poll."""
        self._wake.set()

    def start(self) -> FeatureOutboxWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feature-outbox", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the push in hand and stop; what is still queued stays queued for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pushed = self.drain()
            except DatabaseUnavailable as exc:
                log.warning("feature outbox paused: %s", exc.message)
                pushed = 0
            except Exception:
                log.exception("feature outbox writer failed; retrying")
                pushed = 0
            if pushed == 0:
                self._wake.wait(self.poll_s)
                self._wake.clear()
            elif self.linger_s > 0:
                # let the next pushes gather: one Feast push of many exams costs about what one
                # of a single exam does (a busy service's exams reach the store 0.5 s later)
                self._stop.wait(self.linger_s)
