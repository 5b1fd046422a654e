"""The review console for its tests (tests/unit/test_console*.py, tests/process/test_finetune_jobs.py):
the console app on a fresh database with three people signed up, a clock the test moves, signing in
through the login form, the fields of a page's forms, and a recogniser that reads what was drawn."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from eyeops.console.app import ConsoleConfig, create_app
from eyeops.console.users import Sessions, add_user, load_users
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry

KIND = "optical_biometer"
PASSWORD = "correct horse battery"
SECRET = b"s" * 48
PROXY_SECRET = b"p" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Console = tuple[FastAPI, ReviewStore, Clock]


def make_console(sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path) -> Console:
    """(app, store, clock): the console on a migrated database, ana and ben reviewers and dev a device
    admin (password PASSWORD), sessions of 600 s on `clock`, crops and onboarded layouts in tmp_path."""
    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer"], PASSWORD)
    add_user(users, "ben", ["reviewer"], PASSWORD)
    add_user(users, "dev", ["device_admin"], PASSWORD)
    clock = Clock()
    config = ConsoleConfig(
        Sessions(SECRET, ttl_s=600, clock=clock),
        users=load_users(users),
        crops_dir=tmp_path / "crops",
        layouts_dir=tmp_path / "layouts",
    )
    app = create_app(store, lambda: layouts, config)
    return app, store, clock


def sign_in(client: TestClient, user: str, password: str = PASSWORD, follow: bool = True):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return client.post(
        "/login",
        data={"user": user, "password": password, "csrf": csrf.group(1), "next": "/queue"},
        follow_redirects=follow,
    )


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', html))


def truth_of(layout, index: int) -> str:  # type: ignore[no-untyped-def]
    from eyeops.synth.exams import render_one

    return render_one(layout, 4242, "eval", index, clean=True).texts["al_mm"]


def sign_in_from(client: TestClient, login_page: str):  # type: ignore[no-untyped-def]
    fields = form_fields(login_page)
    return client.post("/login", data={**fields, "user": "ana", "password": PASSWORD})


class TruthReader:
    """The recogniser as a test double: reads what the renderer drew (the Triton path is tested in
    tests/inprocess/test_transformer.py)."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def read(self, crops, grammars):  # type: ignore[no-untyped-def]
        return [(text, 0.999) for text in self.texts.values()]
