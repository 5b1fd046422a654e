"""The monitor's durable state: events seen (de-duplication by Ce-Id), lens requests waiting for
their response, rows waiting in each detector's window, the online detector's recent events (replayed
on start, and by a replica that finds another one fed it since), detector results, logged lens
answers, the rolling expected performance, feedback, outcomes and every gauge's last value. One
transaction per event; a restart loses nothing.

SQLite (one file, WAL) on one machine; PostgreSQL on a cluster (`postgresql://...`), where several
monitor replicas share one database: each event's transaction first takes one transaction-level
advisory lock, so events are applied one at a time, in one order, whichever replica received them.
The SQL is the part both speak (ON CONFLICT upserts, LIMIT/OFFSET); only the table definitions differ.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

TABLES = """
CREATE TABLE IF NOT EXISTS seen (ce_id TEXT, ce_type TEXT, component TEXT, at FLOAT8,
    PRIMARY KEY (ce_id, ce_type, component));
CREATE TABLE IF NOT EXISTS window_rows (seq SERIAL_PK, stream TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS window_rows_stream ON window_rows (stream, seq);
CREATE TABLE IF NOT EXISTS online_rows (seq SERIAL_PK, data TEXT);
CREATE TABLE IF NOT EXISTS results (id SERIAL_PK, detector TEXT, at FLOAT8, is_drift INTEGER,
    p_values TEXT, n_rows INTEGER);
CREATE TABLE IF NOT EXISTS answers (ce_id TEXT, eye_id TEXT, at FLOAT8, answer TEXT,
    PRIMARY KEY (ce_id, eye_id));
CREATE INDEX IF NOT EXISTS answers_eye ON answers (eye_id, at);
CREATE TABLE IF NOT EXISTS feedback (eye_id TEXT PRIMARY KEY, implanted_size_mm FLOAT8,
    surgery_date TEXT, request_id TEXT, at FLOAT8);
CREATE TABLE IF NOT EXISTS outcomes (eye_id TEXT PRIMARY KEY, exam_date TEXT, vault_um FLOAT8,
    error_um FLOAT8, covered INTEGER, in_range INTEGER, at FLOAT8);
CREATE TABLE IF NOT EXISTS off_recommendation (eye_id TEXT PRIMARY KEY, supported INTEGER,
    covered INTEGER, at FLOAT8);
CREATE TABLE IF NOT EXISTS vault_readings (eye_id TEXT, exam_date TEXT, vault_um FLOAT8, at FLOAT8,
    PRIMARY KEY (eye_id, exam_date));
CREATE TABLE IF NOT EXISTS patients (patient TEXT PRIMARY KEY, seq BIGINT);
CREATE TABLE IF NOT EXISTS ocr_fields (id SERIAL_PK, device_kind TEXT, review INTEGER, at FLOAT8);
CREATE INDEX IF NOT EXISTS ocr_fields_kind ON ocr_fields (device_kind, id);
CREATE TABLE IF NOT EXISTS pending (seq SERIAL_PK, ce_id TEXT, data TEXT, at FLOAT8);
CREATE INDEX IF NOT EXISTS pending_ce ON pending (ce_id, seq);
CREATE TABLE IF NOT EXISTS online_version (id INTEGER PRIMARY KEY, token TEXT);
CREATE TABLE IF NOT EXISTS expected (seq SERIAL_PK, abs_error FLOAT8, p_in FLOAT8);
CREATE TABLE IF NOT EXISTS gauges (name TEXT, labels TEXT, value FLOAT8, PRIMARY KEY (name, labels));
"""
# pg_advisory_xact_lock's key: every replica of the monitor on one database takes the same one.
ADVISORY_LOCK = 0x6579656F7073  # "eyeops"
TRIM_EVERY = 100  # rows between trims of the tables kept to their newest rows (pending, expected)


class _Sqlite:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(TABLES.replace("SERIAL_PK", "INTEGER PRIMARY KEY AUTOINCREMENT"))

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    def begin(self, exclusive: bool = True) -> None:
        # IMMEDIATE: the write lock from the start, so two processes on one file take turns
        self.conn.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        with self.conn.transaction():
            # replicas starting together: one creates the tables, the others then find them
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
            for statement in TABLES.replace(
                "SERIAL_PK", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
            ).split(";"):
                if statement.strip():
                    self.conn.execute(statement)
        self.conn.commit()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def begin(self, exclusive: bool = True) -> None:
        # psycopg opens the transaction at this first statement; the lock is held until it ends, so
        # replicas apply events one at a time (a reader, e.g. a scrape, takes none)
        if exclusive:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


class MonitorStore:
    def __init__(self, where: Path | str) -> None:
        """A SQLite file path, or a `postgresql://` URL."""
        text = str(where)
        self._db: _Sqlite | _Postgres = (
            _Postgres(text)
            if text.startswith(("postgresql://", "postgresql+psycopg://"))
            else _Sqlite(Path(text))
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def transaction(self, exclusive: bool = True) -> _Tx:
        """One event's changes, applied alone (`exclusive`: no other transaction of this store or,
        on PostgreSQL, of another replica runs beside it); exclusive=False for reads."""
        return _Tx(self, exclusive)

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._db.execute(sql, params)

    # -- events ----------------------------------------------------------------------------------
    def first_sight(self, ce_id: str, ce_type: str, component: str) -> bool:
        cur = self._x(
            "INSERT INTO seen VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (ce_id, ce_type, component, time.time()),
        )
        return bool(cur.rowcount == 1)

    # -- windows ---------------------------------------------------------------------------------
    def append_rows(self, stream: str, rows: list[list[float]]) -> int:
        self._db.executemany(
            "INSERT INTO window_rows (stream, data) VALUES (?, ?)", [(stream, json.dumps(r)) for r in rows]
        )
        (count,) = self._x("SELECT COUNT(*) FROM window_rows WHERE stream = ?", (stream,)).fetchone()
        return int(count)

    def take_window(self, stream: str, size: int) -> list[list[float]]:
        rows = self._x(
            "SELECT seq, data FROM window_rows WHERE stream = ? ORDER BY seq LIMIT ?", (stream, size)
        ).fetchall()
        if rows:
            self._x("DELETE FROM window_rows WHERE stream = ? AND seq <= ?", (stream, rows[-1][0]))
        return [json.loads(r) for _, r in rows]

    def window_fill(self) -> dict[str, int]:
        return {
            s: int(n)
            for s, n in self._x("SELECT stream, COUNT(*) FROM window_rows GROUP BY stream").fetchall()
        }

    def append_online(self, rows: list[list[float]], keep: int) -> str:
        """Keep the online detector's newest `keep` events; returns the stream's new version."""
        self._db.executemany("INSERT INTO online_rows (data) VALUES (?)", [(json.dumps(r),) for r in rows])
        self._x("DELETE FROM online_rows WHERE seq <= (SELECT MAX(seq) FROM online_rows) - ?", (keep,))
        return self._new_online_version()

    def clear_online(self) -> str:
        self._x("DELETE FROM online_rows")
        return self._new_online_version()

    def _new_online_version(self) -> str:
        """A fresh token (never a counter: a rolled-back transaction's number could come back with
        other rows behind it)."""
        token = uuid.uuid4().hex
        self._x(
            "INSERT INTO online_version VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET token = excluded.token",
            (token,),
        )
        return token

    def online_version(self) -> str | None:
        """Which online rows the stored stream holds: a replica whose detector was fed another
        version replays them first."""
        row = self._x("SELECT token FROM online_version WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def online_rows(self) -> list[list[float]]:
        return [json.loads(r) for (r,) in self._x("SELECT data FROM online_rows ORDER BY seq").fetchall()]

    # -- lens requests waiting for their response --------------------------------------------------
    def push_pending(self, ce_id: str, rows: list[list[float]], ids: list[str | None], keep: int) -> None:
        """A lens predictor request; it counts when its 200 response arrives (on any replica).
        Requests never answered (refused, or their response lost) are trimmed to the newest `keep`."""
        self._append(
            "pending",
            ("ce_id", "data", "at"),
            [(ce_id, json.dumps({"rows": rows, "ids": ids}), time.time())],
            keep,
        )

    def pop_pending(self, ce_id: str) -> tuple[list[list[float]], list[str | None]] | None:
        """The oldest request still waiting under this Ce-Id, removed; None when there is none."""
        row = self._x(
            "DELETE FROM pending WHERE seq = (SELECT MIN(seq) FROM pending WHERE ce_id = ?) RETURNING data",
            (ce_id,),
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return [list(map(float, r)) for r in data["rows"]], list(data["ids"])

    # -- expected performance (before outcomes) ----------------------------------------------------
    def record_expected(self, values: list[tuple[float, float | None]], keep: int) -> None:
        """Add answers' (expected |error|, P(in range)); the newest `keep` count (`expected_means`)."""
        self._append("expected", ("abs_error", "p_in"), values, keep)

    def _append(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], keep: int) -> None:
        """Insert into a table keyed by `seq`, and every TRIM_EVERY rows drop all but the newest
        `keep` (a trim per insert cost PostgreSQL a statement per event for nothing)."""
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) RETURNING seq"
        for row in rows:
            (seq,) = self._x(sql, row).fetchone()
            if int(seq) % TRIM_EVERY == 0:
                self._x(f"DELETE FROM {table} WHERE seq <= ?", (int(seq) - keep,))

    def expected_means(self, keep: int) -> tuple[float | None, float | None]:
        """Means over the newest `keep` answers (None: no answer yet)."""
        mean_abs, mean_p = self._x(
            "SELECT AVG(abs_error), AVG(p_in) FROM expected WHERE seq > (SELECT MAX(seq) FROM expected) - ?",
            (keep,),
        ).fetchone()
        return (
            None if mean_abs is None else float(mean_abs),
            None if mean_p is None else float(mean_p),
        )

    # -- gauges ------------------------------------------------------------------------------------
    def set_gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """A gauge's newest value, whichever replica set it (NaN kept as NULL: SQLite has no NaN)."""
        self._x(
            "INSERT INTO gauges VALUES (?, ?, ?) ON CONFLICT (name, labels) DO UPDATE SET value = excluded.value",
            (name, json.dumps(list(labels)), None if math.isnan(value) else float(value)),
        )

    def gauges(self) -> list[tuple[str, tuple[str, ...], float]]:
        return [
            (str(name), tuple(json.loads(labels)), math.nan if value is None else float(value))
            for name, labels, value in self._x("SELECT name, labels, value FROM gauges").fetchall()
        ]

    def first_eye(self, patient: str, keep: int) -> bool:
        """True for the first eye of a patient among the last `keep` patients seen."""
        (top,) = self._x("SELECT COALESCE(MAX(seq), 0) FROM patients").fetchone()
        cur = self._x("INSERT INTO patients VALUES (?, ?) ON CONFLICT DO NOTHING", (patient, int(top) + 1))
        if cur.rowcount == 1:
            self._x("DELETE FROM patients WHERE seq <= ?", (int(top) + 1 - keep,))
            return True
        return False

    # -- results ---------------------------------------------------------------------------------
    def record_result(self, detector: str, is_drift: bool, p_values: dict[str, float], rows: int) -> None:
        self._x(
            "INSERT INTO results (detector, at, is_drift, p_values, n_rows) VALUES (?, ?, ?, ?, ?)",
            (detector, time.time(), int(is_drift), json.dumps(p_values), rows),
        )

    def results(self, detector: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT detector, at, is_drift, p_values, n_rows FROM results"
        args: tuple[Any, ...] = ()
        if detector:
            query, args = query + " WHERE detector = ?", (detector,)
        return [
            {"detector": d, "at": float(at), "is_drift": bool(f), "p_values": json.loads(p), "rows": int(n)}
            for d, at, f, p, n in self._x(query + " ORDER BY id", args).fetchall()
        ]

    # -- ground truth ----------------------------------------------------------------------------
    def record_answer(self, ce_id: str, eye_id: str, answer: dict[str, Any]) -> None:
        self._x(
            "INSERT INTO answers VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (ce_id, eye_id, time.time(), json.dumps(answer)),
        )

    def answer_for(self, eye_id: str, request_id: str | None) -> dict[str, Any] | None:
        if request_id:
            row = self._x(
                "SELECT answer FROM answers WHERE eye_id = ? AND ce_id = ?", (eye_id, request_id)
            ).fetchone()
        else:  # the newest answer given for the eye
            row = self._x(
                "SELECT answer FROM answers WHERE eye_id = ? ORDER BY at DESC LIMIT 1", (eye_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def record_feedback(self, eye_id: str, size_mm: float, surgery_date: str, request_id: str | None) -> None:
        self._x(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?) ON CONFLICT (eye_id) DO UPDATE SET"
            " implanted_size_mm = excluded.implanted_size_mm, surgery_date = excluded.surgery_date,"
            " request_id = excluded.request_id, at = excluded.at",
            (eye_id, size_mm, surgery_date, request_id, time.time()),
        )

    def feedback_for(self, eye_id: str) -> tuple[float, str, str | None] | None:
        row = self._x(
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
        self._x(
            "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (eye_id) DO UPDATE SET"
            " exam_date = excluded.exam_date, vault_um = excluded.vault_um, error_um = excluded.error_um,"
            " covered = excluded.covered, in_range = excluded.in_range, at = excluded.at",
            (eye_id, exam_date, vault_um, error_um, _int(covered), _int(in_range), time.time()),
        )

    def record_off_recommendation(self, eye_id: str, supported: bool, covered: bool) -> None:
        """A joined outcome of an eye implanted with a size other than the one recommended: whether
        that size was supported for the eye (an interval) or not (bounds), and whether it covered."""
        self._x(
            "INSERT INTO off_recommendation VALUES (?, ?, ?, ?) ON CONFLICT (eye_id) DO UPDATE SET"
            " supported = excluded.supported, covered = excluded.covered, at = excluded.at",
            (eye_id, int(supported), int(covered), time.time()),
        )

    def recent_off_recommendation(self, supported: bool, limit: int) -> list[bool]:
        """Whether each of the newest `limit` off-recommendation outcomes of that support covered."""
        rows = self._x(
            "SELECT covered FROM off_recommendation WHERE supported = ? ORDER BY at DESC LIMIT ?",
            (int(supported), limit),
        ).fetchall()
        return [bool(c) for (c,) in rows]

    def record_vault(self, eye_id: str, exam_date: str, vault_um: float) -> None:
        """Every accepted AS-OCT vault of an eye, by exam date (which one is the outcome depends on the
        surgery date, which may arrive later)."""
        self._x(
            "INSERT INTO vault_readings VALUES (?, ?, ?, ?) ON CONFLICT (eye_id, exam_date) DO NOTHING",
            (eye_id, exam_date, vault_um, time.time()),
        )

    def first_vault_between(self, eye_id: str, first: str, last: str) -> tuple[str, float] | None:
        """The earliest vault reading of the eye dated within [first, last] (ISO dates)."""
        row = self._x(
            "SELECT exam_date, vault_um FROM vault_readings WHERE eye_id = ? AND exam_date >= ?"
            " AND exam_date <= ? ORDER BY exam_date LIMIT 1",
            (eye_id, first, last),
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def outcome_for(self, eye_id: str) -> tuple[str, float] | None:
        row = self._x("SELECT exam_date, vault_um FROM outcomes WHERE eye_id = ?", (eye_id,)).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def recent_outcomes(self, limit: int) -> list[tuple[float, bool, bool]]:
        rows = self._x(
            "SELECT error_um, covered, in_range FROM outcomes WHERE error_um IS NOT NULL"
            " ORDER BY at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(float(e), bool(c), bool(r)) for e, c, r in rows]

    def record_ocr_fields(self, device_kind: str, reviews: list[bool], keep: int) -> float:
        """Add one exam's fields; keep the newest `keep` of the kind; return their review rate."""
        now = time.time()
        self._db.executemany(
            "INSERT INTO ocr_fields (device_kind, review, at) VALUES (?, ?, ?)",
            [(device_kind, int(r), now) for r in reviews],
        )
        self._x(
            "DELETE FROM ocr_fields WHERE device_kind = ? AND id <= (SELECT id FROM ocr_fields"
            " WHERE device_kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (device_kind, device_kind, keep),
        )
        (rate,) = self._x(
            "SELECT AVG(review) FROM ocr_fields WHERE device_kind = ?", (device_kind,)
        ).fetchone()
        return float(rate or 0.0)

    def review_rates(self) -> dict[str, float]:
        """Review rate of the fields kept for each device kind (record_ocr_fields keeps the newest)."""
        rows = self._x("SELECT device_kind, AVG(review) FROM ocr_fields GROUP BY device_kind").fetchall()
        return {k: float(v) for k, v in rows}


def _int(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


class _Tx:
    """One event, one transaction: its rows, windows and results commit together or not at all."""

    def __init__(self, store: MonitorStore, exclusive: bool = True) -> None:
        self.store = store
        self.exclusive = exclusive

    def __enter__(self) -> MonitorStore:
        self.store._lock.acquire()
        try:
            self.store._db.begin(self.exclusive)
        except BaseException:
            self.store._lock.release()
            raise
        return self.store

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type:
                self.store._db.rollback()
            else:
                self.store._db.commit()
        finally:
            self.store._lock.release()
