"""The Feast repository of the lens features: make one, fill its offline data, apply and
materialize it, and read features for training (historical, as known at each time).

The definitions live in eyeops/features/feature_repo/eyeops_features.py (package data: a template
that prepare_repo copies); this module only drives a FeatureStore. Serving reads and pushes go
through the online-store interface (`eyeops.features.online`).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from eyeops.features.offline_log import offline_rows
from eyeops.features.views import FEATURE_SERVICE, JOIN_KEY, VIEWS

DEFINITIONS = "eyeops_features.py"


def feature_repo_dir() -> Path:
    """The Feast repository template shipped in the package (never applied in place)."""
    from eyeops.resources import feature_repo_template

    return feature_repo_template()


def _utc(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values)
    return stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")


def offline_frames(cohort: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One frame per feature view from cohort rows (event time = the exam date)."""
    stamps = _utc(cohort["exam_date"])
    frames = {}
    for view, (_, columns) in VIEWS.items():
        frame = cohort[[JOIN_KEY, *columns]].copy()
        frame["event_timestamp"] = stamps.to_numpy()
        frame["created"] = stamps.to_numpy()
        frames[view] = frame.reset_index(drop=True)
    return frames


def write_offline_data(cohort: pd.DataFrame, repo: Path, postgres_url: str | None = None) -> None:
    """Parquet files under the repository (local profile), or tables `lens_<view>` in PostgreSQL."""
    if postgres_url is not None:
        from sqlalchemy import create_engine

        engine = create_engine(postgres_url, hide_parameters=True)
        try:
            for view, frame in offline_frames(cohort).items():
                frame.to_sql(f"lens_{view}", engine, if_exists="replace", index=False)
        finally:
            engine.dispose()
        return
    data = repo / "data"
    data.mkdir(parents=True, exist_ok=True)
    for view, frame in offline_frames(cohort).items():
        frame.to_parquet(data / f"{view}.parquet", index=False)


def prepare_repo(
    target: Path, online: str = "sqlite", redis_url: str | None = None, postgres_url: str | None = None
) -> Path:
    """A feature repository at `target`: our definitions plus a feature_store.yaml for one profile.
    With `postgres_url` (postgresql+psycopg://user@host:port/db) the registry and the offline
    store live in PostgreSQL, as in the cluster profile (set EYEOPS_FEAST_OFFLINE=postgres when
    applying, so the definitions use PostgreSQL sources)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(feature_repo_dir() / DEFINITIONS, target / DEFINITIONS)
    if online == "sqlite":
        store = "online_store:\n  type: sqlite\n  path: data/online.db\n"
    elif online == "redis":
        if not redis_url:
            raise ValueError("the redis profile needs a connection string, e.g. 127.0.0.1:6379,db=3")
        store = f'online_store:\n  type: redis\n  connection_string: "{redis_url}"\n'
    else:
        raise ValueError(f"unknown online store {online!r}; use sqlite or redis")
    registry = "registry: data/registry.db\n"
    offline = "offline_store:\n  type: file\n"
    if postgres_url is not None:
        from sqlalchemy.engine import make_url

        url = make_url(postgres_url)
        registry = f"registry:\n  registry_type: sql\n  path: {postgres_url}\n  cache_ttl_seconds: 60\n"
        offline = (
            f"offline_store:\n  type: postgres\n  host: {url.host}\n  port: {url.port or 5432}\n"
            f'  database: {url.database}\n  user: {url.username}\n  password: "{url.password or ""}"\n'
            "  sslmode: disable\n"
        )
    (target / "feature_store.yaml").write_text(
        "project: eyeops\nprovider: local\n"
        + registry
        + store
        + offline
        + "entity_key_serialization_version: 3\n"
    )
    (target / "data").mkdir(exist_ok=True)
    return target


def open_store(repo: Path) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


def definitions(repo: Path) -> list[Any]:
    """The Feast objects of the repository's definitions module (what `feast apply` registers)."""
    spec = importlib.util.spec_from_file_location("eyeops_feature_definitions", repo / DEFINITIONS)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(repo / DEFINITIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [module.eye, *module.feature_views.values(), module.derived, module.lens_v1]


def apply_and_materialize(store: Any, repo: Path, until: dt.datetime | None = None) -> None:
    store.apply(definitions(repo))
    end = until or dt.datetime.now(dt.UTC)
    store.materialize(start_date=end - dt.timedelta(days=365 * 30), end_date=end)


def online_features(store: Any, eye_ids: Sequence[str]) -> pd.DataFrame:
    service = store.get_feature_service(FEATURE_SERVICE)
    rows = [{JOIN_KEY: eye_id} for eye_id in eye_ids]
    frame: pd.DataFrame = store.get_online_features(features=service, entity_rows=rows).to_df()
    return frame


def historical_features(store: Any, entities: pd.DataFrame) -> pd.DataFrame:
    """Features for (eye_id, event_timestamp) rows as they were *known* at that time.

    Feast's point-in-time join takes, per view, the latest exam dated before the timestamp, whenever
    it was written: an exam back-filled after a surgery would then be visible "the day before" it.
    Every row carries its ingestion time (`created`), so where the exam Feast chose was written
    after the timestamp, the view's values are replaced by the latest exam that had been written by
    then (or left empty, which validation sets aside), and the derived features recomputed."""
    service = store.get_feature_service(FEATURE_SERVICE)
    frame: pd.DataFrame = store.get_historical_features(entity_df=entities, features=service).to_df()
    return known_at(store, frame)


def known_at(store: Any, joined: pd.DataFrame) -> pd.DataFrame:
    """`joined` (Feast's historical frame) with each view's values as known at each row's time."""
    import numpy as np

    from eyeops.features.views import TTL_DAYS
    from eyeops.lens.features import DERIVED_FEATURES, derive_features

    out = joined.reset_index(drop=True).copy()
    if out.empty:
        return out
    at = _utc(out["event_timestamp"])
    key = pd.DataFrame(
        {JOIN_KEY: out[JOIN_KEY].to_numpy(), "_at": at.to_numpy(), "_row": np.arange(len(out))}
    )
    changed = False
    for view, (_, columns) in VIEWS.items():
        logged = offline_rows(store, view)
        if logged.empty:
            continue
        rows = key.merge(logged, on=JOIN_KEY)
        rows["_event"], rows["_created"] = _utc(rows["event_timestamp"]), _utc(rows["created"])
        usable = (rows["_event"] <= rows["_at"]) & (
            rows["_event"] >= rows["_at"] - pd.Timedelta(days=TTL_DAYS)
        )
        rows = rows[usable].sort_values(["_row", "_event", "_created"])
        chosen = rows.groupby("_row").tail(1)  # what Feast's join took
        late = chosen.loc[chosen["_created"] > chosen["_at"], "_row"].to_numpy()
        if not len(late):
            continue
        changed = True
        known = rows[rows["_created"] <= rows["_at"]].groupby("_row").tail(1).set_index("_row")
        names = [c for c in columns if c in out.columns]
        for row in late:
            out.loc[row, names] = known.loc[row, names].to_numpy() if row in known.index else None
    if changed and all(c in out.columns for c in DERIVED_FEATURES):
        base = ["k1_d", "k2_d", "ata_mm", "wtw_mm", "sphere_d", "cyl_d"]
        derived = derive_features(out[base].apply(pd.to_numeric, errors="coerce"))
        for column in DERIVED_FEATURES:
            out[column] = derived[column]
    return out
