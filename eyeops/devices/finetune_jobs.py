"""Device fine-tunes started from the console's Devices page, run as `eyeops devices finetune KIND`.

One fine-tune at a time per folder (two cores take one well, two badly). Each runs in its own
process, so a console that serves pages is never the one training; its record lives on disk, so a
console restarted while it ran, or another replica sharing the folder, still shows it:

    <root>/running.lock            the kind running, who started it, when; touched while it runs
    <root>/<kind>/job.json         the record: state, who, when, the command's JSON summary
    <root>/<kind>/progress.log     the command's progress lines (stderr)
    <root>/<kind>/summary.json     the command's summary (stdout)

A lock not touched for `stale_s` belongs to a process that is gone (its console was stopped): the
job reads as interrupted and another may start. Nothing here carries patient data: the fine-tune
trains on exams drawn on the device's reference image, and its lines name kinds, counts and times.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eyeops.errors import EyeopsError, UnknownDeviceKind

LOCK = "running.lock"
STATES = ("running", "promoted", "kept out by the gate", "failed", "interrupted")


class FinetuneBusy(EyeopsError):
    """Another fine-tune is running; one at a time."""

    status_code = 409


@dataclass(frozen=True)
class FinetuneJob:
    kind: str
    state: str  # one of STATES
    started_by: str
    started_at: float  # unix seconds
    finished_at: float | None = None
    progress: str = ""  # the last progress line
    message: str = ""  # why it failed, or what the gate said
    version: str | None = None  # the registered model version
    summary: dict[str, Any] | None = None  # the command's JSON summary

    @property
    def running(self) -> bool:
        return self.state == "running"

    def accuracy(self) -> list[tuple[str, float | None, float | None]]:
        """Per device kind: field accuracy of the champion, then of the candidate."""
        per_kind = (self.summary or {}).get("per_device_champion_then_candidate", {})
        out = []
        for kind, figures in sorted(per_kind.items()):
            before, after = figures.get("field_accuracy", [None, None])
            out.append((kind, before, after))
        return out


def finetune_argv(python: str, registry: Path, extra: Sequence[str] = ()) -> Callable[[str, Path], list[str]]:
    """The command for one kind: `eyeops devices finetune KIND` with the console's model registry,
    its checkpoint written beside the job's record. `extra`: more options (a budget, smaller sets)."""

    def argv(kind: str, folder: Path) -> list[str]:
        return [
            python, "-m", "eyeops", "devices", "finetune", kind,
            "--registry", str(registry), "--out", str(folder / "checkpoint"), *extra,
        ]  # fmt: skip

    return argv


class FinetuneJobs:
    """Start a device's fine-tune and read every device's last one. `argv(kind, folder)` builds the
    command (finetune_argv); `env` is added to the console's environment for it."""

    def __init__(
        self,
        root: Path,
        argv: Callable[[str, Path], list[str]],
        env: Mapping[str, str] | None = None,
        heartbeat_s: float = 15.0,
        stale_s: float = 120.0,
    ) -> None:
        if stale_s <= heartbeat_s:
            raise ValueError("stale_s must exceed heartbeat_s: a live job would read as interrupted")
        self.root, self.argv, self.env = root, argv, dict(env or {})
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self._threads: dict[str, threading.Thread] = {}

    # -- reading ---------------------------------------------------------------------------------
    def jobs(self) -> dict[str, FinetuneJob]:
        """Every kind's last fine-tune, a live one with its latest progress line."""
        out: dict[str, FinetuneJob] = {}
        if not self.root.is_dir():
            return out
        lock = self._lock()
        for record in sorted(self.root.glob("*/job.json")):
            job = self._read(record)
            if job is None:
                continue
            if job.running:
                alive = lock is not None and lock.get("kind") == job.kind and not self._stale()
                if not alive:
                    job = _replace(job, state="interrupted", message="its process stopped before it ended")
                else:
                    job = _replace(job, progress=_last_line(record.parent / "progress.log"))
            out[job.kind] = job
        return out

    def running(self) -> FinetuneJob | None:
        return next((j for j in self.jobs().values() if j.running), None)

    # -- starting --------------------------------------------------------------------------------
    def start(self, kind: str, user: str) -> FinetuneJob:
        """Start `kind`'s fine-tune in the background; FinetuneBusy while another runs."""
        if not kind.isidentifier():
            raise UnknownDeviceKind("a device kind is letters, digits and _, starting with a letter")
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_lock(kind, user)
        try:
            folder = self.root / kind
            folder.mkdir(exist_ok=True)
            job = FinetuneJob(kind=kind, state="running", started_by=user, started_at=time.time())
            self._write(folder, job)
            with (folder / "summary.json").open("wb") as out, (folder / "progress.log").open("wb") as err:
                process = subprocess.Popen(
                    self.argv(kind, folder),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env={**os.environ, **self.env},
                    start_new_session=True,  # a console's Ctrl-C is not the fine-tune's
                )
        except BaseException:
            self._lock_path().unlink(missing_ok=True)
            raise
        thread = threading.Thread(
            target=self._watch, args=(process, folder, job), name=f"finetune-{kind}", daemon=True
        )
        self._threads[kind] = thread
        thread.start()
        return job

    def wait(self, kind: str, timeout: float) -> FinetuneJob:
        """Block until `kind`'s fine-tune started here ends (tests, the CLI)."""
        thread = self._threads.get(kind)
        if thread is not None:
            thread.join(timeout)
        return self.jobs()[kind]

    # -- internals -------------------------------------------------------------------------------
    def _watch(self, process: subprocess.Popen[bytes], folder: Path, job: FinetuneJob) -> None:
        while True:
            try:
                code = process.wait(timeout=self.heartbeat_s)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.utime(self._lock_path())
        try:
            self._write(folder, _ended(job, code, folder))
        finally:
            self._lock_path().unlink(missing_ok=True)

    def _lock_path(self) -> Path:
        return self.root / LOCK

    def _lock(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._lock_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _stale(self) -> bool:
        try:
            return time.time() - self._lock_path().stat().st_mtime > self.stale_s
        except OSError:
            return True

    def _take_lock(self, kind: str, user: str) -> None:
        for _ in range(2):
            try:
                fd = os.open(self._lock_path(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                held = self._lock() or {}
                if self._stale():  # its process is gone: the job reads as interrupted
                    self._lock_path().unlink(missing_ok=True)
                    continue
                since = time.strftime("%H:%M UTC", time.gmtime(float(held.get("started_at", 0))))
                raise FinetuneBusy(
                    f"the fine-tune of {held.get('kind', 'another kind')} is running since {since};"
                    " one runs at a time: start this one when it ends"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"kind": kind, "started_by": user, "started_at": time.time()}, out)
            return
        raise FinetuneBusy("another console is starting a fine-tune; try again in a moment")

    @staticmethod
    def _read(record: Path) -> FinetuneJob | None:
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            return FinetuneJob(**data)
        except (OSError, ValueError, TypeError):
            return None

    @staticmethod
    def _write(folder: Path, job: FinetuneJob) -> None:
        part = folder / "job.json.part"
        part.write_text(json.dumps(asdict(job)), encoding="utf-8")
        part.replace(folder / "job.json")


def _replace(job: FinetuneJob, **changes: Any) -> FinetuneJob:
    return FinetuneJob(**{**asdict(job), **changes})


def _last_line(path: Path, tail: int = 4096) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def _ended(job: FinetuneJob, code: int, folder: Path) -> FinetuneJob:
    """The record of an ended fine-tune from its exit code and what it printed."""
    finished = time.time()
    if code != 0:  # the CLI's errors are one line on stderr (exit 2); a crash ends with its last line
        return _replace(
            job, state="failed", finished_at=finished, message=_last_line(folder / "progress.log")
        )
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _replace(job, state="failed", finished_at=finished, message="it printed no summary")
    registered = summary.get("registered") if isinstance(summary, dict) else None
    if not isinstance(registered, dict):
        return _replace(job, state="failed", finished_at=finished, message="it registered nothing")
    promoted = bool(registered.get("promoted"))
    reasons = registered.get("gate") or []
    return _replace(
        job,
        state="promoted" if promoted else "kept out by the gate",
        finished_at=finished,
        version=str(registered.get("version")),
        message="; ".join(str(r) for r in reasons)[:600],
        summary=summary,
    )
