"""Small builders shared by tests: images that are bad in one precise way."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
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
