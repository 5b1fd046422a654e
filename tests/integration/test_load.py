"""32 clients for two minutes against `eyeops up` on the embedded defaults (a real process tree:
tritonserver, the OCR transformer under kserve.ModelServer, the lens services, the monitor; SQLite
results database; the local Feast repository). Before the feature outbox, this crashed the OCR
transformer in 12 s (SIGBUS in Feast's parquet rewrite) and left the offline files at 0 bytes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from bench.ocr_load import UpProcess, render_exams, run_load
from eyeops.auth import read_token_file
from eyeops.db import ResultsStore
from eyeops.features.ingest import feature_push_for
from eyeops.features.views import VIEWS
from eyeops.stack.devices import SimulatedDevice, provision_devices
from tests.helpers import children, command

pytestmark = pytest.mark.slow
CLIENTS = 32
SECONDS = float(os.environ.get("EYEOPS_LOAD_SECONDS", "120"))


def offline_rows(repo: Path) -> dict[str, int]:
    """Rows of each view's offline parquet file; reading one that is torn or empty fails here."""
    return {view: pq.read_table(repo / "data" / f"{view}.parquet").num_rows for view in VIEWS}


def transformer_pids(up: UpProcess) -> list[int]:
    return [p for p in children(up.proc.pid) if "-m inference.ocr_transformer" in command(p)]


GATEWAY_KINDS = ["optical_biometer", "anterior_segment_oct", "autorefractor", "specular_microscope"]


@dataclass
class LoadSite:
    up: UpProcess
    devices: list[SimulatedDevice]  # their hashes are the registry `eyeops up` was started with


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadSite]:
    root = tmp_path_factory.mktemp("load")
    registry, devices = provision_devices(root / "devices", GATEWAY_KINDS)
    process = UpProcess.start(root / "site", extra=["--device-tokens", str(registry)])
    try:
        yield LoadSite(process, devices)
    finally:
        process.stop()


def test_32_clients_for_two_minutes_lose_nothing_and_crash_nothing(site: LoadSite) -> None:
    up = site.up
    repo = up.data_dir / "lens" / "feature_repo"  # EYEOPS_DATA_DIR is the data folder itself
    before = offline_rows(repo)
    transformer = transformer_pids(up)
    assert len(transformer) == 1, [command(p) for p in children(up.proc.pid)]
    exams = render_exams(60)

    result = asyncio.run(
        run_load(
            up.ocr,
            exams,
            CLIENTS,
            SECONDS,
            resend_every=10,
            token=read_token_file(site.devices[0].token_file),
        )
    )
    summary = result.summary()
    print(summary)

    # the transformer never died: the same process answered throughout, and nothing was refused
    assert Path(f"/proc/{transformer[0]}").exists(), up.output()[-3000:]
    assert summary["server_errors_5xx"] == 0 and not result.transport_errors, summary
    assert result.statuses[200] > 0 and set(result.statuses) <= {200, 422}, summary

    # every exam that got a 200 is in the database, once
    store = ResultsStore.from_url(f"sqlite:///{up.data_dir / 'results.db'}")
    stored = {exam_id: store.get_exam(exam_id) for exam_id in result.answered}
    assert all(record is not None for record in stored.values())
    with store.engine.connect() as conn:
        logged = dict(
            conn.execute(
                text("SELECT exam_id, count(*) FROM inference_log WHERE outcome = 'stored' GROUP BY exam_id")
            ).all()
        )
    assert all(logged.get(exam_id) == 1 for exam_id in stored), "an exam was stored twice"

    # every accepted exam that feeds a view was pushed once; the offline files read back whole
    deadline = time.monotonic() + 120
    while store.feature_push_counts()["queued"] and time.monotonic() < deadline:
        time.sleep(1)
    assert store.feature_push_counts()["queued"] == 0
    # (copies of one rendered exam carry the same eye, values and date: one offline row between them)
    pushes = set()
    for record in stored.values():
        assert record is not None
        push = feature_push_for(record)
        if push is not None:
            pushes.add((push.view, push.eye_id, tuple(sorted(push.values.items())), push.measured_at))
    expected = {view: sum(1 for p in pushes if p[0] == view) for view in VIEWS}
    after = offline_rows(repo)
    assert {v: after[v] - before[v] for v in VIEWS} == expected
    assert sum(expected.values()) > 0


def test_transformer_killed_under_gateway_load_is_restarted_and_every_file_arrives_once(
    site: LoadSite, tmp_path: Path
) -> None:
    import hashlib
    import signal

    from eyeops.imageio import file_extension
    from eyeops.stack.devices import gateway_process
    from eyeops.synth.exams import tagged_copy

    up, devices = site.up, site.devices
    rendered = render_exams(12, seed=977)
    per_device = 40
    fast = ("--settle", "1", "--retry-max", "2", "--rescan-interval", "1", "--concurrency", "8")
    gateways = [gateway_process(d, up.ocr, tmp_path / "log", *fast) for d in devices]
    files: dict[str, str] = {}  # sha256 → device id
    for gateway in gateways:
        gateway.start().wait_ready(60)
    try:
        for device in devices:
            base = [e.image for e in rendered if e.device_kind == device.device_kind]
            for i in range(per_device):
                image = tagged_copy(base[i % len(base)], f"{device.device_id}-{i}")
                device.drop(f"exam-{i:03d}.{file_extension(image)}", image)
                files[hashlib.sha256(image).hexdigest()] = device.device_id

        def done() -> int:
            return sum(d.counts()["done"] for d in devices)

        def settled() -> int:  # delivered, refused or quarantined: nothing more will happen to it
            return sum(c["done"] + c["failed"] + c["quarantined"] for c in (d.counts() for d in devices))

        deadline = time.monotonic() + 120
        while done() < 20 and settled() < len(files) and time.monotonic() < deadline:
            time.sleep(0.2)
        (victim,) = transformer_pids(up)
        os.kill(victim, signal.SIGKILL)  # a crash mid-load: requests in flight are lost with it

        deadline = time.monotonic() + 400
        while settled() < len(files) and time.monotonic() < deadline:
            time.sleep(0.5)
        counts = {d.device_id: d.counts() for d in devices}
    finally:
        for gateway in gateways:
            gateway.stop()
    assert all(c["done"] == per_device == sum(c.values()) for c in counts.values()), counts
    output = up.output()
    assert "ocr-transformer exited with -9" in output, output[-3000:]
    assert "ocr-transformer is ready again" in output, output[-3000:]
    restarted = transformer_pids(up)
    assert len(restarted) == 1 and restarted[0] != victim

    store = ResultsStore.from_url(f"sqlite:///{up.data_dir / 'results.db'}")
    with store.engine.connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT exam_id, count(*) FROM inference_log WHERE outcome = 'stored' GROUP BY exam_id")
            ).all()
        )
    assert {exam_id: stored.get(exam_id) for exam_id in files} == dict.fromkeys(files, 1)
