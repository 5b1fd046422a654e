"""The gateway's loops against a small scripted OCR service (an ASGI app behind httpx's transport)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from eyeops.gateway.metrics import GatewayMetrics
from eyeops.gateway.outbox import Outbox
from eyeops.gateway.service import Gateway, SendPolicy
from eyeops.gateway.validate import Limits
from eyeops.ocr.client import OcrClient
from tests.helpers import noise_png

EXAM = {"exam_id": "x", "status": "accepted", "fields": [], "duplicate": False}


def scripted(answers: list[int | str]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """Answer each request with the next status (or raise for "drop"); the last one repeats."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if answer == "drop":
            raise httpx.ConnectError("connection refused", request=request)
        assert isinstance(answer, int)
        if answer == 200:
            body = {
                "outputs": [{"name": "exam", "datatype": "BYTES", "shape": [1], "data": [json.dumps(EXAM)]}]
            }
            return httpx.Response(200, json=body)
        headers = {"retry-after": "1"} if answer == 503 else {}
        return httpx.Response(answer, json={"error": f"scripted {answer}"}, headers=headers)

    return httpx.MockTransport(handle), seen


def make_gateway(
    tmp_path, transport: httpx.MockTransport, name_pattern: re.Pattern[str] | None = None
) -> tuple[Gateway, Outbox, CollectorRegistry]:
    outbox = Outbox(tmp_path / "outbox.db")
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    client = OcrClient("http://ocr", protocol="v2", token="t0k", transport=transport)
    gateway = Gateway(
        outbox,
        client,
        "dev-1",
        Limits(10_000_000, 10_000_000),
        tmp_path / "quarantine",
        metrics,
        SendPolicy(concurrency=2, retry_base_s=0.01, retry_max_s=0.05),
        name_pattern=name_pattern,
        rng=random.Random(0),
    )
    return gateway, outbox, registry


def drop(outbox: Outbox, tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    old = time.time() - 60  # written a minute ago: complete, past any settle time
    os.utime(path, (old, old))
    st = path.stat()
    digest = hashlib.sha256(data).hexdigest()
    outbox.capture(str(path), "autorefractor", data, digest, st.st_size, st.st_mtime_ns)
    return digest


def drain(gateway: Gateway, timeout: float = 20) -> None:
    asyncio.run(asyncio.wait_for(gateway.run(asyncio.Event(), until_drained=True), timeout))


@pytest.mark.parametrize("answers", [[200], [503, "drop", 502, 200], ["drop", "drop", 200]])
def test_transient_failures_are_retried_until_done(tmp_path, answers):
    transport, seen = scripted(answers)
    gateway, outbox, _ = make_gateway(tmp_path, transport)
    gateway.backoff.max_s = 0.05
    sha = drop(outbox, tmp_path, "a.png", noise_png(20, 20))
    drain(gateway)
    row = next(outbox.results())
    assert row["state"] == "done" and row["result"] == EXAM
    assert len(seen) == len(answers)
    request = seen[-1]
    assert request.headers["authorization"] == "Bearer t0k"
    assert request.headers["ce-id"] == sha and request.headers["x-eyeops-device-id"] == "dev-1"
    assert json.loads(request.content)["parameters"]["device_kind"] == "autorefractor"


def test_identity_from_the_file_name_travels_with_the_exam(tmp_path):
    """Patient id, laterality and exam date (as an ISO date) reach the service, which checks them
    against the header it reads; none of them is kept back in the outbox."""
    transport, seen = scripted([200])
    pattern = re.compile(r"^(?P<patient_id>P\d{7})_(?P<laterality>[RL])_(?P<exam_date>\d{8})")
    gateway, outbox, _ = make_gateway(tmp_path, transport, pattern)
    drop(outbox, tmp_path, "P0012345_L_20260314_scan.png", noise_png(20, 20, seed=5))
    drain(gateway)
    parameters = json.loads(seen[0].content)["parameters"]
    assert {k: parameters[k] for k in ("patient_id", "laterality", "exam_date")} == {
        "patient_id": "P0012345",
        "laterality": "OS",
        "exam_date": "2026-03-14",
    }


def test_retry_after_holds_every_upload(tmp_path):
    transport, seen = scripted([503, 200])
    gateway, outbox, _ = make_gateway(tmp_path, transport)
    drop(outbox, tmp_path, "a.png", noise_png(20, 20, seed=1))
    loop = asyncio.new_event_loop()
    started = loop.time()
    loop.run_until_complete(gateway.run(asyncio.Event(), until_drained=True))
    assert loop.time() - started >= 1.0  # the scripted Retry-After: 1
    loop.close()
    assert len(seen) == 2


@pytest.mark.parametrize("code", [400, 401, 413, 422])
def test_refusals_fail_once_with_the_server_message(tmp_path, code):
    transport, seen = scripted([code])
    gateway, outbox, registry = make_gateway(tmp_path, transport)
    drop(outbox, tmp_path, "a.png", noise_png(20, 20, seed=2))
    drain(gateway)
    row = next(outbox.results())
    assert (row["state"], row["http_status"], row["reason"]) == ("failed", code, f"scripted {code}")
    assert len(seen) == 1
    assert registry.get_sample_value("eyeops_gateway_uploads_total", {"outcome": "failed"}) == 1


def test_invalid_files_are_quarantined_with_a_reason_and_do_not_block(tmp_path):
    transport, seen = scripted([200])
    gateway, outbox, _ = make_gateway(tmp_path, transport)
    good = drop(outbox, tmp_path, "good.png", noise_png(20, 20, seed=3))
    drop(outbox, tmp_path, "broken.png", noise_png(50, 50)[:300])
    drop(outbox, tmp_path, "notes.pdf", b"%PDF-1.7 ...")
    drain(gateway)
    states = {r["source"].rsplit("/", 1)[1]: r["state"] for r in outbox.results()}
    assert states == {"good.png": "done", "broken.png": "quarantined", "notes.pdf": "quarantined"}
    assert len(seen) == 1 and seen[0].headers["ce-id"] == good
    moved = sorted(p.name for p in (tmp_path / "quarantine").iterdir())
    assert [n for n in moved if n.endswith(".reason.txt")] == [
        n + ".reason.txt" for n in moved if not n.endswith(".reason.txt")
    ]
    assert not (tmp_path / "broken.png").exists()  # moved out of the export folder
    reason = next((tmp_path / "quarantine").glob("*broken.png.reason.txt")).read_text()
    assert "truncated" in reason


def test_an_invalid_file_on_a_read_only_share_is_quarantined_as_a_copy(tmp_path, monkeypatch):
    """Many devices export to a share the gateway may only read: the file cannot be moved away,
    so a copy goes to quarantine, the original stays, and the gateway goes on (it crashed before)."""
    import errno
    import shutil

    def read_only(src: str, dst: object) -> None:
        shutil.copy2(src, dst)  # what shutil.move does across devices, before its unlink fails
        raise OSError(errno.EROFS, "Read-only file system", src)

    monkeypatch.setattr("eyeops.gateway.service.shutil.move", read_only)
    transport, seen = scripted([200])
    gateway, outbox, _ = make_gateway(tmp_path, transport)
    drop(outbox, tmp_path, "broken.png", noise_png(50, 50)[:300])
    good = drop(outbox, tmp_path, "good.png", noise_png(20, 20, seed=3))
    drain(gateway)
    states = {r["source"].rsplit("/", 1)[1]: r["state"] for r in outbox.results()}
    assert states == {"good.png": "done", "broken.png": "quarantined"}
    assert len(seen) == 1 and seen[0].headers["ce-id"] == good
    assert (tmp_path / "broken.png").exists()  # the device's file is left where it was
    kept = next((tmp_path / "quarantine").glob("*-broken.png"))
    assert kept.read_bytes() == (tmp_path / "broken.png").read_bytes()


def test_concurrency_is_bounded(tmp_path):
    active, peak = 0, 0

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        body = json.dumps({"predictions": [EXAM]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    gateway, outbox, _ = make_gateway(tmp_path, httpx.ASGITransport(app=app))  # type: ignore[arg-type]
    for i in range(10):
        drop(outbox, tmp_path, f"{i}.png", noise_png(8, 8, seed=10 + i))
    drain(gateway)
    assert outbox.counts()["done"] == 10
    assert peak == 2


def test_logs_never_name_an_export_file(tmp_path, caplog):
    """Device software writes the patient's id into file names; the gateway's log names exams by
    hash instead (issue 28, item 10)."""
    import logging

    from eyeops.gateway.watch import file_ref

    transport, _ = scripted([422, 503, 200])
    gateway, outbox, _ = make_gateway(tmp_path, transport)
    caplog.set_level(logging.DEBUG, logger="eyeops.gateway")
    drop(outbox, tmp_path, "P7654321_OD_refused.png", noise_png(20, 20, seed=4))
    drop(outbox, tmp_path, "P7654321_OS_broken.png", noise_png(50, 50)[:300])
    drop(outbox, tmp_path, "P7654321_OS_retried.png", noise_png(20, 20, seed=5))
    drain(gateway)
    assert caplog.records and "P7654321" not in caplog.text
    ref = file_ref(tmp_path / "P7654321_OD.png")
    assert "P7654321" not in ref and ref.startswith(str(tmp_path))
