"""The monitor's state on a real PostgreSQL (the cluster's store): the same behaviour as on SQLite,
including a window that continues across a restart and de-duplication by Ce-Id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eyeops_detectors.detectors import DetectorConfig, DetectorSet, Reference
from eyeops_detectors.monitor import REQUEST, RESPONSE, LoggedEvent, Monitor
from eyeops_detectors.store import MonitorStore
from tests.reference_data import write_reference

pytestmark = pytest.mark.integration


def test_monitor_on_postgres_continues_its_window_after_a_restart(pg_url: str, tmp_path: Path) -> None:
    config = DetectorConfig(window=50, ert=200, online_reference=150)
    DetectorSet.fit(Reference.load(write_reference(tmp_path / "ref.npz", n=800)), config).save(
        tmp_path / "det"
    )
    rng = np.random.default_rng(4)

    def event(i: int) -> LoggedEvent:
        row = {
            "eye_id": f"P{i:07d}-OD",
            "age_years": 35.0,
            "wtw_mm": float(rng.normal(12.3, 0.4)),
            "acd_mm": 3.2,
        }
        return LoggedEvent(f"k{i}", REQUEST, "lens", "predictor", json.dumps({"instances": [row]}).encode())

    answer = {
        "sizes": [
            {"size_mm": s, "vault_um": 500.0, "lower_um": 300.0, "upper_um": 700.0}
            for s in (12.1, 12.6, 13.2, 13.7)
        ],
        "recommended_size_mm": 12.6,
        "eye_id": "P0000001-OD",
    }

    def predicted(monitor: Monitor, i: int) -> str:
        """The request, then its 200 response (what makes the request's features count)."""
        outcome = monitor.ingest(event(i))
        body = json.dumps({"predictions": [answer]}).encode()
        monitor.ingest(LoggedEvent(f"k{i}", RESPONSE, "lens", "predictor", body))
        return outcome

    first = Monitor(DetectorSet.load(tmp_path / "det"), MonitorStore(pg_url), {"lens": "lens"})
    first.start()
    assert [predicted(first, i) for i in range(30)] == ["accepted"] * 30
    assert first.ingest(event(29)) == "duplicate"
    first.store.close()

    again = Monitor(DetectorSet.load(tmp_path / "det"), MonitorStore(pg_url), {"lens": "lens"})
    again.start()
    assert again.status()["window_rows"] == {"lens_features": 30, "lens_predictions": 30}
    for i in range(30, 50):
        predicted(again, i)
    status = again.status()
    assert (
        status["detectors"]["lens_features"]["rows"] == 50
        and status["detectors"]["lens_features"]["is_drift"]
    )
    again.ingest(
        LoggedEvent("L1", RESPONSE, "lens", "transformer", json.dumps({"predictions": [answer]}).encode())
    )
    assert again.feedback("P0000001-OD", 12.6, "2026-01-01", "L1") == "recorded"
    again.store.close()
