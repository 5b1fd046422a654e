"""Learning from traffic through the real results database (PostgreSQL, and SQLite as a dev runs it):
the service keeps the crops of accepted exams both readers read alike, the harvest turns them and
the reviewed fields into the training and held-out sets, purges old crops, and keeps no reading in
its manifest."""

import datetime as dt
import json
from pathlib import Path

import numpy as np

from eyeops.db import ResultsStore, migrate
from eyeops.db.schema import LabelledCrop
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading
from eyeops.ocr.arbitrate import Calibration, Calibrations
from eyeops.ocr.dataset import CropSet
from eyeops.ocr.harvest import export_traffic

LOG = {"http_status": 200, "model_name": "trocr", "model_version": "7", "total_ms": 12.0}
SURE = Calibrations(
    primary=Calibration((0.5, 0.99), (0.5, 0.999)),
    second=Calibration((0.5, 0.99), (0.5, 0.99)),
    agreed=Calibration((0.5, 0.99), (0.9, 0.9999)),
    dependence=3.0,
)


def _exam(i: int, status: str, device: str = "room-3") -> ExamRecord:
    agreed = FieldReading("al_mm", "24.35", 24.35, "mm", 0.996, "accepted", None, "24.35", 0.995)
    disagreed = FieldReading("k1_d", "43.25", 43.25, "D", 0.999, "accepted", None, "48.25", 0.9)
    crop = np.full((32, 128), i % 200, np.uint8).tobytes()
    return ExamRecord(
        exam_id=f"{i:064d}",
        device_kind="optical_biometer",
        status=status,
        device_id=device,
        fields=[agreed, disagreed],
        header={"patient_id": "P1234567", "laterality": "OD", "exam_date": "2024-01-02"},
        learning_crops={"al_mm": ("[0-9]+\\.[0-9]{2}", crop), "k1_d": ("[0-9]+\\.[0-9]{2}", crop)},
    )


def exercise(url: str, out: Path) -> None:
    migrate(url)
    store = ResultsStore.from_url(url)
    for i in range(40):
        assert store.save_exam(_exam(i, "accepted"), LOG)
    store.save_exam(_exam(99, "review"), LOG)  # an exam a person looks at keeps no learning crop
    with store.session() as s:
        s.add(
            LabelledCrop(
                exam_id=f"{99:064d}",
                device_kind="optical_biometer",
                field_name="k1_d",
                grammar="[0-9]+\\.[0-9]{2}",
                text="43.50",
                corrected=1,
                crop=np.zeros((32, 128), np.uint8).tobytes(),
                labelled_by="reviewer",
            )
        )
    kept = store.traffic_crops(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    # one per accepted exam: the field the readers agreed on; the disagreement is not kept
    assert len(kept) == 40 and {k["field"] for k in kept} == {"al_mm"}
    assert store.device_exams(None, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == {
        "room-3": (41, 40, frozenset({"optical_biometer"}))
    }
    manifest = export_traffic(store, out, SURE, window_days=7, retention_days=30)
    assert manifest["pseudo"] == 40 and manifest["reviewed"] == 1 and manifest["refused_devices"] == {}
    assert "P1234567" not in json.dumps(manifest) and "24.35" not in json.dumps(manifest)
    train, held = CropSet.load(out / "traffic.npz"), CropSet.load(out / "traffic-heldout.npz")
    assert len(train) + len(held) == 41 and set(train.texts + held.texts) <= {"24.35", "43.50"}
    written = json.loads((out / "traffic.json").read_text())
    assert len(written["provenance"]) == 41
    assert {p["source"] for p in written["provenance"]} == {"agreement", "review"}
    # the retention purges what is older than it, before harvesting
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert export_traffic(store, out, SURE, retention_days=30, now=later)["purged"] == 40
    assert store.traffic_crops(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == []


def test_harvest_on_postgresql(pg_url, tmp_path):
    exercise(pg_url, tmp_path)


def test_harvest_on_sqlite(sqlite_url, tmp_path):
    exercise(sqlite_url, tmp_path)
