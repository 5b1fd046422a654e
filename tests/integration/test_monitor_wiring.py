"""The local stack's monitoring path with real processes: the lens transformer and predictor
(kserve.ModelServer) log to the monitoring service (the detectors environment's uvicorn) as KServe's
agent would; the monitor reads features, answers and the eye ids, and takes feedback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from eyeops.stack.lens import LensEndpoints, LensStack, prepare_local_lens
from eyeops.stack.monitor import MonitorStack, prepare_local_detectors

pytestmark = pytest.mark.slow


@dataclass
class Wired:
    lens: LensEndpoints
    monitor: str
    eye_ids: list[str]


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    root = tmp_path_factory.mktemp("wired")
    model_dir, repo, eye_ids = prepare_local_lens(root, say=lambda _: None)
    detectors = prepare_local_detectors(root, model_dir, ert=200, say=lambda _: None)
    monitor = MonitorStack(detectors, root / "monitor.db", root / "log")
    with monitor, LensStack(model_dir, repo, root / "log", logger_url=monitor.url) as lens:
        yield Wired(lens, monitor.url, eye_ids)


def wait_for(check, timeout_s: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_lens_traffic_reaches_the_monitor_and_feedback_is_taken(wired: Wired) -> None:
    for eye_id in wired.eye_ids[:3]:
        reply = httpx.post(
            f"{wired.lens.lens}/v1/models/lens:predict",
            json={"instances": [{"eye_id": eye_id}]},
            headers={"ce-id": f"req-{eye_id}"},
            timeout=30,
        )
        assert reply.status_code == 200

    def rows() -> int:
        return int(
            httpx.get(f"{wired.monitor}/status", timeout=5).json()["window_rows"].get("lens_features", 0)
        )

    # Three eyes of two patients (P…0 OD and OS, P…1 OD): the fellow eye does not feed the detectors.
    assert [e.rsplit("-", 1)[0] for e in wired.eye_ids[:3]].count(wired.eye_ids[0].rsplit("-", 1)[0]) == 2
    assert wait_for(lambda: rows() == 2), rows()
    metrics = httpx.get(f"{wired.monitor}/metrics", timeout=5).text
    for component, kind in (("predictor", "request"), ("predictor", "response"), ("transformer", "response")):
        line = f'eyeops_monitor_events_total{{component="{component}",service="lens",type="{kind}"}} 3.0'
        assert line in metrics, metrics
    assert "eyeops_monitor_rejected_total{" not in metrics  # nothing the logger sent was refused
    feedback = httpx.post(
        f"{wired.monitor}/feedback",
        json={"eye_id": wired.eye_ids[0], "implanted_size_mm": 12.6, "surgery_date": "2026-01-05",
              "request_id": f"req-{wired.eye_ids[0]}"},
        timeout=5,
    )  # fmt: skip
    assert feedback.status_code == 202 and feedback.json() == {"outcome": "recorded"}
