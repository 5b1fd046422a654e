"""Several monitor replicas on one PostgreSQL database (the chart's `monitor.replicas` > 1): whichever
replica each logger event reaches, the checks, alarms and gauges are those of one monitor that read
every event in the same order. A request and its response may land on different replicas; the online
detector continues from the stream another replica fed; a scrape of any replica shows the same gauges."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from eyeops_detectors.detectors import DetectorSet
from eyeops_detectors.monitor import REQUEST, RESPONSE, LoggedEvent, Monitor
from eyeops_detectors.service import create_app
from eyeops_detectors.store import MonitorStore
from tests.monitor_events import answer

pytestmark = pytest.mark.integration

SERVICES = {"lens": "lens", "ocr": "ocr"}


def events(n: int, seed: int, shift_after: int) -> list[LoggedEvent]:
    """n lens predictor calls (request, then its 200 response; the WTW shifts by 1 mm after
    `shift_after` calls, which both feature detectors flag), an OCR exam every fifth call (review
    rates) and an AS-OCT outcome for the first eye (ground truth)."""
    rng = np.random.default_rng(seed)
    out: list[LoggedEvent] = []
    for i in range(n):
        eye = f"P{i:07d}-OD"
        row = {
            "eye_id": eye,
            "age_years": float(rng.normal(35, 8)),
            "wtw_mm": float(rng.normal(11.7 + (1.0 if i >= shift_after else 0.0), 0.4)),
            "acd_mm": float(rng.normal(3.2, 0.3)),
        }
        request = json.dumps({"instances": [row]}).encode()
        response = json.dumps({"predictions": [answer(eye)]}).encode()
        out.append(LoggedEvent(f"c{i}", REQUEST, "lens", "predictor", request, f"q{i}"))
        out.append(LoggedEvent(f"c{i}", RESPONSE, "lens", "predictor", response, f"r{i}"))
        if i % 5 == 0:
            exam = {
                "device_kind": "optical_biometer", "patient_id": f"P{i:07d}", "laterality": "OD",
                "fields": [
                    {"name": "al_mm", "value": 24.0, "confidence": 0.99, "status": "accepted"},
                    {"name": "acd_mm", "value": 3.1, "confidence": 0.6, "status": ["accepted", "review"][i % 2]},
                ],
            }  # fmt: skip
            body = json.dumps({"predictions": [exam]}).encode()
            out.append(LoggedEvent(f"o{i}", RESPONSE, "ocr", "transformer", body, f"o{i}"))
    return out


def outcome_exam() -> LoggedEvent:
    exam = {
        "device_kind": "anterior_segment_oct", "patient_id": "P0000000", "laterality": "OD",
        "exam_date": "2026-04-01",
        "fields": [{"name": "vault_um", "value": 520.0, "confidence": 0.99, "status": "accepted"}],
    }  # fmt: skip
    return LoggedEvent(
        "v0", RESPONSE, "ocr", "transformer", json.dumps({"predictions": [exam]}).encode(), "v0"
    )


def gauges(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family.type == "gauge"
        for sample in family.samples
    }


def same(a: dict[Any, float], b: dict[Any, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], rel=1e-12) for k in a
    )


def checks(monitor: Monitor) -> list[tuple[str, bool, dict[str, float], int]]:
    return [(r["detector"], r["is_drift"], r["p_values"], r["rows"]) for r in monitor.history()]


def test_two_replicas_reach_what_one_monitor_reaches(
    detector_dir: Path, new_database: Callable[[], str]
) -> None:
    shared, alone = new_database(), new_database()
    single = Monitor(DetectorSet.load(detector_dir), MonitorStore(alone), SERVICES)
    replicas = [Monitor(DetectorSet.load(detector_dir), MonitorStore(shared), SERVICES) for _ in range(2)]
    for monitor in (single, *replicas):
        monitor.start()
    stream = events(140, seed=3, shift_after=60)
    for i, event in enumerate(stream):
        assert single.ingest(event) == "accepted"
        # requests and responses, and runs of lens events, fall on both replicas
        assert replicas[(i // 3) % 2].ingest(event) == "accepted"
    assert replicas[1].ingest(stream[5]) == "duplicate"  # de-duplication is shared too
    for monitor in (single, replicas[0]):
        monitor.ingest(outcome_exam())
    for monitor, name in ((single, "alone"), (replicas[1], "shared")):
        assert monitor.feedback("P0000000-OD", 12.6, "2026-03-01", "c0") == "joined", name

    expected = checks(single)
    fired = {detector for detector, flagged, _, _ in expected if flagged}
    assert {"lens_features", "lens_features_online"} <= fired  # the shift is seen, both ways
    for replica in replicas:
        assert checks(replica) == expected
        replica.sync_gauges()
    single.sync_gauges()
    alone_gauges = gauges(single.metrics.registry)
    assert alone_gauges[("eyeops_lens_outcomes", ())] == 1.0
    assert alone_gauges[("eyeops_ocr_review_rate", (("device_kind", "optical_biometer"),))] > 0
    for replica in replicas:
        assert same(gauges(replica.metrics.registry), alone_gauges)


def test_a_request_answered_on_another_replica_counts_and_a_restart_loses_none(
    detector_dir: Path, pg_url: str
) -> None:
    first, second = (Monitor(DetectorSet.load(detector_dir), MonitorStore(pg_url), SERVICES) for _ in "ab")
    first.start()
    second.start()
    request, response = events(1, seed=5, shift_after=10)[:2]
    first.ingest(request)
    first.store.close()  # the replica that took the request is gone before the response comes
    second.ingest(response)
    assert second.status()["window_rows"] == {"lens_features": 1, "lens_predictions": 1}


def test_replicas_taking_events_at_once_apply_each_once(
    detector_dir: Path, new_database: Callable[[], str]
) -> None:
    shared, alone = new_database(), new_database()
    stream = events(90, seed=7, shift_after=1000)
    single = Monitor(DetectorSet.load(detector_dir), MonitorStore(alone), SERVICES)
    single.start()
    for event in stream:
        single.ingest(event)
    replicas = [Monitor(DetectorSet.load(detector_dir), MonitorStore(shared), SERVICES) for _ in range(2)]
    for replica in replicas:
        replica.start()
    outcomes: list[str] = []
    failures: list[BaseException] = []

    def feed(replica: Monitor, part: list[LoggedEvent]) -> None:
        try:
            outcomes.extend(replica.ingest(event) for event in part)
        except Exception as exc:  # noqa: BLE001 (the assertion below names it)
            failures.append(exc)

    # every event sent to both replicas at once, as a logger retrying on a timeout might
    threads = [threading.Thread(target=feed, args=(r, stream)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert sorted(set(outcomes)) == ["accepted", "duplicate"]
    assert outcomes.count("accepted") == len(stream)
    # what counted is each call once (the order of calls differed, so the checks may differ)
    status, reference = replicas[0].status(), single.status()
    assert status["window_rows"] == reference["window_rows"]
    assert [r["rows"] for r in replicas[0].history()] == [r["rows"] for r in single.history()]


def test_a_scrape_of_any_replica_shows_what_another_one_saw(detector_dir: Path, pg_url: str) -> None:
    taking, scraped = (Monitor(DetectorSet.load(detector_dir), MonitorStore(pg_url), SERVICES) for _ in "ab")
    taking.start()
    scraped.start()
    for event in events(60, seed=9, shift_after=0):
        taking.ingest(event)
    text = TestClient(create_app(scraped)).get("/metrics").text
    assert 'eyeops_drift_is_drift{detector="lens_features"} 1.0' in text
    assert 'eyeops_drift_window_rows{stream="lens_predictions"} 10.0' in text


def test_an_event_on_one_replica_waits_for_the_event_another_is_applying(pg_url: str) -> None:
    """The advisory lock: one event's transaction at a time across replicas (a window is never taken
    twice, the online stream never forks); reads (status, scrapes) do not wait."""
    applying, waiting, reading = MonitorStore(pg_url), MonitorStore(pg_url), MonitorStore(pg_url)
    done = threading.Event()

    def second_event() -> None:
        with waiting.transaction() as tx:
            tx.append_rows("lens_features", [[1.0, 2.0, 3.0]])
        done.set()

    with applying.transaction() as tx:
        tx.append_rows("lens_features", [[0.0, 0.0, 0.0]])
        thread = threading.Thread(target=second_event)
        thread.start()
        assert not done.wait(1.0)  # held back while the first event's transaction is open
        with reading.transaction(exclusive=False) as reader:
            assert reader.window_fill() == {}  # a read goes on, and sees only committed rows
    assert done.wait(30.0)
    thread.join()
    with waiting.transaction(exclusive=False) as reader:
        assert reader.window_fill() == {"lens_features": 2}
