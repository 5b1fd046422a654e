"""Shared fixtures. Servers are real: PostgreSQL on 127.0.0.1:5432, tritonserver, kserve.ModelServer.
.ci/run starts PostgreSQL when it is not running; a missing server fails the tests, never skips them.

Tiers are folders (tests/tiers.py): every test gets the marker of its folder's tier here, and a unit-tier
test that starts a process or opens a socket fails with what it ran and where it belongs."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eyeops.devices import LayoutRegistry, load_layouts
from tests.tiers import mark_by_tier, tier_of

PG_ADMIN = os.environ.get("EYEOPS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_tier(items)


WHERE = (
    "move it to the tier of what it talks to: tests/process for a command it starts, tests/inprocess"
    " for a server or client on a local port, tests/integration for a real server"
)


@pytest.fixture(autouse=True)
def _unit_tier_contract(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit-tier test starts no process and opens no socket (connect, connect_ex, bind; any family).
    Clients over ASGI or httpx.MockTransport open none. gRPC's and libpq's C cores open theirs
    outside Python's socket module: such a test is in tests/inprocess by review, not by this guard."""
    if tier_of(request.node.path) != "unit":
        return

    def no_process(args: Any, *_: Any, **__: Any) -> None:
        raise AssertionError(f"a unit test starts no process, and this one ran {args!r}: {WHERE}")

    def no_socket(verb: str) -> Any:
        def refused(sock: socket.socket, address: Any, *_: Any) -> None:
            tried = f"would {verb} {address!r}"
            raise AssertionError(f"a unit test opens no socket, and this one {tried}: {WHERE}")

        return refused

    monkeypatch.setattr(subprocess, "Popen", no_process)
    for verb in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, verb, no_socket(verb))


@pytest.fixture(scope="session")
def layouts() -> LayoutRegistry:
    return load_layouts()


def _sa_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def create_pg_database() -> tuple[str, str]:
    name = f"eyeops_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, _sa_url(name)


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"
