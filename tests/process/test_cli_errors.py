"""The exit status and stderr the shell sees from a real `eyeops` process: one line and exit 2, the
traceback with --debug, one line and exit 130 on Ctrl-C (the same errors from `main()`:
tests/unit/test_cli_errors.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eyeops.stack.process import free_port
from tests.unit.test_cli_errors import isolate_data_dir

EYEOPS = [sys.executable, "-m", "eyeops.cli"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_data_dir(tmp_path, monkeypatch)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed, so a connection is refused."""
    return free_port()


def run_eyeops(*argv: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EYEOPS_DATA_DIR": str(env_dir)}
    return subprocess.run([*EYEOPS, *argv], capture_output=True, text=True, env=env, timeout=120)


def test_process_prints_one_line_and_debug_prints_the_traceback(tmp_path, data_dir, closed_port):
    argv = ("recommend", "EYE0001", "--endpoint", f"http://127.0.0.1:{closed_port}")
    plain = run_eyeops(*argv, env_dir=data_dir)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("eyeops: error: no service at")
    debug = run_eyeops("--debug", *argv, env_dir=data_dir)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "httpx.ConnectError" in debug.stderr


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A port that accepts a connection and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.settimeout(60)
        yield sock


def test_ctrl_c_is_one_line_and_exit_130(data_dir, silent_listener):
    port = silent_listener.getsockname()[1]
    env = {**os.environ, "EYEOPS_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [*EYEOPS, "recommend", "EYE0001", "--endpoint", f"http://127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a test run started as a background job inherits SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: give the command the disposition a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        connection, _ = silent_listener.accept()  # the command now waits for an answer
        with connection:
            time.sleep(0.2)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err == "eyeops: error: interrupted\n" and out == ""
