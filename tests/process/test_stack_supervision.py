"""The supervisor's restart policy, with real short-lived processes and a clock the test moves, and a
stack's children dying with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eyeops.stack.process import ManagedProcess, ServiceFailed, Supervisor
from tests.helpers import running


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crasher(tmp_path: Path, code: int = 3) -> ManagedProcess:
    argv = [sys.executable, "-c", f"raise SystemExit({code})"]
    return ManagedProcess("crasher", argv, "http://127.0.0.1:9/ready", tmp_path / "crasher.log")


def exited(process: ManagedProcess) -> None:
    assert process.proc is not None
    process.proc.wait(10)


def test_restarts_with_doubling_backoff_then_gives_up(tmp_path: Path) -> None:
    clock, said = Clock(), list[str]()
    process = crasher(tmp_path).start()
    supervisor = Supervisor([process], said.append, max_quick_failures=3, clock=clock)
    exited(process)
    for restart, delay in [(1, 1), (2, 2), (3, 4)]:
        supervisor.check()
        assert said[-1] == (
            f"crasher exited with 3; restart {restart} in {delay} s (log: {tmp_path / 'crasher.log'})"
        )
        first_pid = process.proc.pid if process.proc else None
        clock.now += delay - 0.1
        supervisor.check()  # backoff not over: nothing started
        assert process.proc is not None and process.proc.pid == first_pid
        clock.now += 0.1
        supervisor.check()  # backoff over: started again
        assert process.proc is not None and process.proc.pid != first_pid
        exited(process)
    with pytest.raises(ServiceFailed, match="crasher exited with 3, its 4th exit in a row"):
        supervisor.check()
    assert supervisor.restarts() == {"crasher": 3}


def test_a_child_that_stayed_up_starts_its_backoff_afresh(tmp_path: Path) -> None:
    clock, said = Clock(), list[str]()
    process = crasher(tmp_path, code=255).start()
    supervisor = Supervisor([process], said.append, stable_s=60.0, clock=clock)
    exited(process)
    supervisor.check()
    clock.now += 1
    supervisor.check()
    exited(process)
    supervisor.check()
    assert said[-1].startswith("crasher exited with 255; restart 2 in 2 s")
    clock.now += 2
    supervisor.check()
    exited(process)
    clock.now += 61  # it "ran" past stable_s before exiting
    supervisor.check()
    assert said[-1].startswith("crasher exited with 255; restart 3 in 1 s")


def test_a_running_child_is_left_alone(tmp_path: Path) -> None:
    said: list[str] = []
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    with ManagedProcess("sleeper", argv, "http://127.0.0.1:9/", tmp_path / "s.log") as process:
        supervisor = Supervisor([process], said.append)
        supervisor.check()
        assert said == [] and process.returncode() is None
    assert process.returncode() is not None


# A child that starts a grandchild which ignores SIGTERM: only SIGKILL of the process group ends it.
CHILD = """
import subprocess, sys, time
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
print(subprocess.Popen([sys.executable, "-c", stubborn]).pid, flush=True)
time.sleep(60)
"""
PARENT = """
import sys, time
from pathlib import Path
from eyeops.stack.process import ManagedProcess
child = ManagedProcess("child", [sys.executable, "-c", sys.argv[1]], "http://127.0.0.1:9/", Path(sys.argv[2]))
child.start()
print(child.proc.pid, flush=True)
time.sleep(60)
"""


def test_children_and_grandchildren_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(log)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(log.read_text().split()[0])
    assert running(child) and running(grandchild)
    parent.kill()
    parent.wait(5)
    killed = time.monotonic()
    while (running(child) or running(grandchild)) and time.monotonic() - killed < 5:
        time.sleep(0.05)
    try:
        assert not running(child) and not running(grandchild)
    finally:
        for pid in (child, grandchild):
            if running(pid):
                os.kill(pid, signal.SIGKILL)
