"""The offline log of the lens features: every pushed exam's row, appended by us, read back for
point-in-time correctness (`eyeops.features.repository.known_at`).

Local profile: one parquet file per view under the repository, appended atomically. Cluster
profile: one PostgreSQL table per view (`lens_<view>`). Callers serialize writes to one file (the
outbox writer, `eyeops.features.outbox`, is the one writer of a process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from eyeops.features.views import JOIN_KEY


def offline_rows(store: Any, view: str) -> pd.DataFrame:
    """A view's offline log: eye id, event and ingestion (`created`) times, values."""
    offline = store.config.offline_store
    if getattr(offline, "type", "file") == "postgres":
        engine = postgres_engine(offline)
        try:
            return pd.read_sql_table(f"lens_{view}", engine)
        finally:
            engine.dispose()
    path = offline_file(store, view)
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def offline_file(store: Any, view: str) -> Path:
    """The parquet file of a view's offline log (its FileSource path, under the repository)."""
    source = store.get_feature_view(view).batch_source
    path = Path(source.path)
    return path if path.is_absolute() else Path(store.config.repo_path) / path


def append_parquet(path: Path, frame: pd.DataFrame) -> bool:
    """Append rows to a parquet file atomically and at most once.

    The new file is written beside the old one, flushed, and renamed over it, so a reader sees the
    old rows or all of them and a crash mid-write leaves the old file whole. A row already in the
    file (same values and event time, whenever written: a retried push) is not appended again. Returns whether
    anything was written. Callers serialize writes to one file (eyeops.features.outbox).
    """
    import os

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)

    # The same exam pushed again (a retry), or two copies of one exam in one batch, differ only
    # in when they were written: one row between them.
    def same(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(v for k, v in row.items() if k != "created")

    previous = pq.read_table(path, memory_map=False) if path.exists() else None
    have: set[tuple[Any, ...]] = set()
    if previous is not None:
        table = table.select(previous.schema.names).cast(previous.schema)
        # only the rows of these eyes can be the same (a Python set of the whole log per append
        # grew with the log; this filter runs in Arrow)
        eyes = table.column(JOIN_KEY)
        have = {same(r) for r in previous.filter(pc.is_in(previous.column(JOIN_KEY), eyes)).to_pylist()}
    fresh = []
    for i, row in enumerate(table.to_pylist()):
        key = same(row)
        if key not in have:
            have.add(key)
            fresh.append(i)
    if not fresh:
        return False
    table = table.take(fresh) if previous is None else pa.concat_tables([previous, table.take(fresh)])
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def postgres_engine(config: Any) -> Any:
    """A SQLAlchemy engine on the Feast PostgreSQL offline store's database."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import URL

    url = URL.create(
        "postgresql+psycopg",
        username=config.user,
        password=config.password or None,
        host=config.host,
        port=config.port,
        database=config.database,
    )
    return create_engine(url, hide_parameters=True)


def append_postgres(config: Any, table: str, frame: pd.DataFrame) -> None:
    engine = postgres_engine(config)
    try:
        frame.to_sql(table, engine, if_exists="append", index=False)
    finally:
        engine.dispose()
