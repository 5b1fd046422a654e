"""Small builders shared by tests: images that are bad in one precise way, and what /proc says
about a process tree."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def noise_png(height: int, width: int, seed: int = 0) -> bytes:
    """Incompressible: its size in bytes is about height × width."""
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, size=(height, width), dtype=np.uint8))


def bomb_png(side: int) -> bytes:
    """A few kilobytes that decode to side × side pixels."""
    return png_bytes(np.full((side, side), 255, np.uint8))


def unalignable_png() -> bytes:
    """A real image with no device frame in it: a photo-like gradient with blobs."""
    yy, xx = np.mgrid[0:600, 0:800]
    img = (128 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0)).astype(np.uint8)
    return png_bytes(img)


def dicom_bytes(
    pixels: np.ndarray,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.7",
    patient_id: str = "P1234567",
    laterality: str = "R",
    study_date: str = "20260314",
    photometric: str = "MONOCHROME2",
) -> bytes:
    """A minimal, valid DICOM Part 10 file (explicit VR little endian) around `pixels`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Laterality = laterality
    ds.StudyDate = study_date
    ds.Modality = "OP"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def newest_output(root: Path, task: str, name: str) -> Path:
    """The newest `task/name` artifact kfp.local wrote under a pipeline root."""
    found = sorted(root.glob(f"*/{task}/{name}"), key=lambda p: p.stat().st_mtime)
    assert found, f"no {task}/{name} under {root}"
    return found[-1]


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, then ppid


def children(root: int) -> list[int]:
    """The live processes whose parent is `root`."""
    return [
        int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and parent_pid(int(e.name)) == root
    ]


def descendants(root: int) -> list[int]:
    """Every live process below `root`: its children, their children, and so on."""
    below: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (ppid := parent_pid(int(entry.name))) is not None:
            below.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in below.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent's wait is missing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return re.search(r"^State:\s+Z", status, re.M) is None


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def eventually(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """`check()`'s first truthy value, polled every `every_s`; the test fails naming `what` after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    pytest.fail(f"no {what} after {timeout_s:.0f} s")
