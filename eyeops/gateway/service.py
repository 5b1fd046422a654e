"""The gateway's work behind the outbox: validate captured files, upload pending ones, exactly once.

Two asyncio loops share one outbox. Exactly-once delivery rests on two facts: an item leaves
`pending` only after the service's answer is committed here, and the service keys exams by the
image's SHA-256, so a re-send after a lost answer or a crash returns the stored exam and adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from eyeops.errors import EyeopsError, PayloadTooLarge
from eyeops.gateway.metrics import GatewayMetrics
from eyeops.gateway.outbox import Item, Outbox
from eyeops.gateway.retry import Backoff, Outcome, classify, parse_retry_after
from eyeops.gateway.validate import Limits, validate_exam_file
from eyeops.ocr.client import OcrClient, OcrReply

log = logging.getLogger("eyeops.gateway")


@dataclass(frozen=True)
class SendPolicy:
    concurrency: int = 4
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    max_server_errors: int = 8
    settle_s: float = 2.0


QUARANTINE_KINDS = (  # first match in the refusal message → the metric's low-cardinality label
    ("extension", "extension"),
    ("dicom", "dicom"),
    ("truncated", "truncated"),
    ("named", "wrong_extension"),
)


def quarantine_kind(exc: EyeopsError) -> str:
    if isinstance(exc, PayloadTooLarge):
        return "too_large"
    text = exc.message.lower()
    return next((kind for word, kind in QUARANTINE_KINDS if word in text), "not_an_image")


class Gateway:
    """Validate and send what the outbox holds. Feed it with a Capturer (watch) or directly (batch)."""

    def __init__(
        self,
        outbox: Outbox,
        client: OcrClient,
        device_id: str,
        limits: Limits,
        quarantine_dir: Path,
        metrics: GatewayMetrics,
        policy: SendPolicy,
        name_pattern: re.Pattern[str] | None = None,
        rng: random.Random | None = None,
        move_quarantined: bool = True,
        refusals: dict[str, EyeopsError] | None = None,
        image_loader: Callable[[Item], bytes] | None = None,
    ) -> None:
        """`move_quarantined` moves a device's invalid file out of its export folder (a batch copies);
        `refusals` are items already known to be invalid (batch members refused unread);
        `image_loader` reads the bytes of items captured without them (a batch's archive members)."""
        self.outbox = outbox
        self.client = client
        self.device_id = device_id
        self.limits = limits
        self.quarantine_dir = quarantine_dir
        self.metrics = metrics
        self.policy = policy
        self.name_pattern = name_pattern
        self.move_quarantined = move_quarantined
        self.refusals = refusals or {}
        self.image_loader = image_loader
        self.backoff = Backoff(policy.retry_base_s, policy.retry_max_s, rng or random.Random())
        self._hold_until = 0.0
        self._server_errors: dict[str, int] = {}
        self._inflight: set[str] = set()
        self._wake: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- wake-ups from other threads (the watcher) -------------------------------------------------
    def wake(self) -> None:
        """Safe from any thread: both loops look at the outbox again now."""
        if self._loop is not None:
            for event in self._wake.values():
                self._loop.call_soon_threadsafe(event.set)

    async def _sleep(self, loop_name: str, seconds: float) -> None:
        event = self._wake[loop_name]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
        event.clear()

    # -- validation -------------------------------------------------------------------------------
    def validate_item(self, item: Item) -> str:
        """Move one received item to pending, quarantined or superseded; or defer it. Returns the state."""
        _yield_to_captures()
        try:
            if item.sha256 in self.refusals:
                raise self.refusals[item.sha256]
            if item.source_size is not None and item.source_size > self.limits.max_bytes:
                raise PayloadTooLarge(
                    f"file is {item.source_size} bytes, over the limit of {self.limits.max_bytes} bytes"
                )
            data = self._bytes_of(item)
            exam = validate_exam_file(item.source, data, self.limits, self.name_pattern)
        except EyeopsError as exc:
            return self._invalid(item, exc)
        identity = {"patient_id": exam.patient_id, "laterality": exam.laterality, "exam_date": exam.exam_date}
        converted = exam.image if exam.image is not data else None  # store only what changed
        self.outbox.mark_pending(item.sha256, converted, identity)
        return "pending"

    def _bytes_of(self, item: Item) -> bytes:
        if item.image is not None:
            return item.image
        stored = self.outbox.image(item.sha256)
        if stored is not None:
            return stored
        if self.image_loader is None:
            raise RuntimeError(f"outbox item {item.sha256} has no image bytes")
        return self.image_loader(item)

    def _invalid(self, item: Item, exc: EyeopsError) -> str:
        source = Path(item.source)
        current = _stat(source)
        captured = (item.source_size, item.source_mtime_ns)
        if current is not None and current != captured:
            self.outbox.finish(
                item.sha256, "superseded", reason=f"file changed after capture ({exc.message})"
            )
            return "superseded"
        if item.source_mtime_ns is not None:
            quiet_since = item.source_mtime_ns / 1e9
            if time.time() - quiet_since < self.policy.settle_s:  # may still be growing: look again
                self.outbox.defer(item.sha256, quiet_since + self.policy.settle_s, exc.message)
                return "received"
        self._quarantine(item, source, self.move_quarantined and current == captured, exc)
        return "quarantined"

    def _quarantine(self, item: Item, source: Path, move_source: bool, exc: EyeopsError) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{item.sha256[:12]}-{source.name}"
        if move_source:
            try:
                shutil.move(str(source), target)
            except OSError as err:  # a read-only export share: keep a copy, leave the device's file
                log.warning(
                    "cannot move exam %s out of the export folder (%s): quarantined a copy",
                    item.sha256[:12],
                    err.strerror,
                )
                if not target.exists():
                    target.write_bytes(self._bytes_of(item))
        elif item.sha256 not in self.refusals:  # refused unread: there are no bytes to keep
            target.write_bytes(self._bytes_of(item))
        reason = f"{exc.message}\nsource: {source}\nsha256: {item.sha256}\ndevice: {self.device_id}\n"
        target.with_name(target.name + ".reason.txt").write_text(reason, encoding="utf-8")
        self.outbox.finish(item.sha256, "quarantined", reason=exc.message, http_status=exc.status_code)
        self.outbox.forget_source(str(source))
        self.metrics.quarantined.labels(reason=quarantine_kind(exc)).inc()
        log.warning("quarantined exam %s: %s", item.sha256[:12], exc.message)

    async def validate_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.time()
            items = self.outbox.due("received", 32, now)
            for item in items:
                try:
                    await asyncio.to_thread(self.validate_item, item)
                except Exception:  # a bug must not stall the queue: look again later
                    log.exception("validating exam %s failed", item.sha256[:12])
                    self.outbox.defer(item.sha256, time.time() + self.policy.retry_max_s, "validation error")
            if items:
                self.wake()
                continue
            next_at = self.outbox.next_due_at("received", now)
            await self._sleep("validate", 1.0 if next_at is None else min(1.0, next_at - now))

    # -- sending ----------------------------------------------------------------------------------
    async def send_item(self, item: Item) -> Outcome:
        image = self._bytes_of(item)
        t0 = time.perf_counter()
        status: int | None
        try:
            reply = await self.client.read_exam(
                image,
                item.device_kind,
                device_id=self.device_id,
                request_id=item.sha256,
                patient_id=item.patient_id,
                laterality=item.laterality,
                exam_date=item.exam_date,
            )
            status, body, retry_after = reply.status_code, reply.body, parse_retry_after(reply.retry_after)
        except httpx.TransportError as exc:
            status, body, retry_after = None, {"error": f"{type(exc).__name__}: {exc}"}, None
        self.metrics.upload_seconds.observe(time.perf_counter() - t0)
        server_errors = self._server_errors.get(item.sha256, 0) + (status is not None and status >= 500)
        self._server_errors[item.sha256] = server_errors
        outcome = classify(status, server_errors, self.policy.max_server_errors)
        self.metrics.uploads.labels(outcome=outcome.value).inc()
        if outcome is Outcome.DONE:
            self.backoff.reset()
            self._server_errors.pop(item.sha256, None)
            result = _exam_of(body)
            self.outbox.finish(item.sha256, "done", http_status=status, result=result)
            self.metrics.last_success.set(time.time())
        elif outcome is Outcome.FAILED:
            self._server_errors.pop(item.sha256, None)
            reason = str(body.get("error") or body.get("detail") or body)[:2000]
            self.outbox.finish(item.sha256, "failed", reason=reason, http_status=status)
            log.warning("exam %s failed with %s: %s", item.sha256[:12], status, reason)
        else:
            delay = self.backoff.next_delay(retry_after)
            self._hold_until = max(self._hold_until, time.time() + delay)
            reason = f"{status or 'no answer'}: {body.get('error', '')}"[:2000]
            self.outbox.defer(item.sha256, time.time() + delay, reason)
            log.info("exam %s: %s; all uploads wait %.1f s", item.sha256[:12], reason, delay)
        return outcome

    async def send_loop(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[Outcome]] = set()

        async def one(item: Item) -> Outcome:
            try:
                return await self.send_item(item)
            finally:
                self._inflight.discard(item.sha256)
                self.wake()

        while not stop.is_set():
            now = time.time()
            free = self.policy.concurrency - len(self._inflight)
            if now >= self._hold_until and free > 0:
                due = [
                    i
                    for i in self.outbox.due("pending", free + len(self._inflight), now, with_image=False)
                    if i.sha256 not in self._inflight
                ][:free]
                for item in due:
                    self._inflight.add(item.sha256)
                    task = asyncio.create_task(one(item))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if due:
                    continue
            # Nothing to start now: sleep until a retry falls due, the hold ends, an upload finishes
            # or a capture wakes us (in-flight items are due "now" and must not spin this loop).
            next_at = self.outbox.next_due_at("pending", now)
            wait = 1.0 if next_at is None or free <= 0 else next_at - now
            await self._sleep("send", min(1.0, max(wait, self._hold_until - now, 0.0)))
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- running ----------------------------------------------------------------------------------
    def update_gauges(self) -> dict[str, int]:
        counts = self.outbox.counts()
        for state, n in counts.items():
            self.metrics.queue.labels(state=state).set(n)
        return counts

    async def run(self, stop: asyncio.Event, until_drained: bool = False) -> None:
        """Run both loops until `stop` is set (or, with until_drained, until nothing is left to send)."""
        self._loop = asyncio.get_running_loop()
        _yield_to_captures()
        self._wake = {"validate": asyncio.Event(), "send": asyncio.Event(), "run": asyncio.Event()}
        loops = [
            asyncio.create_task(self.validate_loop(stop)),
            asyncio.create_task(self.send_loop(stop)),
        ]
        checkpoints = asyncio.create_task(self._checkpoint_loop(stop))
        try:
            while not stop.is_set():
                counts = self.update_gauges()
                if until_drained and counts["received"] + counts["pending"] == 0 and not self._inflight:
                    stop.set()
                    break
                await self._sleep("run", 1.0)  # every upload that finishes wakes this
        finally:
            stop.set()
            self.wake()
            await asyncio.gather(*loops, checkpoints, return_exceptions=True)
            await asyncio.to_thread(self.outbox.checkpoint)
            self.update_gauges()

    async def _checkpoint_loop(self, stop: asyncio.Event, every_s: float = 2.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            try:
                await asyncio.to_thread(self.outbox.checkpoint)
            except Exception:  # a busy database now is fine: the next round folds it in
                log.debug("checkpoint deferred", exc_info=True)


UPLOAD_NICENESS = 5


def _yield_to_captures() -> None:
    """Lower this thread's scheduling priority (Linux: niceness is per thread), so uploading and
    validating never delay a capture, which is the device-facing acknowledgement."""
    if getattr(_thread_state, "lowered", False) or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPLOAD_NICENESS)
    _thread_state.lowered = True


_thread_state = threading.local()


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _exam_of(body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return OcrReply(200, body).exam
    except (KeyError, ValueError, IndexError, TypeError):
        return None
