"""The labelled crop set reviewers make, as the `ocr-training` pipeline reads it.

Every field a reviewer confirmed or corrected is a row of `labelled_crops` (written in the release's
own transaction). A version of the set is "every row up to id N": `export_crops` writes
`reviewed-<N>.npz` (a CropSet) and its manifest, then points `reviewed.npz` and `reviewed.json`
at it (atomic replace), the path the recurring `ocr-training` run takes as `crops_uri`. A version
once written never changes; exporting again without new rows writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.db.review import ReviewStore

LATEST = "reviewed.npz"


def export_crops(store: ReviewStore, out_dir: Path) -> dict[str, object]:
    """Write the newest version of the labelled crop set under `out_dir`; its manifest."""
    from eyeops.ocr.dataset import CropSet

    rows = store.labelled_crops()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not rows:
        return {"version": 0, "crops": 0, "path": None, "note": "no reviewed fields yet"}
    version = rows[-1].id
    target = out_dir / f"reviewed-{version}.npz"
    manifest_path = out_dir / f"reviewed-{version}.json"
    if not manifest_path.exists():
        crops = np.stack(
            [np.frombuffer(r.crop, dtype=np.uint8).reshape(CROP_HEIGHT, CROP_WIDTH) for r in rows]
        )
        data = CropSet(
            crops,
            [r.text for r in rows],
            [r.grammar for r in rows],
            [r.device_kind for r in rows],
            [r.field_name for r in rows],
        )
        partial = target.with_suffix(".npz.partial")
        data.save(partial)
        os.replace(partial, target)
        manifest = {
            "version": version,
            "crops": len(rows),
            "corrected": sum(r.corrected for r in rows),
            "per_device_kind": dict(sorted(Counter(r.device_kind for r in rows).items())),
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "path": target.name,
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest = json.loads(manifest_path.read_text())
    for name, source in ((LATEST, target), ("reviewed.json", manifest_path)):
        partial = out_dir / f".{name}.partial"
        shutil.copyfile(source, partial)
        os.replace(partial, out_dir / name)
    return dict(manifest)
