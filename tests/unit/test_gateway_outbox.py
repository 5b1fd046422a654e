from __future__ import annotations

import hashlib

import pytest

from eyeops.gateway.outbox import Outbox
from eyeops.gateway.retry import Backoff, Outcome, classify, parse_retry_after


def put(outbox: Outbox, name: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    outbox.capture(name, "autorefractor", data, digest, len(data), 1)
    return digest


def test_capture_is_idempotent_by_image_hash_and_durable(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    first = put(outbox, "/x/a.png", b"image-1")
    again = outbox.capture("/x/b.png", "autorefractor", b"image-1", first, 7, 2)
    assert not again.new
    assert outbox.counts()["received"] == 1
    assert outbox.known_source("/x/b.png", 7, 2) and not outbox.known_source("/x/b.png", 7, 3)
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [i.sha256 for i in reopened.due("received", 10)] == [first]


def test_states_status_and_requeue(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    a, b, c = (put(outbox, f"/x/{n}.png", n.encode()) for n in ("a", "b", "c"))
    for sha in (a, b, c):
        outbox.mark_pending(sha, b"png", {"patient_id": "P0000001"})
    outbox.defer(c, until=1e12, reason="503: busy")
    assert [i.sha256 for i in outbox.due("pending", 10)] == [a, b]
    outbox.finish(a, "done", http_status=200, result={"status": "accepted", "fields": []})
    outbox.finish(b, "failed", reason="unknown device token", http_status=401)
    status = outbox.status()
    assert status["queue_depth"] == 1 and status["retrying"] == 1
    assert status["counts"]["done"] == 1 and status["last_success_age_s"] is not None
    assert status["failures"] == [
        {"state": "failed", "http_status": 401, "reason": "unknown device token", "count": 1}
    ]
    rows = {r["sha256"]: r for r in outbox.results()}
    assert rows[a]["result"] == {"status": "accepted", "fields": []}
    assert outbox.image(a) is None and outbox.image(b) == b"png"  # done drops its bytes, failed keeps them
    assert outbox.requeue_failed() == 1
    assert outbox.counts()["pending"] == 2
    with pytest.raises(ValueError):
        outbox.finish(a, "pending")


@pytest.mark.parametrize(
    ("status", "server_errors", "expected"),
    [
        (200, 0, Outcome.DONE),
        (None, 0, Outcome.RETRY),
        (503, 0, Outcome.RETRY),
        (429, 0, Outcome.RETRY),
        (500, 2, Outcome.RETRY),
        (500, 8, Outcome.FAILED),
        (400, 0, Outcome.FAILED),
        (401, 0, Outcome.FAILED),
        (413, 0, Outcome.FAILED),
        (422, 0, Outcome.FAILED),
    ],
)
def test_classify(status, server_errors, expected):
    assert classify(status, server_errors, max_server_errors=8) is expected


def test_backoff_grows_caps_and_honours_retry_after():
    import random

    backoff = Backoff(base_s=0.5, max_s=4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    assert 0.25 <= delays[0] <= 0.5 and all(2.0 <= d <= 4.0 for d in delays[3:])
    assert backoff.next_delay(retry_after_s=10) >= 10
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_status_command_prints_queue_and_failures(tmp_path, capsys):
    import json

    from eyeops.cli import main

    outbox = Outbox(tmp_path / "outbox.db")
    sha = put(outbox, "/x/a.png", b"a")
    outbox.finish(sha, "failed", reason="unknown device token", http_status=401)
    put(outbox, "/x/b.png", b"b")
    outbox.close()
    assert main(["gateway", "status", "--state-dir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["queue_depth"] == 1 and status["failures"][0]["http_status"] == 401
    assert main(["gateway", "status", "--state-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "queue depth:       1" in text and "401  unknown device token" in text
    assert main(["gateway", "retry", "--state-dir", str(tmp_path)]) == 0
    assert "1 failed items queued again" in capsys.readouterr().out
