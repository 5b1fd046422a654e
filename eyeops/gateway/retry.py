"""What to do with each answer of the OCR service, and how long to wait before trying again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

# Answers that will not change by sending the same bytes again: bad input, bad token, too large.
RETRYABLE_4XX = frozenset({408, 425, 429})


class Outcome(Enum):
    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"


def classify(status_code: int | None, server_errors: int, max_server_errors: int) -> Outcome:
    """`status_code` None means the request never got an answer (refused, reset, timed out)."""
    if status_code is None:
        return Outcome.RETRY
    if 200 <= status_code < 300:
        return Outcome.DONE
    if status_code in RETRYABLE_4XX or status_code in (502, 503, 504):
        return Outcome.RETRY
    if status_code >= 500:  # an unexpected server error: retry, but not forever
        return Outcome.RETRY if server_errors < max_server_errors else Outcome.FAILED
    return Outcome.FAILED


@dataclass
class Backoff:
    """Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter",
    2015), shared by all uploads of a gateway so an outage pauses the queue instead of walking it."""

    base_s: float
    max_s: float
    rng: random.Random
    failures: int = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """Delay after one more consecutive failure. A Retry-After is honoured as a minimum."""
        self.failures += 1
        ceiling = min(self.max_s, self.base_s * 2 ** (self.failures - 1))
        delay = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s + self.rng.uniform(0, 0.1 * retry_after_s))
        return delay

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import datetime as dt

    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
