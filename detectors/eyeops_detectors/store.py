"""The monitor's durable state in SQLite (one file; WAL): events seen (de-duplication by Ce-Id),
rows waiting in each detector's window, the online detector's recent events (replayed on start),
detector results, logged lens answers, feedback and outcomes. A restart loses nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (ce_id TEXT, ce_type TEXT, component TEXT, at REAL,
    PRIMARY KEY (ce_id, ce_type, component));
CREATE TABLE IF NOT EXISTS window_rows (stream TEXT, seq INTEGER PRIMARY KEY AUTOINCREMENT, row TEXT);
CREATE INDEX IF NOT EXISTS window_rows_stream ON window_rows (stream, seq);
CREATE TABLE IF NOT EXISTS online_rows (seq INTEGER PRIMARY KEY AUTOINCREMENT, row TEXT);
CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, detector TEXT, at REAL,
    is_drift INTEGER, p_values TEXT, rows INTEGER);
CREATE TABLE IF NOT EXISTS answers (ce_id TEXT, eye_id TEXT, at REAL, answer TEXT,
    PRIMARY KEY (ce_id, eye_id));
CREATE INDEX IF NOT EXISTS answers_eye ON answers (eye_id, at);
CREATE TABLE IF NOT EXISTS feedback (eye_id TEXT PRIMARY KEY, implanted_size_mm REAL,
    surgery_date TEXT, request_id TEXT, at REAL);
CREATE TABLE IF NOT EXISTS outcomes (eye_id TEXT PRIMARY KEY, exam_date TEXT, vault_um REAL,
    error_um REAL, covered INTEGER, in_range INTEGER, at REAL);
CREATE TABLE IF NOT EXISTS patients (patient TEXT PRIMARY KEY, seq INTEGER);
CREATE TABLE IF NOT EXISTS ocr_fields (id INTEGER PRIMARY KEY AUTOINCREMENT, device_kind TEXT,
    review INTEGER, at REAL);
CREATE INDEX IF NOT EXISTS ocr_fields_kind ON ocr_fields (device_kind, id);
"""


class MonitorStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def transaction(self) -> _Tx:
        return _Tx(self)

    # -- events ----------------------------------------------------------------------------------
    def first_sight(self, ce_id: str, ce_type: str, component: str) -> bool:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)", (ce_id, ce_type, component, time.time())
        )
        return cur.rowcount == 1

    # -- windows ---------------------------------------------------------------------------------
    def append_rows(self, stream: str, rows: list[list[float]]) -> int:
        self._conn.executemany(
            "INSERT INTO window_rows (stream, row) VALUES (?, ?)", [(stream, json.dumps(r)) for r in rows]
        )
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM window_rows WHERE stream = ?", (stream,)
        ).fetchone()
        return int(count)

    def take_window(self, stream: str, size: int) -> list[list[float]]:
        rows = self._conn.execute(
            "SELECT seq, row FROM window_rows WHERE stream = ? ORDER BY seq LIMIT ?", (stream, size)
        ).fetchall()
        if rows:
            self._conn.execute("DELETE FROM window_rows WHERE stream = ? AND seq <= ?", (stream, rows[-1][0]))
        return [json.loads(r) for _, r in rows]

    def window_fill(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT stream, COUNT(*) FROM window_rows GROUP BY stream").fetchall())

    def append_online(self, rows: list[list[float]], keep: int) -> None:
        self._conn.executemany("INSERT INTO online_rows (row) VALUES (?)", [(json.dumps(r),) for r in rows])
        self._conn.execute(
            "DELETE FROM online_rows WHERE seq <= (SELECT MAX(seq) FROM online_rows) - ?", (keep,)
        )

    def clear_online(self) -> None:
        self._conn.execute("DELETE FROM online_rows")

    def online_rows(self) -> list[list[float]]:
        return [json.loads(r) for (r,) in self._conn.execute("SELECT row FROM online_rows ORDER BY seq")]

    def first_eye(self, patient: str, keep: int) -> bool:
        """True for the first eye of a patient among the last `keep` patients seen."""
        (top,) = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM patients").fetchone()
        cur = self._conn.execute("INSERT OR IGNORE INTO patients VALUES (?, ?)", (patient, top + 1))
        if cur.rowcount == 1:
            self._conn.execute("DELETE FROM patients WHERE seq <= ?", (top + 1 - keep,))
            return True
        return False

    # -- results ---------------------------------------------------------------------------------
    def record_result(self, detector: str, is_drift: bool, p_values: dict[str, float], rows: int) -> None:
        self._conn.execute(
            "INSERT INTO results (detector, at, is_drift, p_values, rows) VALUES (?, ?, ?, ?, ?)",
            (detector, time.time(), int(is_drift), json.dumps(p_values), rows),
        )

    def results(self, detector: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT detector, at, is_drift, p_values, rows FROM results"
        args: tuple[Any, ...] = ()
        if detector:
            query, args = query + " WHERE detector = ?", (detector,)
        return [
            {"detector": d, "at": at, "is_drift": bool(f), "p_values": json.loads(p), "rows": n}
            for d, at, f, p, n in self._conn.execute(query + " ORDER BY id", args)
        ]

    # -- ground truth ----------------------------------------------------------------------------
    def record_answer(self, ce_id: str, eye_id: str, answer: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?)",
            (ce_id, eye_id, time.time(), json.dumps(answer)),
        )

    def answer_for(self, eye_id: str, request_id: str | None) -> dict[str, Any] | None:
        if request_id:
            row = self._conn.execute(
                "SELECT answer FROM answers WHERE eye_id = ? AND ce_id = ?", (eye_id, request_id)
            ).fetchone()
        else:  # the newest answer given for the eye
            row = self._conn.execute(
                "SELECT answer FROM answers WHERE eye_id = ? ORDER BY at DESC LIMIT 1", (eye_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def record_feedback(self, eye_id: str, size_mm: float, surgery_date: str, request_id: str | None) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?)",
            (eye_id, size_mm, surgery_date, request_id, time.time()),
        )

    def feedback_for(self, eye_id: str) -> tuple[float, str, str | None] | None:
        row = self._conn.execute(
            "SELECT implanted_size_mm, surgery_date, request_id FROM feedback WHERE eye_id = ?", (eye_id,)
        ).fetchone()
        return None if row is None else (float(row[0]), str(row[1]), row[2])

    def record_outcome(
        self,
        eye_id: str,
        exam_date: str,
        vault_um: float,
        error_um: float | None,
        covered: bool | None,
        in_range: bool | None,
    ) -> None:
        """An observed postoperative vault; error/covered/in_range once it is joined to a prediction."""
        self._conn.execute(
            "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (eye_id, exam_date, vault_um, error_um, covered, in_range, time.time()),
        )

    def outcome_for(self, eye_id: str) -> tuple[str, float] | None:
        row = self._conn.execute(
            "SELECT exam_date, vault_um FROM outcomes WHERE eye_id = ?", (eye_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def recent_outcomes(self, limit: int) -> list[tuple[float, bool, bool]]:
        rows = self._conn.execute(
            "SELECT error_um, covered, in_range FROM outcomes WHERE error_um IS NOT NULL"
            " ORDER BY at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(float(e), bool(c), bool(r)) for e, c, r in rows]

    def record_ocr_fields(self, device_kind: str, reviews: list[bool], keep: int) -> float:
        """Add one exam's fields; keep the newest `keep` of the kind; return their review rate."""
        now = time.time()
        self._conn.executemany(
            "INSERT INTO ocr_fields (device_kind, review, at) VALUES (?, ?, ?)",
            [(device_kind, int(r), now) for r in reviews],
        )
        self._conn.execute(
            "DELETE FROM ocr_fields WHERE device_kind = ? AND id <= (SELECT id FROM ocr_fields"
            " WHERE device_kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (device_kind, device_kind, keep),
        )
        (rate,) = self._conn.execute(
            "SELECT AVG(review) FROM ocr_fields WHERE device_kind = ?", (device_kind,)
        ).fetchone()
        return float(rate or 0.0)

    def review_rates(self) -> dict[str, float]:
        """Review rate of the fields kept for each device kind (record_ocr_fields keeps the newest)."""
        rows = self._conn.execute(
            "SELECT device_kind, AVG(review) FROM ocr_fields GROUP BY device_kind"
        ).fetchall()
        return {k: float(v) for k, v in rows}


class _Tx:
    """One event, one transaction: its rows, windows and results commit together or not at all."""

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def __enter__(self) -> MonitorStore:
        self.store._lock.acquire()
        self.store._conn.execute("BEGIN IMMEDIATE")
        return self.store

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
