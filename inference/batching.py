"""Adaptive batching for a model server: the rows of concurrent requests go through the model in
one call.

A request's rows wait while the model is busy with the call before; when it finishes, everything
that arrived meanwhile goes together in the next call (up to `max_rows`). There is no timer: a
lone request goes at once, so batching adds no latency at low load and grows with the load, where a
model call over many rows costs far less than one per request (the lens model: one eye 2.1 ms of
CPU, 64 eyes 18 ms; docs/lens.md).

Each request gets the batch's result and the slice of it that holds its rows. The model must answer
every row on its own (no row's answer may depend on another's); the lens predictor's test checks
that batched answers equal single ones bit for bit. When a call over several requests raises, each
request is run alone, so an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Row = TypeVar("Row")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Share(Generic[Result]):
    """A request's part of a batch: `result` over the batch's rows, this request's at start:stop."""

    result: Result
    start: int
    stop: int


class RowBatcher(Generic[Row, Result]):
    def __init__(self, run: Callable[[list[Row]], Result], max_rows: int = 256) -> None:
        """`run` takes the rows of one or more requests, in order, and answers them all; it runs in
        the event loop's executor, so the loop keeps taking requests while it works."""
        self.run = run
        self.max_rows = max_rows
        self._pending: deque[tuple[list[Row], asyncio.Future[Share[Result]]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.calls = 0  # model calls made, for tests and benchmarks

    async def __call__(self, rows: Sequence[Row]) -> Share[Result]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # first use, or a new loop (a test's asyncio.run): the worker lives on the serving loop
            self._loop, self._wake, self._pending = loop, asyncio.Event(), deque()
            self._worker = loop.create_task(self._work(), name="row-batcher")
        assert self._wake is not None
        future: asyncio.Future[Share[Result]] = loop.create_future()
        self._pending.append((list(rows), future))
        self._wake.set()
        return await future

    def _take(self) -> list[tuple[list[Row], asyncio.Future[Share[Result]]]]:
        """The next batch: waiting requests in order, at least one, at most max_rows rows."""
        batch = [self._pending.popleft()]
        rows = len(batch[0][0])
        while self._pending and rows + len(self._pending[0][0]) <= self.max_rows:
            rows += len(self._pending[0][0])
            batch.append(self._pending.popleft())
        return [(r, f) for r, f in batch if not f.done()]  # a caller gone (cancelled) is dropped

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._take()
                if batch:
                    await self._answer(batch)

    async def _answer(self, batch: list[tuple[list[Row], asyncio.Future[Share[Result]]]]) -> None:
        rows = [row for request, _ in batch for row in request]
        self.calls += 1
        try:
            result = await asyncio.to_thread(self.run, rows)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for request, future in batch:  # alone, so the error reaches only its own request
                await self._answer([(request, future)])
            return
        start = 0
        for request, future in batch:
            _settle(future, Share(result, start, start + len(request)))
            start += len(request)


def _settle(future: asyncio.Future[Share[Result]], outcome: Share[Result] | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
