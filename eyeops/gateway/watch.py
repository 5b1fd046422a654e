"""Notice complete files in a device's export folder and capture them into the outbox.

A file counts as complete when its writer closes it (inotify IN_CLOSE_WRITE), when it is renamed
into the folder, or, for writers whose events were missed, when a rescan finds it unchanged for
`settle_s`. Capture reads the bytes, hashes them and commits them; nothing slower happens here, so
the device-facing side is done within milliseconds.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from eyeops.gateway.metrics import GatewayMetrics
from eyeops.gateway.outbox import Outbox

log = logging.getLogger("eyeops.gateway")
# Names editors and copy tools use while a file is not finished yet.
PARTIAL_NAMES = ("*.part", "*.tmp", "*.crdownload", "*~", ".*")


def file_ref(path: Path) -> str:
    """How logs name an export file: its folder and a hash of its name, never the name itself
    (device software often writes the patient's id or name into it). `eyeops gateway status` and
    the quarantine folder hold the names, under the export folder's own access rules."""
    name = hashlib.sha256(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{path.parent}/<name {name}>"


class Capturer:
    """Reads a complete file into the outbox. Thread-safe (the outbox serialises writes)."""

    def __init__(
        self,
        outbox: Outbox,
        device_kind: str,
        include: list[str],
        max_bytes: int,
        metrics: GatewayMetrics,
        on_capture: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.device_kind = device_kind
        self.include = [p.lower() for p in include]
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.on_capture = on_capture

    def wanted(self, path: Path) -> bool:
        name = path.name.lower()
        if any(fnmatch.fnmatch(name, p) for p in PARTIAL_NAMES):
            return False
        return any(fnmatch.fnmatch(name, p) for p in self.include)

    def capture(self, path: Path, noticed: float | None = None) -> bool:
        """True when the file is (now or already) in the outbox; False when it must be looked at later."""
        noticed = time.perf_counter() if noticed is None else noticed
        if not self.wanted(path):
            return True
        try:
            before = path.stat()
            if before.st_size > self.max_bytes:
                data = b""  # not read: validation quarantines it by its size
                digest = hashlib.sha256(
                    f"oversize\0{path}\0{before.st_size}\0{before.st_mtime_ns}".encode()
                ).hexdigest()
            else:
                with path.open("rb") as handle:
                    data = handle.read(self.max_bytes + 1)
                digest = hashlib.sha256(data).hexdigest()
            after = path.stat()
        except FileNotFoundError:
            return True  # gone before we could read it; nothing to capture
        except OSError as exc:
            log.warning("cannot read %s yet: %s", file_ref(path), type(exc).__name__)
            return False
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return False  # still being written; its close event or a later rescan brings it back
        if self.outbox.known_source(str(path), after.st_size, after.st_mtime_ns):
            return True
        result = self.outbox.capture(
            str(path), self.device_kind, data, digest, after.st_size, after.st_mtime_ns
        )
        self.metrics.ack_seconds.observe(time.perf_counter() - noticed)
        (self.metrics.captured if result.new else self.metrics.duplicates).inc()
        self.on_capture()
        return True


def walk_files(root: Path, skip: Path | None = None) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        if skip is not None:
            dirs[:] = [d for d in dirs if Path(folder, d).resolve() != skip]
        for name in files:
            yield Path(folder, name)


class FolderWatcher:
    """inotify events for speed, a periodic rescan so that nothing is ever missed."""

    def __init__(
        self,
        root: Path,
        capturer: Capturer,
        rescan_interval_s: float,
        settle_s: float,
        skip: Path | None = None,
    ) -> None:
        self.root = root
        self.capturer = capturer
        self.rescan_interval_s = rescan_interval_s
        self.settle_s = settle_s
        self.skip = skip.resolve() if skip is not None else None
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._rescanner: threading.Thread | None = None

    def rescan(self) -> int:
        """Capture every wanted file that has been quiet for settle_s. Returns files captured."""
        captured = 0
        now = time.time()
        for path in walk_files(self.root, self.skip):
            try:
                st = path.stat()
            except OSError:
                continue
            if now - st.st_mtime < self.settle_s:
                continue
            if self.capturer.wanted(path) and not self.capturer.outbox.known_source(
                str(path), st.st_size, st.st_mtime_ns
            ):
                captured += self.capturer.capture(path)
        return captured

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        handler = _Events(self.capturer, self.skip)
        observer = _observer()
        observer.schedule(handler, str(self.root), recursive=True)
        observer.start()
        self._observer = observer
        self.rescan()  # whatever arrived while the gateway was down
        self._rescanner = threading.Thread(target=self._rescan_loop, name="rescan", daemon=True)
        self._rescanner.start()

    def _rescan_loop(self) -> None:
        # The first scan skips files younger than settle_s; one that arrived just before the
        # observer started sends no event, so look again once it has settled, not a whole interval
        # later (measured: 29 of a demo gateway's 50 files waited 30 s for the periodic rescan).
        wait = min(self.settle_s + 0.1, self.rescan_interval_s)
        while not self._stop.wait(wait):
            wait = self.rescan_interval_s
            try:
                self.rescan()
            except Exception:  # a rescan must never kill the gateway
                log.exception("rescan of %s failed", self.root)

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
        if self._rescanner is not None:
            self._rescanner.join(5)


def _observer() -> BaseObserver:
    """inotify with every move reported as a move, also when its other half is not seen: a file
    moved in from outside the folder, or a `.part` renamed in while the observer was starved of CPU
    for longer than watchdog waits to pair the two halves (0.5 s). By default watchdog reports such
    an arrival as a created file, which says nothing of whether it is complete, and the file then
    waited for the next rescan (measured: 31 of a demo's 300 files, 30 s late). Elsewhere, the
    platform's observer."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:
        return Observer()
    try:
        return InotifyObserver(generate_full_events=True)
    except OSError:  # inotify unavailable here (limits, a container without it)
        return Observer()


class _Events(FileSystemEventHandler):
    def __init__(self, capturer: Capturer, skip: Path | None) -> None:
        self.capturer = capturer
        self.skip = skip

    def _take(self, raw: str | bytes) -> None:
        path = Path(os.fsdecode(raw))
        if self.skip is not None and self.skip in path.resolve().parents:
            return
        noticed = time.perf_counter()
        try:
            self.capturer.capture(path, noticed)
        except Exception:  # the rescan will pick the file up again
            log.exception("capture of %s failed", file_ref(path))

    def on_closed(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._take(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        # dest_path is empty for a file moved out of the folder (its arrival half unseen)
        if isinstance(event, FileMovedEvent) and event.dest_path:
            self._take(event.dest_path)
