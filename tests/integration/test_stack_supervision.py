"""`eyeops up` as a user runs it, supervising real children: tritonserver (with its Python-backend
stub), the OCR transformer, the lens predictor and transformer (kserve.ModelServer) and the monitor.
One stack serves the first two tests; the last one SIGKILLs it and starts another on its ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from eyeops.stack.process import free_port, free_triton_port
from tests.helpers import command, descendants, parent_pid, running

READY_TIMEOUT_S = 600.0  # the first start trains the local lens model and fits the drift detectors


@dataclass
class Up:
    """One `eyeops up` process, its ports and its output."""

    proc: subprocess.Popen[bytes]
    flags: list[str]
    ocr: str
    lens: str
    log: Path

    @classmethod
    def start(cls, data_dir: Path, flags: list[str], ocr_port: int, lens_port: int) -> Up:
        log = data_dir / f"eyeops-up-{time.time_ns()}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                up_argv(flags), stdout=out, stderr=subprocess.STDOUT, env=up_env(data_dir), cwd=data_dir
            )
        return cls(proc, flags, f"http://127.0.0.1:{ocr_port}", f"http://127.0.0.1:{lens_port}", log)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            assert self.proc.poll() is None, f"eyeops up exited with {self.proc.returncode}:\n{self.output()}"
            if (
                ready(f"{self.ocr}/v2/models/ocr/ready")
                and ready(f"{self.lens}/v2/models/lens/ready")
                and "Ctrl-C stops everything" in self.output()  # its signal handlers are in place
            ):
                return time.monotonic() - started
            time.sleep(1.0)
        raise AssertionError(f"eyeops up not ready after {timeout_s:.0f} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            assert time.monotonic() < deadline, f"{text!r} not printed in {timeout_s:.0f} s:\n{self.output()}"
            assert self.proc.poll() is None, f"eyeops up exited with {self.proc.returncode}:\n{self.output()}"
            time.sleep(0.3)

    def child(self, module: str) -> int:
        found = [pid for pid in descendants(self.proc.pid) if f"-m {module} " in command(pid)]
        assert len(found) == 1, f"{module}: {found}"
        return found[0]

    def stop(self) -> None:
        """Ctrl-C, as a user stops it; SIGKILL what is left after a minute."""
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in tree:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def up_argv(flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "eyeops.cli", "up", *flags]


def up_env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "EYEOPS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Site:
    data_dir: Path
    flags: list[str]
    ports: dict[str, int]
    up: Up


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("eyeops-up")
    ports = {
        "triton": free_triton_port(),
        "ocr": free_port(),
        "lens": free_port(),
        "lens-predictor": free_port(),
        "monitor": free_port(),
        "console": free_port(),
    }
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    site = Site(data_dir, flags, ports, Up.start(data_dir, flags, ports["ocr"], ports["lens"]))
    try:
        seconds = site.up.wait_ready()
        print(f"eyeops up ready in {seconds:.0f} s (first start: lens model and detectors prepared)")
        yield site
    finally:
        site.up.stop()


def test_a_second_up_on_the_same_ports_names_the_port_and_its_holder(site: Site) -> None:
    started = time.monotonic()
    second = subprocess.run(
        up_argv(site.flags), env=up_env(site.data_dir), capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30
    assert second.returncode == 2, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, second.stderr
    found = re.fullmatch(
        r"eyeops: error: port (\d+) is in use by pid (\d+) \((.+)\): stop it \(a stale eyeops stack\?\)"
        r" or pass --triton-port",
        lines[0],
    )
    assert found, lines[0]
    assert int(found[1]) == site.ports["triton"]
    holder = int(found[2])
    assert holder in descendants(site.up.proc.pid)
    assert found[3].startswith("tritonserver ") and "tritonserver" in command(holder)
    assert "starting" not in second.stdout  # it failed before starting anything


def test_a_killed_ocr_transformer_is_restarted_and_said_so(site: Site) -> None:
    up = site.up
    ocr_ready = f"{up.ocr}/v2/models/ocr/ready"
    victim = up.child("inference.ocr_transformer")
    os.kill(victim, signal.SIGKILL)
    up.wait_for_output("ocr-transformer exited with -9; restart 1 in 1 s (log: ", timeout_s=10)
    up.wait_for_output("ocr-transformer is ready again (restart 1)", timeout_s=180)
    assert ready(ocr_ready)
    replacement = up.child("inference.ocr_transformer")
    assert replacement != victim and parent_pid(replacement) == up.proc.pid
    assert ready(f"{up.lens}/v2/models/lens/ready")  # the others were left alone
    assert ready(f"http://127.0.0.1:{site.ports['console']}/readyz")


def test_sigkill_of_up_leaves_no_process_and_the_ports_free_for_the_next(site: Site) -> None:
    up = site.up
    tree = descendants(up.proc.pid)
    commands = " ".join(command(pid) for pid in tree)
    for expected in (
        "tritonserver",
        "triton_python_backend_stub",
        "inference.ocr_transformer",
        "inference.lens_predictor",
        "inference.lens_transformer",
        "eyeops_detectors serve",
        "console serve",
    ):
        assert expected in commands, f"{expected} not among the stack's processes: {commands}"
    up.proc.kill()
    up.proc.wait(10)
    killed = time.monotonic()
    while (alive := [pid for pid in tree if running(pid)]) and time.monotonic() - killed < 5.0:
        time.sleep(0.1)
    assert not alive, "still running 5 s after SIGKILL: " + "; ".join(f"{p} {command(p)}" for p in alive)
    print(f"every process of the stack gone {time.monotonic() - killed:.1f} s after SIGKILL")

    again = Up.start(site.data_dir, site.flags, site.ports["ocr"], site.ports["lens"])
    try:
        print(f"the next eyeops up on the same ports ready in {again.wait_ready():.0f} s")
        assert "eyeops: error" not in again.output() and "exited with" not in again.output()
    finally:
        again_tree = descendants(again.proc.pid)
        again.stop()
    assert again.proc.returncode == 0, again.output()
    assert not [pid for pid in again_tree if running(pid)]
