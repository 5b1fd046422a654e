"""`eyeops batch`: send a historical archive through the gateway's outbox and client, write a CSV.

The outbox beside the CSV (``<out>.outbox.db``) makes a run resumable: run the same command again
after an interruption and only what was not answered yet is sent. Archives are read in memory,
never extracted, and every member is checked against path tricks (zip-slip) and bombs first.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import random
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from prometheus_client import CollectorRegistry

from eyeops.devices import load_layouts
from eyeops.errors import EyeopsError, InvalidImage, PayloadTooLarge
from eyeops.gateway.metrics import GatewayMetrics
from eyeops.gateway.outbox import Item, Outbox
from eyeops.gateway.runner import make_client
from eyeops.gateway.service import Gateway, SendPolicy
from eyeops.gateway.validate import Limits
from eyeops.gateway.watch import PARTIAL_NAMES
from eyeops.settings import Settings

MAX_RATIO = 200  # deflate reaches ~1000:1 on crafted input; real exam images compress far less
MAX_MEMBERS = 1_000_000


@dataclass(frozen=True)
class Member:
    source: str
    data: bytes
    size: int
    mtime_ns: int
    refused: str | None = None  # why it was not read (unsafe name, too large, bomb)


def unsafe_member_name(name: str) -> str | None:
    """Why a zip member name would escape an extraction folder, or None when it is safe."""
    if "\\" in name or ":" in name.split("/", 1)[0]:
        return f"member name {name!r} uses a drive or backslash path"
    path = PurePosixPath(name)
    if path.is_absolute():
        return f"member name {name!r} is absolute"
    if ".." in path.parts:
        return f"member name {name!r} climbs out of the archive with '..'"
    return None


def _skip(name: str) -> bool:
    import fnmatch

    base = PurePosixPath(name).name.lower()
    return base.startswith(".") or any(fnmatch.fnmatch(base, p) for p in PARTIAL_NAMES)


def zip_members(path: Path, max_bytes: int, max_total_bytes: int) -> Iterator[Member]:
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir() and not _skip(i.filename)]
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"{path} has {len(infos)} members, over the limit of {MAX_MEMBERS}")
        declared = sum(i.file_size for i in infos)
        if declared > max_total_bytes:
            raise ValueError(f"{path} unpacks to {declared} bytes, over the limit of {max_total_bytes}")
        for info in infos:
            source = f"{path.name}!{info.filename}"
            mtime_ns = int(time.mktime((*info.date_time, 0, 0, -1)) * 1e9)
            refused = unsafe_member_name(info.filename)
            if refused is None and info.file_size > max_bytes:
                refused = f"member is {info.file_size} bytes, over the limit of {max_bytes} bytes"
            if refused is None and info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                refused = (
                    f"member expands {info.file_size / info.compress_size:.0f}:1, over {MAX_RATIO}:1"
                    " (zip bomb guard)"
                )
            if refused is not None:
                yield Member(source, b"", info.file_size, mtime_ns, refused)
                continue
            with archive.open(info) as handle:
                data = handle.read(max_bytes + 1)  # bounded even if the header lies about the size
            if len(data) > max_bytes:
                yield Member(source, b"", len(data), mtime_ns, "member is larger than its header says")
                continue
            yield Member(source, data, info.file_size, mtime_ns)


def folder_members(root: Path, max_bytes: int) -> Iterator[Member]:
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not _skip(p.name)):
        st = path.stat()
        if st.st_size > max_bytes:
            yield Member(
                str(path), b"", st.st_size, st.st_mtime_ns, f"file is {st.st_size} bytes, over the limit"
            )
            continue
        yield Member(str(path), path.read_bytes(), st.st_size, st.st_mtime_ns)


def fill_outbox(outbox: Outbox, members: Iterator[Member], device_kind: str) -> dict[str, EyeopsError]:
    """Capture every member; returns the refusals by key so they are quarantined with their reason."""
    refused: dict[str, EyeopsError] = {}
    for m in members:
        if m.refused is not None:
            digest = hashlib.sha256(f"refused\0{m.source}\0{m.size}".encode()).hexdigest()
            bounds = ("over the limit" in m.refused) or ("bomb" in m.refused) or ("larger" in m.refused)
            refused[digest] = PayloadTooLarge(m.refused) if bounds else InvalidImage(m.refused)
        elif outbox.known_source(m.source, m.size, m.mtime_ns):
            continue
        else:
            digest = hashlib.sha256(m.data).hexdigest()
        # Only the hash is kept: the archive is the source of truth and is read again to send.
        outbox.capture(m.source, device_kind, None, digest, m.size, m.mtime_ns)
    return refused


class ArchiveReader:
    """Reads a captured member again by its source name (``archive.zip!member`` or a path)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._zip = None if path.is_dir() else zipfile.ZipFile(path)

    def __call__(self, item: Item) -> bytes:
        if self._zip is None:
            data = Path(item.source).read_bytes()
        else:
            member = item.source.split("!", 1)[1]
            with self._lock, self._zip.open(member) as handle:
                data = handle.read(self.max_bytes + 1)
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise EyeopsError(f"{item.source} changed since it was read; run the batch again")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def run_batch(
    path: Path,
    device_kind: str,
    out: Path,
    endpoint: str,
    token_file: Path | None = None,
    device_id: str = "batch",
    protocol: str = "v2",
    concurrency: int = 8,
    progress: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Send every file of `path` once, write `out` (CSV) and `<out>.summary.json`; return the summary."""
    settings = settings or Settings()
    layouts = load_layouts()
    layout = layouts[device_kind]  # unknown kinds fail before any work
    limits = Limits(settings.max_image_bytes, settings.max_image_pixels)
    out.parent.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(out.with_name(out.name + ".outbox.db"), durable=False)
    try:
        started, started_wall = time.perf_counter(), time.time()
        if path.is_dir():
            members = folder_members(path, limits.max_bytes)
        elif zipfile.is_zipfile(path):
            members = zip_members(path, limits.max_bytes, max_total_bytes=1000 * limits.max_bytes)
        else:
            raise ValueError(f"{path} is neither a folder nor a zip archive")
        refused = fill_outbox(outbox, members, device_kind)
        quarantine = out.with_name(out.name + ".quarantine")
        reader = ArchiveReader(path, limits.max_bytes)
        gateway = Gateway(
            outbox,
            make_client(endpoint, token_file, protocol),
            device_id,
            limits,
            quarantine,
            GatewayMetrics(CollectorRegistry()),
            SendPolicy(concurrency=concurrency, settle_s=0.0),
            rng=random.Random(0),
            move_quarantined=False,
            refusals=refused,
            image_loader=reader,
        )
        try:
            asyncio.run(_drain(gateway, progress))
        finally:
            reader.close()
        elapsed = time.perf_counter() - started
        rows = list(outbox.results())
    finally:
        outbox.close()
    write_csv(out, rows, [s.name for s in layout.all_fields()])
    summary = summarise(rows, elapsed, started_wall)
    out.with_name(out.name + ".summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


async def _drain(gateway: Gateway, progress: bool) -> None:
    from tqdm import tqdm

    counts = gateway.outbox.counts()
    total = sum(counts.values())

    def finished(c: dict[str, int]) -> int:
        return c["done"] + c["failed"] + c["quarantined"] + c["superseded"]

    bar = tqdm(total=total, initial=finished(counts), unit="exam", disable=not progress)
    stop = asyncio.Event()
    runner = asyncio.create_task(gateway.run(stop, until_drained=True))
    try:
        while not runner.done():
            await asyncio.wait({runner}, timeout=0.5)
            bar.update(finished(gateway.outbox.counts()) - bar.n)
        await runner
    finally:
        stop.set()
        await gateway.client.aclose()
        bar.update(finished(gateway.outbox.counts()) - bar.n)
        bar.close()


def write_csv(out: Path, rows: list[dict[str, Any]], field_names: list[str]) -> None:
    columns = ["file", "sha256", "state", "http_status", "exam_status", "error"]
    for name in field_names:
        columns += [name, f"{name}_status"]
    columns.append("review_reasons")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            result = row["result"] or {}
            record: dict[str, Any] = {
                "file": row["source"],
                "sha256": row["sha256"],
                "state": row["state"],
                "http_status": row["http_status"] or "",
                "exam_status": result.get("status", ""),
                "error": row["reason"] or result.get("error") or "",
            }
            reasons = []
            for f in result.get("fields", []):
                if f["name"] in field_names:
                    value = f.get("value")
                    record[f["name"]] = "" if value is None else value
                    record[f"{f['name']}_status"] = f["status"]
                if f.get("reason"):
                    reasons.append(f"{f['name']}: {f['reason']}")
            record["review_reasons"] = "; ".join(reasons)
            writer.writerow(record)
    tmp.replace(out)


def summarise(rows: list[dict[str, Any]], elapsed_s: float, since: float) -> dict[str, Any]:
    """Counts over all rows; the rate over what this run sent (a resumed run sent only the rest)."""
    states = Counter(r["state"] for r in rows)
    exams = Counter((r["result"] or {}).get("status") for r in rows if r["state"] == "done")
    fields = [f for r in rows if r["state"] == "done" for f in (r["result"] or {}).get("fields", [])]
    sent_now = [r for r in rows if r["state"] == "done" and (r["finished_at"] or 0) >= since]
    return {
        "files": len(rows),
        "done": states["done"],
        "failed": states["failed"],
        "quarantined": states["quarantined"],
        "exams_accepted": exams["accepted"],
        "exams_review": exams["review"],
        "exams_failed": exams["failed"],
        "field_review_rate": sum(f["status"] == "review" for f in fields) / max(len(fields), 1),
        "failures": dict(
            Counter(f"{r['http_status']}: {r['reason']}" for r in rows if r["state"] == "failed")
        ),
        "elapsed_s": round(elapsed_s, 3),
        "sent_this_run": len(sent_now),
        "exams_per_s": round(len(sent_now) / elapsed_s, 3) if elapsed_s > 0 else None,
    }
