"""Device fine-tunes started from the console (eyeops.devices.finetune_jobs): one at a time, the
record on disk through every state, a process that vanished read as interrupted, and the Devices
page's button behind the device-admin role, CSRF and an onboarded kind."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from eyeops.console.app import ConsoleConfig, create_app
from eyeops.console.users import Sessions, add_user, load_users
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from eyeops.devices.finetune_jobs import LOCK, FinetuneBusy, FinetuneJobs
from eyeops.errors import UnknownDeviceKind
from tests.helpers import eventually
from tests.unit.test_console import PASSWORD, SECRET, form_fields, sign_in

# Stands in for `eyeops devices finetune` at the process boundary only: the same streams and exit
# codes (progress on stderr, the JSON summary on stdout, one line and exit 2 when refused). The real
# command runs from the console in tests/model/test_finetune.py.
FAKE = """
import json, sys, time, pathlib
kind, mode, gate = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
print(f"rendering 6 {kind} exams on its reference image", file=sys.stderr, flush=True)
while not gate.exists():
    time.sleep(0.02)
print("training up to 4 steps", file=sys.stderr, flush=True)
if mode == "refused":
    print("eyeops: the budget leaves 0.2 minutes to train", file=sys.stderr)
    sys.exit(2)
promoted = mode == "promoted"
print(json.dumps({
    "kind": kind,
    "per_device_champion_then_candidate": {kind: {"field_accuracy": [0.957, 0.986]},
                                           "autorefractor": {"field_accuracy": [0.999, 0.998]}},
    "registered": {"version": f"{kind}-20261206-120000", "promoted": promoted,
                   "gate": ["no device kind worse"] if promoted else ["autorefractor reads worse"]},
}))
"""


@pytest.fixture
def fake(tmp_path: Path):  # type: ignore[no-untyped-def]
    script = tmp_path / "fake_finetune.py"
    script.write_text(FAKE)
    gate = tmp_path / "go"
    modes: dict[str, str] = {}

    def argv(kind: str, folder: Path) -> list[str]:
        return [sys.executable, str(script), kind, modes.get(kind, "promoted"), str(gate)]

    jobs = FinetuneJobs(tmp_path / "jobs", argv, heartbeat_s=0.05, stale_s=5.0)
    return jobs, gate, modes


def test_one_runs_at_a_time_and_its_record_follows_it_to_the_gates_verdict(fake) -> None:  # type: ignore[no-untyped-def]
    jobs, gate, modes = fake
    started = jobs.start("lensmeter", "dev")
    assert started.running and started.started_by == "dev"
    live = eventually(
        lambda: jobs.jobs()["lensmeter"].progress and jobs.jobs()["lensmeter"], 20, "progress", 0.05
    )
    assert live.running and "rendering 6 lensmeter exams" in live.progress
    with pytest.raises(FinetuneBusy, match="lensmeter is running") as busy:
        jobs.start("keratometer", "dev")
    assert busy.value.status_code == 409
    gate.touch()
    done = jobs.wait("lensmeter", 20)
    assert done.state == "promoted" and done.version == "lensmeter-20261206-120000"
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert ("lensmeter", 0.957, 0.986) in done.accuracy() and "no device kind worse" in done.message
    assert not (jobs.root / LOCK).exists()
    modes["keratometer"] = "kept"
    jobs.start("keratometer", "eve")  # the lock is free again
    kept = jobs.wait("keratometer", 20)
    assert kept.state == "kept out by the gate" and "autorefractor reads worse" in kept.message
    assert set(jobs.jobs()) == {"lensmeter", "keratometer"}


def test_a_refused_fine_tune_says_why_and_a_vanished_one_reads_as_interrupted(fake) -> None:  # type: ignore[no-untyped-def]
    jobs, gate, modes = fake
    modes["lensmeter"] = "refused"
    gate.touch()
    jobs.start("lensmeter", "dev")
    failed = jobs.wait("lensmeter", 20)
    assert failed.state == "failed" and failed.message == "eyeops: the budget leaves 0.2 minutes to train"
    # A console stopped mid-run: its record says running, its lock is no longer touched.
    record = jobs.root / "lensmeter" / "job.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "state": "running"}))
    (jobs.root / LOCK).write_text(json.dumps({"kind": "lensmeter", "started_by": "dev", "started_at": 1}))
    old = time.time() - 60
    os.utime(jobs.root / LOCK, (old, old))
    assert jobs.jobs()["lensmeter"].state == "interrupted"
    modes["lensmeter"] = "promoted"
    jobs.start("lensmeter", "dev")  # the stale lock is taken over
    assert jobs.wait("lensmeter", 20).state == "promoted"
    with pytest.raises(UnknownDeviceKind, match="device kind"):
        jobs.start("../etc", "dev")


@pytest.fixture
def onboarded_console(sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path, fake):  # type: ignore[no-untyped-def]
    import cv2
    import numpy as np

    jobs, gate, _ = fake
    reference = tmp_path / "lensmeter.reference.png"
    cv2.imwrite(str(reference), np.full((300, 400), 235, np.uint8))
    shipped = layouts["autorefractor"]
    template = shipped.template.model_copy(update={"reference": str(reference)})
    lensmeter = shipped.model_copy(update={"kind": "lensmeter", "template": template})
    registry = LayoutRegistry({**{k: layouts[k] for k in layouts.kinds()}, "lensmeter": lensmeter})
    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer"], PASSWORD)
    add_user(users, "dev", ["device_admin"], PASSWORD)
    config = ConsoleConfig(Sessions(SECRET), users=load_users(users), finetunes=jobs)
    return create_app(store, lambda: registry, config), jobs, gate


def test_the_devices_page_starts_a_fine_tune_for_an_onboarded_kind_only(onboarded_console) -> None:  # type: ignore[no-untyped-def]
    app, jobs, gate = onboarded_console
    with TestClient(app) as reviewer:
        sign_in(reviewer, "ana")
        assert reviewer.post("/devices/lensmeter/finetune", data={"csrf": "x"}).status_code == 403
    with TestClient(app) as client:
        sign_in(client, "dev")
        page = client.get("/devices")
        assert 'data-kind="lensmeter"' in page.text and 'data-kind="autorefractor"' not in page.text
        csrf = form_fields(page.text)["csrf"]
        assert client.post("/devices/lensmeter/finetune", data={"csrf": "stale"}).status_code == 403
        shipped = client.post("/devices/autorefractor/finetune", data={"csrf": csrf})
        assert shipped.status_code == 409 and "onboarded from a sample" in shipped.text
        assert client.post("/devices/nosuch/finetune", data={"csrf": csrf}).status_code == 404
        assert not jobs.jobs()  # nothing started by any of those
        started = client.post("/devices/lensmeter/finetune", data={"csrf": csrf}, follow_redirects=False)
        assert started.status_code == 303 and started.headers["location"] == "/devices#finetunes"
        running = client.get("/devices").text
        assert "<strong>running</strong>" in running and 'http-equiv="refresh"' in running
        assert "disabled" in running  # one at a time
        again = client.post("/devices/lensmeter/finetune", data={"csrf": csrf})
        assert again.status_code == 409 and "one runs at a time" in again.text
        gate.touch()
        jobs.wait("lensmeter", 20)
        done = client.get("/devices").text
        assert "<strong>promoted</strong> (ocr lensmeter-20261206-120000)" in done
        assert "lensmeter 0.957 → 0.986" in done and 'http-equiv="refresh"' not in done
