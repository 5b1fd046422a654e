"""Fixtures the monitor's tests share: a detector set fitted once per module, and a monitor on a
fresh state database for each test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from eyeops_detectors.detectors import DetectorConfig, DetectorSet, Reference
from eyeops_detectors.monitor import Monitor
from eyeops_detectors.service import create_app
from eyeops_detectors.store import MonitorStore
from tests.reference_data import write_reference

WINDOW = 50


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("det")
    config = DetectorConfig(window=WINDOW, p_val=0.01, ert=200, online_reference=150)
    DetectorSet.fit(Reference.load(write_reference(tmp / "ref.npz", n=800)), config).save(tmp / "det")
    return tmp / "det"


@pytest.fixture
def client(detector_dir: Path, tmp_path: Path) -> TestClient:
    monitor = Monitor(
        DetectorSet.load(detector_dir), MonitorStore(tmp_path / "m.db"), {"lens": "lens", "ocr": "ocr"}
    )
    monitor.start()
    return TestClient(create_app(monitor))


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def new_database() -> Iterator[Callable[[], str]]:
    """Make fresh PostgreSQL databases (the cluster's store) on the local server; dropped after."""
    import psycopg

    made: list[str] = []

    def make() -> str:
        name = f"eyeops_monitor_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    yield make
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(new_database: Callable[[], str]) -> str:
    return new_database()
