"""Write the traffic-learning crop sets from the results database, for the `ocr-training` pipeline.

    eyeops ocr harvest --out DIR [--window-days 7] [--cap-per-device 2000]

reads the candidate pseudo-labels kept in the last `window_days` (fields of exams accepted with no
person that both recognisers read alike), every reviewed field, and each device's exams in the
window and before it; `eyeops.ocr.traffic.harvest` decides the labels. It writes

- `traffic-<stamp>.npz`: the training labels (a CropSet, what `crops_uri` takes),
- `traffic-heldout-<stamp>.npz`: reviewed crops of a fifth of the exams, held out for the gate
  (`heldout_crops_uri`), never trained on,
- `traffic-<stamp>.json`: counts per device, refused devices with the reason, and the provenance of
  every label (exam, device, kind, field, model versions, agreement or review); no readings,

and points `traffic.npz`, `traffic-heldout.npz` and `traffic.json` at them (atomic replace). Every
harvest first purges kept crops older than the retention. The files hold patient crops: write them
where exam images live (the models volume on a cluster), under the same access rules.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.ocr.arbitrate import Calibrations
from eyeops.ocr.traffic import DeviceHistory, Harvest, LearningPolicy, TrafficField, harvest, split_heldout


class TrafficSource(Protocol):
    """What the harvest reads (eyeops.db.store.ResultsStore)."""

    def traffic_crops(self, since: dt.datetime) -> list[dict[str, Any]]: ...
    def labelled_fields(self) -> list[dict[str, Any]]: ...
    def device_exams(
        self, start: dt.datetime | None, end: dt.datetime
    ) -> dict[str, tuple[int, int, frozenset[str]]]: ...
    def purge_traffic_crops(self, before: dt.datetime) -> int: ...


def _crop(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(CROP_HEIGHT, CROP_WIDTH)


def collect(
    source: TrafficSource,
    now: dt.datetime,
    window_days: float,
    calibrations: Calibrations,
    policy: LearningPolicy,
) -> Harvest:
    """The harvest over the window ending at `now`."""
    start = now - dt.timedelta(days=window_days)

    def field(row: dict[str, Any], **overrides: Any) -> TrafficField:
        values: dict[str, Any] = {
            key: str(row[key]) for key in ("exam_id", "device_id", "device_kind", "field", "grammar", "text")
        }
        values["crop"] = _crop(row["crop"])
        return TrafficField(**(values | overrides))

    fields = [
        field(
            row,
            confidence=float(row["confidence"]),
            second_text=str(row["second_text"]),
            second_confidence=float(row["second_confidence"]),
            exam_status=str(row["exam_status"]),
            models=str(row["models"]),
        )
        for row in source.traffic_crops(start)
    ]
    fields += [
        field(
            row,
            confidence=1.0,
            second_text=None,
            second_confidence=None,
            exam_status="review",
            reviewed_text=str(row["text"]),
        )
        for row in source.labelled_fields()
    ]

    def histories(begin: dt.datetime | None, end: dt.datetime) -> dict[str, DeviceHistory]:
        return {d: DeviceHistory(n, a, k) for d, (n, a, k) in source.device_exams(begin, end).items()}

    return harvest(fields, histories(start, now), histories(None, start), calibrations, policy)


def _publish(out_dir: Path, name: str, source: Path) -> None:
    partial = out_dir / f".{name}.partial"
    shutil.copyfile(source, partial)
    os.replace(partial, out_dir / name)


def export_traffic(
    source: TrafficSource,
    out_dir: Path,
    calibrations: Calibrations,
    window_days: float = 7.0,
    retention_days: int = 30,
    policy: LearningPolicy | None = None,
    heldout_share: float = 0.2,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Purge, harvest, write both sets and the manifest; the manifest (counts, no readings)."""
    now = now or dt.datetime.now(dt.UTC)
    purged = source.purge_traffic_crops(now - dt.timedelta(days=retention_days))
    harvested = collect(source, now, window_days, calibrations, policy or LearningPolicy())
    train, held = split_heldout(harvested, heldout_share)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    manifest: dict[str, Any] = {
        **harvested.manifest(),
        "window_days": window_days,
        "purged_older_than_days": retention_days,
        "purged": purged,
        "train": len(train),
        "heldout_reviewed": len(held),
        "made_at": now.isoformat(),
    }
    if not len(train):
        return {**manifest, "path": None, "note": "no labels in this window: nothing written"}
    targets = {
        "traffic.npz": (out_dir / f"traffic-{stamp}.npz", train),
        "traffic-heldout.npz": (out_dir / f"traffic-heldout-{stamp}.npz", held),
    }
    for name, (path, data) in targets.items():
        partial = path.with_suffix(".npz.partial")
        data.save(partial)
        os.replace(partial, path)
        _publish(out_dir, name, path)
    manifest["path"] = targets["traffic.npz"][0].name
    manifest["heldout_path"] = targets["traffic-heldout.npz"][0].name
    manifest_path = out_dir / f"traffic-{stamp}.json"
    manifest_path.write_text(json.dumps({**manifest, "provenance": harvested.provenance}, indent=2) + "\n")
    _publish(out_dir, "traffic.json", manifest_path)
    return manifest
