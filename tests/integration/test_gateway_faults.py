"""The faults a gateway must survive, with real processes: tritonserver, the OCR transformer under
kserve.ModelServer on PostgreSQL, and `eyeops gateway watch` processes killed and restarted."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from eyeops.auth import read_token_file
from eyeops.gateway.outbox import Outbox
from eyeops.imageio import file_extension
from eyeops.ocr.client import OcrClient
from eyeops.settings import Settings
from eyeops.stack.devices import SimulatedDevice, gateway_process, provision_devices
from eyeops.stack.local import LocalStack
from eyeops.stack.process import ManagedProcess, free_port, free_triton_port
from eyeops.synth.exams import synthesize_exams, tagged_copy
from tests.conftest import PG_ADMIN, create_pg_database, drop_pg_database
from tests.helpers import noise_png

pytestmark = pytest.mark.slow
KIND = "specular_microscope"
SERVICE_LIMIT_BYTES = 3_000_000
FAST = ("--settle", "1.5", "--retry-max", "2", "--rescan-interval", "1", "--concurrency", "8")


@dataclass
class Site:
    stack: LocalStack
    db_name: str
    root: Path
    registry: Path
    devices: list[SimulatedDevice]
    log_dir: Path

    def device(self, n: int) -> SimulatedDevice:
        return self.devices[n]

    def gateway(self, device: SimulatedDevice, *extra: str) -> ManagedProcess:
        process = gateway_process(device, self.stack.endpoints.ocr, self.log_dir, *FAST, *extra)
        process.start().wait_ready(60)
        return process


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name, url = create_pg_database()
    root = tmp_path_factory.mktemp("site")
    registry, devices = provision_devices(root, [KIND], per_kind=8)
    saved = dict(os.environ)
    os.environ["EYEOPS_MAX_IMAGE_BYTES"] = str(SERVICE_LIMIT_BYTES)
    os.environ["EYEOPS_GATEWAY_MAX_IMAGE_BYTES"] = str(20 * SERVICE_LIMIT_BYTES)
    settings = Settings(data_dir=root / "service")
    stack = LocalStack(
        settings,
        triton_port=free_triton_port(),  # Triton listens on it and the next two
        ocr_port=free_port(),
        database_url=url,
        device_tokens=registry,
    )
    try:
        stack.start()
        yield Site(stack, name, root, registry, devices, root / "log")
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        drop_pg_database(name)


@pytest.fixture(scope="module")
def exam_images() -> list[bytes]:
    """40 rendered exams; more distinct files are the same pixels under another PNG text chunk."""
    from eyeops.devices import load_layouts

    layouts = load_layouts()
    return [e.image for e in synthesize_exams([layouts[KIND]], 40, 77, split="eval")]


def distinct_images(base: list[bytes], count: int, tag: str) -> list[bytes]:
    return [tagged_copy(base[i % len(base)], f"{tag}-{i}") for i in range(count)]


def db_exams(site: Site, device_id: str) -> list[str]:
    with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + site.db_name) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM exams WHERE device_id = %s", (device_id,))]


def outbox_counts(device: SimulatedDevice) -> dict[str, int]:
    return device.counts() or {}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def finished(device: SimulatedDevice) -> int:
    c = outbox_counts(device)
    return c.get("done", 0) + c.get("failed", 0) + c.get("quarantined", 0)


def extension(image: bytes) -> str:
    return file_extension(image)


def drop_all(device: SimulatedDevice, images: list[bytes], prefix: str) -> list[str]:
    for i, image in enumerate(images):
        device.drop(f"{prefix}-{i:05d}.{extension(image)}", image)
    return [hashlib.sha256(i).hexdigest() for i in images]


def test_service_killed_mid_stream_of_1000_loses_and_duplicates_nothing(site, exam_images):
    device = site.device(0)
    images = distinct_images(exam_images, 1000, "svc")
    gateway = site.gateway(device)
    try:
        expected = drop_all(device, images, "exam")
        wait_until(lambda: len(db_exams(site, device.device_id)) >= 250, 600, "250 exams before the outage")
        site.stack.processes[-1].kill()  # the OCR transformer, SIGKILL: answers in flight are lost
        site.stack.stop_transformer()
        time.sleep(3)
        assert outbox_counts(device)["pending"] > 0
        site.stack.start_transformer()
        wait_until(lambda: finished(device) == 1000, 900, "all 1000 delivered")
    finally:
        gateway.stop()
    ids = db_exams(site, device.device_id)
    assert len(ids) == 1000 and set(ids) == set(expected)
    assert outbox_counts(device)["done"] == 1000


def test_gateway_sigkilled_mid_upload_and_restarted_delivers_exactly_once(site, exam_images):
    device = site.device(1)
    images = distinct_images(exam_images, 240, "gw")
    expected = drop_all(device, images, "exam")
    gateway = site.gateway(device)
    for threshold in (40, 120):
        wait_until(lambda t=threshold: len(db_exams(site, device.device_id)) >= t, 600, f"{threshold} exams")
        gateway.kill()
        gateway = site.gateway(device)  # resumes from its outbox
    try:
        wait_until(lambda: finished(device) == 240, 900, "all 240 delivered")
    finally:
        gateway.stop()
    ids = db_exams(site, device.device_id)
    assert len(ids) == 240 and set(ids) == set(expected)


def test_same_file_twice_and_resend_after_lost_answer_are_one_exam(site, exam_images):
    device = site.device(2)
    twice, lost = distinct_images(exam_images, 2, "dup")
    token = read_token_file(device.token_file)

    async def send_directly() -> None:  # the request reached the service; its answer never came back
        client = OcrClient(site.stack.endpoints.ocr, protocol="v2", token=token)
        try:
            reply = await client.read_exam(lost, KIND, device_id=device.device_id)
        finally:
            await client.aclose()
        assert reply.status_code == 200 and reply.exam["duplicate"] is False

    asyncio.run(send_directly())
    gateway = site.gateway(device)
    try:
        device.drop(f"first.{extension(twice)}", twice)
        device.drop(f"again-later.{extension(twice)}", twice)
        device.drop(f"lost-answer.{extension(lost)}", lost)
        wait_until(lambda: finished(device) == 2, 120, "two items delivered")
    finally:
        gateway.stop()
    assert len(db_exams(site, device.device_id)) == 2
    outbox = Outbox(device.outbox_path)
    rows = {r["sha256"]: r for r in outbox.results()}
    outbox.close()
    assert set(rows) == {hashlib.sha256(twice).hexdigest(), hashlib.sha256(lost).hexdigest()}
    assert rows[hashlib.sha256(lost).hexdigest()]["result"]["duplicate"] is True
    assert rows[hashlib.sha256(twice).hexdigest()]["result"]["duplicate"] is False


def test_corrupt_file_is_quarantined_and_a_file_being_written_waits(site, exam_images):
    device = site.device(3)
    (slow,) = distinct_images(exam_images, 1, "slow")
    corrupt = distinct_images(exam_images, 1, "corrupt")[0][:20_000]
    gateway = site.gateway(device)
    try:
        device.drop(f"corrupt.{extension(corrupt)}", corrupt)
        target = device.export_dir / f"slow.{extension(slow)}"
        with target.open("wb") as handle:
            handle.write(slow[: len(slow) // 2])
            handle.flush()
            time.sleep(1.0)
            handle.write(slow[len(slow) // 2 :])
        wait_until(lambda: finished(device) == 2, 120, "corrupt quarantined and slow delivered")
    finally:
        gateway.stop()
    quarantine = device.state_dir / "quarantine"
    reasons = list(quarantine.glob("*corrupt.*.reason.txt"))
    assert len(reasons) == 1 and "truncated" in reasons[0].read_text()
    assert not (device.export_dir / f"corrupt.{extension(corrupt)}").exists()
    assert len(db_exams(site, device.device_id)) == 1
    counts = outbox_counts(device)
    assert (counts["done"], counts["quarantined"], counts["failed"]) == (1, 1, 0)


def test_bad_token_oversize_and_unknown_kind_fail_with_the_server_message(site, exam_images):
    intruder = site.device(4)
    intruder.token_file.write_text("not-the-token\n")
    oversize = noise_png(1800, 1800, seed=9)  # a valid image the gateway accepts, over the service limit
    gateway = site.gateway(intruder)
    try:
        image = distinct_images(exam_images, 1, "intruder")[0]
        intruder.drop(f"exam.{extension(image)}", image)
        wait_until(lambda: finished(intruder) == 1, 60, "401")
    finally:
        gateway.stop()
    wrong_kind = replace(site.device(5), device_kind="fundus_camera")
    big_sender = site.device(6)
    # --allow-unknown-kind: the gateway refuses a kind no layout describes at start; this checks the
    # service's own 400 for a gateway that was told to send it anyway
    gateways = [site.gateway(wrong_kind, "--allow-unknown-kind"), site.gateway(big_sender)]
    try:
        image = distinct_images(exam_images, 1, "fundus")[0]
        wrong_kind.drop(f"fundus.{extension(image)}", image)
        big_sender.drop("huge.png", oversize)
        wait_until(lambda: finished(wrong_kind) + finished(big_sender) == 2, 60, "400 and 413")
    finally:
        for g in gateways:
            g.stop()
    failures = {}
    for device in (intruder, wrong_kind, big_sender):
        outbox = Outbox(device.outbox_path)
        failures.update({r["source"].rsplit("/", 1)[1].split(".")[0]: r for r in outbox.results()})
        outbox.close()
    assert failures["exam"]["http_status"] == 401 and "token" in failures["exam"]["reason"]
    assert failures["fundus"]["http_status"] == 400 and "known kinds" in failures["fundus"]["reason"]
    assert failures["huge"]["http_status"] == 413 and "over the limit" in failures["huge"]["reason"]
    assert all(r["state"] == "failed" and r["attempts"] == 1 for r in failures.values())
    log = (site.stack.log_dir / "ocr-transformer.log").read_text(errors="replace")
    assert intruder.device_id in log and "not-the-token" not in log


def test_batch_backfill_resumes_after_a_kill_and_reports_every_file(site, exam_images, tmp_path):
    import csv
    import json
    import signal
    import subprocess
    import sys
    import zipfile

    from eyeops.gateway.batch import run_batch

    device = site.device(7)
    good = distinct_images(exam_images, 30, "batch")
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, image in enumerate(good):
            z.writestr(f"2019/{i:03d}.{extension(image)}", image)
        z.writestr("2019/broken.jpg", good[0][: len(good[0]) // 3])
        z.writestr("../../escape.jpg", good[1])
        z.writestr("notes.txt", "not an exam")
    out = tmp_path / "results.csv"
    argv = [
        sys.executable, "-m", "eyeops.cli", "batch", str(archive), "--device-kind", KIND, "--out", str(out),
        "--endpoint", site.stack.endpoints.ocr, "--token-file", str(device.token_file),
        "--device-id", device.device_id, "--concurrency", "2",
    ]  # fmt: skip
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outbox_path = out.with_name(out.name + ".outbox.db")
    wait_until(
        lambda: outbox_path.exists() and len(db_exams(site, device.device_id)) >= 8, 300, "8 exams from batch"
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    summary = run_batch(
        archive, KIND, out, endpoint=site.stack.endpoints.ocr, token_file=device.token_file,
        device_id=device.device_id, concurrency=4,
    )  # fmt: skip
    assert (summary["files"], summary["done"], summary["quarantined"], summary["failed"]) == (33, 30, 3, 0)
    assert 0 < summary["sent_this_run"] < 30  # the rest were answered before the kill
    assert sorted(db_exams(site, device.device_id)) == sorted(hashlib.sha256(i).hexdigest() for i in good)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 33
    by_file = {r["file"].split("!", 1)[1]: r for r in rows}
    assert (
        by_file["2019/broken.jpg"]["state"] == "quarantined"
        and "truncated" in by_file["2019/broken.jpg"]["error"]
    )
    assert "climbs out" in by_file["../../escape.jpg"]["error"]
    assert "not an exam image" in by_file["notes.txt"]["error"]
    done = [r for r in rows if r["state"] == "done"]
    assert all(r["exam_status"] in ("accepted", "review") and r["http_status"] == "200" for r in done)
    assert all(r["ecd_cells_mm2_status"] in ("accepted", "review") and r["patient_id_status"] for r in done)
    assert json.loads(out.with_name(out.name + ".summary.json").read_text())["done"] == 30
