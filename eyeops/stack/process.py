"""Child processes that serve HTTP: start, wait until ready, stop cleanly, die with their parent,
restart when they crash; and which process holds a port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Generic, TypeVar

import httpx

from eyeops.errors import EyeopsError

T = TypeVar("T")


class ServiceFailed(EyeopsError):
    """A child service exited, did not become ready, or crashed too often to keep restarting."""


class PortInUse(EyeopsError):
    """A port the stack needs is taken (often by a stale stack); the message names the holder."""


class Stack(Generic[T]):
    """Something started and stopped as a whole; `with` starts it and always stops it."""

    def start(self) -> T:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> T:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# Run by `python -c` in its own session, so that a signal sent to `eyeops up`'s process group does not
# reach it. It reads "+pgid" / "-pgid" lines; at end of input (its parent exited, however it exited)
# it sends SIGTERM to every group still listed, and SIGKILL to what is left after the grace period.
# Killing the group, not the pid, is what reaches grandchildren such as Triton's backend stubs.
_REAPER_SOURCE = """
import os, signal, sys, time
groups = set()
for line in iter(sys.stdin.readline, ""):
    pgid = int(line[1:])
    if line[0] == "+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
def alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
for sig in (signal.SIGTERM, signal.SIGKILL):
    for pgid in [g for g in groups if alive(g)]:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + float(sys.argv[1])
    while sig == signal.SIGTERM and any(alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
"""
REAPER_GRACE_S = 2.0


class GroupReaper:
    """A tiny process that kills the listed process groups when this process exits, even by SIGKILL."""

    def __init__(self, grace_s: float = REAPER_GRACE_S) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER_SOURCE, str(grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        self._pipe: IO[bytes] = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                self._pipe.write(line.encode())
                self._pipe.flush()
            except (BrokenPipeError, ValueError):  # the reaper is gone; PDEATHSIG still covers children
                pass


_reaper: GroupReaper | None = None
_reaper_lock = threading.Lock()


def group_reaper() -> GroupReaper | None:
    """This process's reaper, started on first use (Linux only: it relies on process groups)."""
    global _reaper
    if not sys.platform.startswith("linux"):
        return None
    with _reaper_lock:
        if _reaper is None:
            _reaper = GroupReaper()
        return _reaper


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to send `sig` to the child when the thread that started it dies
    (PR_SET_PDEATHSIG), and exits the child if its parent is already gone. None off Linux, and off
    the main thread: the signal follows the starting thread, not the process, so a child started by
    a short-lived thread would be killed with that thread (the group reaper still covers it)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody will stop us
            os._exit(1)

    return preexec


class ManagedProcess:
    """A server process with a readiness URL; a context manager that always stops it. It runs in its
    own process group, which dies with this process (SIGKILL included): PDEATHSIG, then the reaper."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._group_cleared = False

    def start(self) -> ManagedProcess:
        """Start (or start again, after it exited) the process in a new process group."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        reaper = group_reaper()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.close()
        self._group_cleared = False
        if reaper is not None:
            reaper.watch(self.proc.pid)
        return self

    def returncode(self) -> int | None:
        """None while it runs (or was never started); its exit status once it has exited."""
        return None if self.proc is None else self.proc.poll()

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        try:
            return httpx.get(self.ready_url, timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceFailed(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n" + self.tail()
                )
            if self.is_ready():
                return
            time.sleep(0.3)
        raise ServiceFailed(
            f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_path}:\n" + self.tail()
        )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.kill_leftovers()

    def kill(self) -> None:
        """SIGKILL, no grace: what a crash or a power cut looks like to the process."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of the exited process's group (its children), and stop watching it."""
        if self.proc is None or self.proc.poll() is None or self._group_cleared:
            return
        self._group_cleared = True  # once only: later, the group id could name someone else's group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        reaper = group_reaper()
        if reaper is not None:
            reaper.forget(self.proc.pid)

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class PortOwner:
    pid: int
    command: str


def listening_inodes(port: int) -> set[int]:
    """Socket inodes of the TCP sockets (IPv4 and IPv6) listening on `port`, from /proc/net."""
    inodes: set[int] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... uid timeout inode
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def port_owner(port: int) -> PortOwner | None:
    """The process listening on TCP `port`: the LISTEN socket's inode in /proc/net/tcp{,6}, then the
    process with an fd on `socket:[inode]`. None when no one listens, or the holder's fds are not
    readable by this user."""
    targets = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not targets:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            holds = any(os.readlink(fd) in targets for fd in (entry / "fd").iterdir())
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if holds:
            return PortOwner(int(entry.name), process_command(int(entry.name)))
    return None


def process_command(pid: int, width: int = 100) -> str:
    """A process's command line, its program shown by name, cut to `width` characters."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    argv = [a for a in argv if a]
    if not argv:
        return "?"
    line = " ".join([Path(argv[0]).name, *argv[1:]])
    return line if len(line) <= width else line[: width - 3] + "..."


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` on every interface now (no listener, IPv4 or IPv6)."""
    import socket

    if listening_inodes(port):
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def ensure_ports_free(ports: Sequence[tuple[int, str]]) -> None:
    """Raise PortInUse for the first (port, what to pass instead) that is taken, naming its holder."""
    seen: dict[int, str] = {}
    for port, option in ports:
        if port in seen:
            raise PortInUse(f"port {port} is asked for twice ({seen[port]} and {option}): pass another")
        seen[port] = option
        if port_is_free(port):
            continue
        owner = port_owner(port)
        held = f"pid {owner.pid} ({owner.command})" if owner else "a process this user cannot see"
        raise PortInUse(f"port {port} is in use by {held}: stop it (a stale eyeops stack?) or pass {option}")


@dataclass
class _Watched:
    process: ManagedProcess
    started_at: float
    restarts: int = 0
    quick_failures: int = 0  # in a row, each within `stable_s` of its start
    restart_at: float | None = None  # set while waiting out the backoff
    starting: bool = False  # restarted, not ready yet


class Supervisor:
    """Restarts children that exit, with exponential backoff (1, 2, 4 ... `max_backoff_s` s), saying
    so each time. A child that stays up `stable_s` starts its count of quick failures afresh; after
    `max_quick_failures` quick failures in a row `check` raises ServiceFailed. Only the child that
    died is restarted: the others keep their ports, so e.g. the OCR transformer answers 503 while
    Triton comes back. Call `check` from the thread that started the children (see die_with_parent)."""

    def __init__(
        self,
        processes: Sequence[ManagedProcess],
        say: Callable[[str], None] = print,
        *,
        max_quick_failures: int = 5,
        stable_s: float = 60.0,
        max_backoff_s: float = 30.0,
        ready_timeout_s: float = 180.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.say = say
        self.clock = clock
        self.max_quick_failures = max_quick_failures
        self.stable_s = stable_s
        self.max_backoff_s = max_backoff_s
        self.ready_timeout_s = ready_timeout_s
        now = clock()
        self.watched = [_Watched(p, now) for p in processes]

    def restarts(self) -> dict[str, int]:
        return {w.process.name: w.restarts for w in self.watched}

    def check(self) -> None:
        """One pass: notice exits, restart those whose backoff is over, report those ready again."""
        for w in self.watched:
            now = self.clock()
            name = w.process.name
            if w.restart_at is not None:
                if now >= w.restart_at:
                    w.restart_at, w.starting, w.started_at = None, True, now
                    w.process.start()
                continue
            code = w.process.returncode()
            if code is None:
                if w.starting and w.process.is_ready(timeout_s=1.0):
                    w.starting = False
                    self.say(f"{name} is ready again (restart {w.restarts})")
                elif w.starting and now - w.started_at > self.ready_timeout_s:
                    self.say(f"{name} not ready {self.ready_timeout_s:.0f} s after a restart; killing it")
                    w.process.kill()
                continue
            w.process.kill_leftovers()
            w.starting = False
            w.quick_failures = w.quick_failures + 1 if now - w.started_at < self.stable_s else 1
            if w.quick_failures > self.max_quick_failures:
                raise ServiceFailed(
                    f"{name} exited with {code}, its {w.quick_failures}th exit in a row within"
                    f" {self.stable_s:.0f} s of starting; giving up (log: {w.process.log_path})"
                )
            w.restarts += 1
            delay = min(self.max_backoff_s, 2.0 ** (w.quick_failures - 1))
            w.restart_at = now + delay
            log = w.process.log_path
            self.say(f"{name} exited with {code}; restart {w.restarts} in {delay:.0f} s (log: {log})")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_triton_port() -> int:
    """A free port whose next two are free too: tritonserver listens on HTTP, HTTP+1 (gRPC) and
    HTTP+2 (metrics)."""
    for _ in range(50):
        port = free_port()
        if port_is_free(port + 1) and port_is_free(port + 2):
            return port
    raise PortInUse("no three consecutive free ports for Triton on this machine")
