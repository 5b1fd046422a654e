"""Who may reach the monitor, and a monitor process killed mid-window: the operator's, the
loggers' and the read-only tokens, the sink on a port of its own, and a restart that continues
its window."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from eyeops_detectors.detectors import DetectorSet
from eyeops_detectors.monitor import Monitor
from eyeops_detectors.service import create_app
from eyeops_detectors.store import MonitorStore
from tests.conftest import WINDOW
from tests.monitor_events import features_body, headers, predicted


def token_file(path: Path, name: str, token: str) -> Path:
    import hashlib

    path.write_text(f"{name} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n")
    return path


@pytest.mark.unit
def test_routes_need_their_tokens_and_probes_stay_open(detector_dir: Path, tmp_path: Path) -> None:
    from eyeops_detectors.auth import TokenCheck

    monitor = Monitor(DetectorSet.load(detector_dir), MonitorStore(tmp_path / "m.db"), {"lens": "lens"})
    monitor.start()
    operators = TokenCheck.from_file(token_file(tmp_path / "ops.txt", "operator", "op-token"))
    loggers = TokenCheck.from_file(token_file(tmp_path / "sink.txt", "logger", "sink-token"))
    client = TestClient(create_app(monitor, operators, loggers))
    op, sink = {"authorization": "Bearer op-token"}, {"authorization": "Bearer sink-token"}
    for path in ("/status", "/history", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=sink).status_code == 401  # another component's token
        assert client.get(path, headers=op).status_code == 200
    body = json.dumps(features_body(np.random.default_rng(9)))
    assert client.post("/", headers={**headers("t1"), **op}, content=body).status_code == 401
    assert client.post("/", headers={**headers("t1"), **sink}, content=body).status_code == 202
    assert client.post("/feedback", json={}, headers=sink).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200


@pytest.mark.unit
def test_a_read_only_token_reads_status_and_history_and_posts_nothing(
    detector_dir: Path, tmp_path: Path
) -> None:
    """Issue 28, item 9: the review console held the operator token, which can also post feedback
    (a postoperative outcome for any eye). Its own token now reads and does nothing else."""
    from eyeops_detectors.auth import TokenCheck

    monitor = Monitor(DetectorSet.load(detector_dir), MonitorStore(tmp_path / "m.db"), {"lens": "lens"})
    monitor.start()
    operators = TokenCheck.from_file(token_file(tmp_path / "ops.txt", "operator", "op-token"))
    readers = TokenCheck.from_file(token_file(tmp_path / "read.txt", "console", "read-token"))
    client = TestClient(create_app(monitor, operators, None, read_tokens=readers))
    read = {"authorization": "Bearer read-token"}
    assert client.get("/status", headers=read).status_code == 200
    assert client.get("/history", headers=read).status_code == 200
    outcome = {"eye_id": "P1-OD", "implanted_size_mm": 12.6, "surgery_date": "2026-11-01"}
    assert client.post("/feedback", json=outcome, headers=read).status_code == 401
    assert client.post("/feedback", json={}, headers={"authorization": "Bearer op-token"}).status_code == 422
    assert client.get("/docs", headers=read).status_code == 401


@pytest.mark.unit
def test_on_a_cluster_the_sink_has_its_own_port_and_the_operator_port_takes_no_events(
    detector_dir: Path, tmp_path: Path
) -> None:
    """Issue 28, item 2: on a cluster the sink takes no credentials (KServe's agent sends none) and
    shared the port that the console, Prometheus and operators' namespaces reach, so any of them
    could forge a logged response. Now the sink is served apart and the operator port refuses
    events before reading them; both serve one monitor."""
    from eyeops_detectors.auth import TokenCheck
    from eyeops_detectors.service import MonitorSlot

    monitor = Monitor(DetectorSet.load(detector_dir), MonitorStore(tmp_path / "m.db"), {"lens": "lens"})
    monitor.start()
    slot = MonitorSlot(monitor)
    operators = TokenCheck.from_file(token_file(tmp_path / "ops.txt", "operator", "op-token"))
    operator = TestClient(create_app(slot, operators, None, serve="operator"))
    sink = TestClient(create_app(slot, operators, None, serve="sink"))
    body = json.dumps(features_body(np.random.default_rng(5)))
    op = {"authorization": "Bearer op-token"}
    for path in ("/", "/events"):  # a forged event on the port every caller reaches: refused
        refused = operator.post(path, headers={**headers("f1"), **op}, content=body)
        assert refused.status_code == 404 and "sink port" in refused.text
    assert sink.post("/", headers=headers("s1"), content=body).status_code == 202
    for path in ("/status", "/history", "/metrics", "/docs"):  # nothing else on the sink's port
        assert sink.get(path, headers=op).status_code == 404
    assert sink.post("/feedback", json={}, headers=op).status_code == 404
    assert operator.get("/status", headers=op).status_code == 200
    assert sink.get("/healthz").status_code == 200 and operator.get("/healthz").status_code == 200
    text = operator.get("/metrics").text  # the event the sink took, seen through the other port
    assert 'eyeops_monitor_events_total{component="predictor",service="lens",type="request"} 1.0' in text
    with pytest.raises(ValueError, match="serve"):
        create_app(slot, operators, None, serve="both")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(detector_dir: Path, state: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "eyeops_detectors", "serve", "--detectors", str(detector_dir),
         "--state", str(state), "--port", str(port), "--host", "127.0.0.1", "--service", "lens=lens",
         "--insecure"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("monitor did not start")


@pytest.mark.integration  # a real monitor process, killed and started again
def test_killed_mid_window_the_window_continues_after_restart(detector_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    state, port = tmp_path / "state.db", free_port()
    proc = serve(detector_dir, state, port)
    url = f"http://127.0.0.1:{port}/"
    try:
        bodies = [json.dumps(features_body(rng, 0.6)) for _ in range(WINDOW)]
        for i in range(30):
            assert predicted(lambda path, **kw: httpx.post(url, **kw), f"k{i}", bodies[i]) == 202
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = serve(detector_dir, state, port)
    try:
        assert httpx.post(url, headers=headers("k29"), content=bodies[29]).status_code == 200  # a replay
        for i in range(30, WINDOW):
            predicted(lambda path, **kw: httpx.post(url, **kw), f"k{i}", bodies[i])
        status = httpx.get(f"http://127.0.0.1:{port}/status").json()
    finally:
        proc.terminate()
        proc.wait()
    assert status["detectors"]["lens_features"]["rows"] == WINDOW
    assert status["detectors"]["lens_features"]["is_drift"]
