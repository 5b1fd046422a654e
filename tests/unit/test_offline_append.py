"""The offline feature log is appended atomically and at most once per row."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from eyeops.features.offline_log import append_parquet


def row(eye: str, wtw: float, day: int) -> pd.DataFrame:
    stamp = pd.Timestamp(f"2026-10-{day:02d}", tz="UTC")
    return pd.DataFrame([{"eye_id": eye, "wtw_mm": wtw, "event_timestamp": stamp, "created": stamp}])


def test_appends_new_rows_once_and_keeps_the_files_schema(tmp_path: Path) -> None:
    path = tmp_path / "data" / "biometry.parquet"
    assert append_parquet(path, row("P1-OD", 11.5, 1))
    assert append_parquet(path, row("P2-OS", 11.9, 2))
    assert not append_parquet(path, row("P1-OD", 11.5, 1))  # a retried push adds nothing
    assert append_parquet(path, row("P1-OD", 11.6, 3))  # a later exam of the same eye does
    table = pq.read_table(path)
    assert table.num_rows == 3 and table.schema.names == ["eye_id", "wtw_mm", "event_timestamp", "created"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["biometry.parquet"]  # no temp file left


def test_two_copies_of_one_exam_in_one_batch_make_one_row(tmp_path: Path) -> None:
    # 32 clients resending one rendered exam: two copies reached the outbox in one batch and both
    # were appended (the retry check only looked at rows already in the file)
    path = tmp_path / "biometry.parquet"
    twice = pd.concat([row("P1-OD", 11.5, 1), row("P1-OD", 11.5, 1), row("P2-OS", 11.9, 2)])
    assert append_parquet(path, twice)  # a new file
    assert pq.read_table(path).num_rows == 2
    again = pd.concat([row("P3-OD", 12.0, 3), row("P3-OD", 12.0, 3), row("P1-OD", 11.5, 1)])
    assert append_parquet(path, again)  # an existing file
    assert pq.read_table(path).num_rows == 3


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "biometry.parquet"
    append_parquet(path, row("P1-OD", 11.5, 1))
    before = path.read_bytes()
    bad = row("P2-OS", 11.9, 2).rename(columns={"wtw_mm": "acd_mm"})  # not this file's columns
    with pytest.raises(KeyError):
        append_parquet(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["biometry.parquet"]


def test_a_reader_never_sees_a_truncated_file_while_rows_are_appended(tmp_path: Path) -> None:
    path = tmp_path / "biometry.parquet"
    append_parquet(path, row("P0-OD", 11.0, 1))
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                # one open file: the rename swaps whole files under the name (pyarrow's
                # read_table(path) opens the name twice and can pair two versions)
                with path.open("rb") as handle:
                    seen.append(pq.read_table(handle).num_rows)
            except BaseException as exc:
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 60):
            append_parquet(path, row(f"P{i}-OD", 11.0 + i / 100, 1 + i % 28))
    finally:
        stop.set()
        reader.join()
    assert errors == [] and seen and min(seen) >= 1 and seen == sorted(seen)
    assert pq.read_table(path).num_rows == 60
