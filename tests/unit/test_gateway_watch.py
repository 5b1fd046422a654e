"""The folder watcher with real inotify events and real files (no services)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from eyeops.gateway.metrics import GatewayMetrics
from eyeops.gateway.outbox import Outbox
from eyeops.gateway.watch import Capturer, FolderWatcher
from tests.helpers import noise_png


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def watched(tmp_path: Path):  # type: ignore[no-untyped-def]
    outbox = Outbox(tmp_path / "state" / "outbox.db")
    registry = CollectorRegistry()
    capturer = Capturer(outbox, "autorefractor", ["*.png"], 5_000_000, GatewayMetrics(registry))
    export = tmp_path / "export"
    export.mkdir()
    watcher = FolderWatcher(export, capturer, rescan_interval_s=0.3, settle_s=2.0)
    watcher.start()
    try:
        yield export, outbox, registry
    finally:
        watcher.stop()
        outbox.close()


def test_a_file_is_captured_when_its_writer_closes_it(watched):
    export, outbox, registry = watched
    data = noise_png(200, 200)
    with (export / "exam-1.png").open("wb") as handle:
        handle.write(data[:1000])
        handle.flush()
        time.sleep(1.2)  # several rescans pass while the file is open and younger than settle_s
        assert outbox.counts()["received"] == 0
        handle.write(data[1000:])
    assert wait_for(lambda: outbox.counts()["received"] == 1)
    item = outbox.due("received", 5)[0]
    assert item.image == data
    assert registry.get_sample_value("eyeops_gateway_ack_seconds_count") == 1


def test_same_image_twice_is_one_item_and_other_names_are_ignored(watched):
    export, outbox, registry = watched
    data = noise_png(50, 50, seed=4)
    (export / "a.png").write_bytes(data)
    (export / "copy-of-a.png").write_bytes(data)
    (export / "sidecar.xml").write_text("<exam/>")
    (export / "b.png.part").write_bytes(noise_png(50, 50, seed=5))
    assert wait_for(lambda: registry.get_sample_value("eyeops_gateway_duplicate_files_total") == 1)
    assert outbox.counts()["received"] == 1


def test_files_that_arrived_while_down_are_found_by_the_first_scan(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    for i in range(3):
        path = export / f"old-{i}.png"
        path.write_bytes(noise_png(30, 30, seed=20 + i))
        os.utime(path, (time.time() - 60, time.time() - 60))
    outbox = Outbox(tmp_path / "outbox.db")
    capturer = Capturer(outbox, "autorefractor", ["*.png"], 5_000_000, GatewayMetrics(CollectorRegistry()))
    assert FolderWatcher(export, capturer, rescan_interval_s=60, settle_s=1).rescan() == 3
    assert outbox.counts()["received"] == 3


def test_a_file_moved_in_from_outside_the_folder_is_captured_at_once(tmp_path):
    """Only the arrival half of the move is seen (as when watchdog could not pair the halves of a
    rename in time): captured on the event, not at the next rescan."""
    outbox = Outbox(tmp_path / "state" / "outbox.db")
    capturer = Capturer(outbox, "autorefractor", ["*.png"], 5_000_000, GatewayMetrics(CollectorRegistry()))
    export, elsewhere = tmp_path / "export", tmp_path / "elsewhere"
    export.mkdir()
    elsewhere.mkdir()
    watcher = FolderWatcher(export, capturer, rescan_interval_s=3600, settle_s=3600)
    watcher.start()
    try:
        data = noise_png(120, 80)
        (elsewhere / "exam-9.png").write_bytes(data)
        os.replace(elsewhere / "exam-9.png", export / "exam-9.png")
        assert wait_for(lambda: outbox.counts()["received"] == 1, timeout=5)
        assert outbox.due("received", 5)[0].image == data
        os.replace(export / "exam-9.png", elsewhere / "exam-9.png")  # moved out: nothing to take
        time.sleep(0.3)
        assert outbox.counts()["received"] == 1
    finally:
        watcher.stop()
        outbox.close()


def test_a_file_too_fresh_for_the_first_scan_is_taken_once_it_settles(tmp_path):
    """A file written just before the watcher starts sends it no event, and the first scan skips it
    as too fresh: it is taken once it has been quiet for settle_s, not a whole rescan interval later."""
    outbox = Outbox(tmp_path / "state" / "outbox.db")
    capturer = Capturer(outbox, "autorefractor", ["*.png"], 5_000_000, GatewayMetrics(CollectorRegistry()))
    export = tmp_path / "export"
    export.mkdir()
    (export / "exam-1.png").write_bytes(noise_png(120, 80))
    watcher = FolderWatcher(export, capturer, rescan_interval_s=3600, settle_s=0.5)
    watcher.start()
    try:
        assert wait_for(lambda: outbox.counts()["received"] == 1, timeout=5)
    finally:
        watcher.stop()
        outbox.close()
