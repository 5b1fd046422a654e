"""The review console's defences, through Starlette's test client: identities only from the sign-in
proxy, odd numbers and deep JSON refused with a 400, typed values kept only for the session's own
reviewer, bodies not read before the caller is known and never past a ceiling, sessions that end with
a person, a role or a password, throttled sign-ins, and tokens and cookies in any text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from eyeops.console.app import SESSION_COOKIE, ConsoleConfig, create_app
from eyeops.console.users import Sessions, add_user
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from tests.review_seed import seed_exam
from tests.unit.console_helpers import (
    KIND,
    PASSWORD,
    PROXY_SECRET,
    SECRET,
    Clock,
    Console,
    form_fields,
    make_console,
    sign_in,
)


@pytest.fixture
def console(sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path) -> Console:
    return make_console(sqlite_url, layouts, tmp_path)


def test_behind_an_oidc_proxy_the_forwarded_user_and_groups_decide(
    sqlite_url: str, layouts: LayoutRegistry
) -> None:
    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    config = ConsoleConfig(
        Sessions(SECRET),
        forwarded_user_header="X-Forwarded-User",
        group_roles={"eye-reviewers": "reviewer"},
        proxy_secret=PROXY_SECRET,
    )
    exam_id, _ = seed_exam(store.results, layouts[KIND], 3, doubtful=["k1_d"])
    proof = {"X-Eyeops-Proxy-Secret": PROXY_SECRET.decode()}
    with TestClient(create_app(store, lambda: layouts, config), headers=proof) as client:
        assert client.get("/queue").status_code == 401
        who = {"X-Forwarded-User": "carla@clinic", "X-Forwarded-Groups": "staff,eye-reviewers"}
        page = client.get(f"/exams/{exam_id}", headers=who)
        assert page.status_code == 200
        assert (
            client.get(
                "/queue", headers={"X-Forwarded-User": "dan", "X-Forwarded-Groups": "staff"}
            ).status_code
            == 403
        )
        done = client.post(f"/exams/{exam_id}/release", data=form_fields(page.text), headers=who)
        assert done.status_code == 200
        assert store.exam(exam_id).reviewed_by == "carla@clinic"  # type: ignore[union-attr]
    assert SESSION_COOKIE not in done.cookies


def test_queue_filter_and_onboarding_boxes_refuse_odd_numbers_with_a_400(console, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """NaN, infinity, numbers beyond a float and JSON nested too deeply were 500s (issue 28, item 6)."""
    import cv2
    import numpy as np

    app, _, _ = console
    sample = tmp_path / "sample.png"
    cv2.imwrite(str(sample), np.full((300, 400), 200, np.uint8))
    huge = "1" + "0" * 400
    number = '"type": "number", "x": 10, "y": 60, "w": 100, "h": 30'
    odd_boxes = [
        "[" * 100_000 + "]" * 100_000,
        '[{"name": "patient_id", "type": "patient id", "x": 1e400, "y": 10, "w": 50, "h": 30}]',
        f'[{{"name": "patient_id", "type": "patient id", "x": {huge}, "y": 10, "w": 50, "h": 30}}]',
        f'[{{"name": "al_mm", {number}, "low": 20, "high": 30, "decimals": 1e400}}]',
        f'[{{"name": "al_mm", {number}, "low": NaN, "high": 30, "decimals": 2}}]',
        f'[{{"name": "al_mm", {number}, "low": 20, "high": Infinity, "decimals": 2}}]',
    ]
    with TestClient(app) as reviewer:
        sign_in(reviewer, "ana")
        for hours in ("nan", "inf", "-inf", "1e400", "-1", "1e20", huge):
            answer = reviewer.get("/queue", params={"older_than_h": hours})
            assert answer.status_code == 400 and "hours" in answer.text, (hours, answer.status_code)
        assert reviewer.get("/queue", params={"older_than_h": "4"}).status_code == 200
    with TestClient(app) as client:
        sign_in(client, "dev")
        csrf = form_fields(client.get("/devices").text)["csrf"]
        for boxes in odd_boxes:
            with sample.open("rb") as image:
                answer = client.post(
                    "/devices",
                    data={"csrf": csrf, "kind": "lensmeter", "boxes": boxes},
                    files={"sample": ("sample.png", image, "image/png")},
                )
            assert answer.status_code == 400, (boxes[:60], answer.status_code)


def test_typed_values_are_kept_only_from_the_sessions_own_form_for_that_reviewer(
    console, layouts: LayoutRegistry
) -> None:  # type: ignore[no-untyped-def]
    """Issue 28, item 4: an unauthenticated POST planted "values you typed"; the kept values were
    signed but readable, shown to whoever signed in next, and outlived the sign-out."""
    import base64

    from eyeops.console.app import PENDING_COOKIE

    app, store, clock = console
    exam_id, truth = seed_exam(store.results, layouts[KIND], 3, misread={"acd_mm": "9.99"})
    with TestClient(app) as stranger:  # no session at all
        planted = stranger.post(
            f"/exams/{exam_id}/release", data={"csrf": "x", "value__acd_mm": "1.23"}, follow_redirects=False
        )
        assert planted.status_code == 303 and PENDING_COOKIE not in planted.cookies
    with TestClient(app) as client:
        sign_in(client, "ana")
        form = form_fields(client.get(f"/exams/{exam_id}").text)
        clock.now += 3600
        forged = client.post(
            f"/exams/{exam_id}/release",
            data={**form, "csrf": "not-this-session", "value__acd_mm": "1.23"},
            follow_redirects=False,
        )
        assert PENDING_COOKIE not in forged.cookies  # another site's form, on an expired session
        kept = client.post(
            f"/exams/{exam_id}/release",
            data={**form, "value__acd_mm": truth["acd_mm"]},
            follow_redirects=False,
        )
        sealed = kept.cookies.get(PENDING_COOKIE)
        assert sealed
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        assert truth["acd_mm"].encode() not in raw and b"value__" not in raw  # encrypted
        # Ben signs in on the same browser: Ana's typing is not his to see.
        login = client.get(kept.headers["location"])
        fields = form_fields(login.text)
        back = client.post("/login", data={**fields, "user": "ben", "password": PASSWORD})
        assert back.url.path == f"/exams/{exam_id}" and "session had expired" not in back.text
        logout_form = form_fields(client.get("/queue").text)
        out = client.post("/logout", data={"csrf": logout_form["csrf"]}, follow_redirects=False)
        assert PENDING_COOKIE in out.headers.get("set-cookie", "")  # deleted with the session


def test_a_body_is_not_read_before_the_caller_is_known_and_forms_have_a_size(console) -> None:  # type: ignore[no-untyped-def]
    """Issue 28, item 3: a 300 MB multipart POST to /logout without a session was read whole."""
    app, _, _ = console
    read = {"bytes": 0}

    def body():  # type: ignore[no-untyped-def]
        for _ in range(64):
            read["bytes"] += 1 << 20
            yield b"x" * (1 << 20)

    with TestClient(app) as stranger:
        answer = stranger.post(
            "/logout",
            content=body(),
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert read["bytes"] <= 2 << 20  # the client's first chunks at most, never the whole body
    with TestClient(app) as client:
        sign_in(client, "ana")
        big = client.post("/logout", data={"csrf": "x", "pad": "y" * (300 << 10)}, follow_redirects=False)
        assert big.status_code == 413 and "KiB" in big.text
        huge_login = client.post("/login", data={"user": "ana", "password": "p" * (64 << 10)})
        assert huge_login.status_code == 413


def test_behind_the_proxy_only_the_proxy_may_name_a_user_and_metrics_live_apart(
    sqlite_url: str, layouts: LayoutRegistry
) -> None:
    """Issue 28, item 1: any pod reaching the console's port (Prometheus shared it) became any
    reviewer or device admin by sending X-Forwarded-User itself."""
    from eyeops.console.app import metrics_app

    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    roles = {"eye-reviewers": "reviewer", "eye-admins": "device_admin"}
    with pytest.raises(ValueError, match="proxy"):
        create_app(
            store, lambda: layouts, ConsoleConfig(Sessions(SECRET), forwarded_user_header="X-Forwarded-User")
        )
    config = ConsoleConfig(
        Sessions(SECRET),
        forwarded_user_header="X-Forwarded-User",
        group_roles=roles,
        proxy_secret=PROXY_SECRET,
        metrics_on_main_port=False,
    )
    exam_id, _ = seed_exam(store.results, layouts[KIND], 3, doubtful=["k1_d"])
    app = create_app(store, lambda: layouts, config)
    forged = {"X-Forwarded-User": "mallory", "X-Forwarded-Groups": "eye-reviewers,eye-admins"}
    with TestClient(app) as pod:  # a pod in a namespace the NetworkPolicy admits
        for proof in ({}, {"X-Eyeops-Proxy-Secret": "guess"}, {"X-Eyeops-Proxy-Secret": "p" * 31}):
            for path in ("/queue", f"/exams/{exam_id}", "/devices", f"/exams/{exam_id}/original.png"):
                answer = pod.get(path, headers={**forged, **proof})
                assert answer.status_code == 401 and "sign-in proxy" in answer.text, (path, proof)
        assert pod.get("/metrics").status_code == 404  # not on the pages' port
        assert pod.get("/readyz").status_code == 200 and pod.get("/healthz").status_code == 200
        proxied = pod.get("/queue", headers={**forged, "X-Eyeops-Proxy-Secret": PROXY_SECRET.decode()})
        assert proxied.status_code == 200
    with TestClient(metrics_app(app)) as prometheus:
        scraped = prometheus.get("/metrics")
        assert (
            scraped.status_code == 200 and 'eyeops_console_refused_total{reason="proxy"} 12.0' in scraped.text
        )
        assert prometheus.get("/queue", headers=forged).status_code == 404


def test_sessions_end_when_a_person_or_a_role_is_removed_or_the_password_changes(
    sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path
) -> None:
    """Issue 28, item 5: a person removed from the users file kept access for the session's 8 h."""
    from eyeops.console.users import UsersFile, remove_user

    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    path = tmp_path / "users.txt"
    add_user(path, "ana", ["reviewer", "device_admin"], PASSWORD)
    add_user(path, "ben", ["reviewer"], PASSWORD)
    app = create_app(store, lambda: layouts, ConsoleConfig(Sessions(SECRET), users=UsersFile(path)))
    with TestClient(app) as ana, TestClient(app) as ben:
        sign_in(ana, "ana")
        sign_in(ben, "ben")
        assert ana.get("/devices").status_code == 200 and ben.get("/queue").status_code == 200
        # a role taken away, the password kept: the role is gone on the next request
        path.write_text(path.read_text().replace("ana device_admin,reviewer ", "ana reviewer "))
        assert ana.get("/devices").status_code == 403 and ana.get("/queue").status_code == 200
        assert remove_user(path, "ben") and not remove_user(path, "ben")
        gone = ben.get("/queue", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
        add_user(path, "ana", ["reviewer"], "a new password, please")
        assert ana.get("/queue", follow_redirects=False).status_code == 303  # sessions before it end
        assert sign_in(ana, "ana", "a new password, please", follow=False).status_code == 303
        assert ana.get("/queue").status_code == 200


def test_failed_sign_ins_are_throttled_and_an_unknown_name_costs_a_password_check(
    console, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Issue 28, item 5: an unknown name answered faster than a wrong password, and nothing slowed
    guessing down."""
    import eyeops.console.app as console_app

    app, _, _ = console
    checked: list[str] = []
    real = console_app.verify_password

    def counting(password: str, encoded: str) -> bool:
        checked.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(console_app, "verify_password", counting)
    with TestClient(app) as client:
        assert sign_in(client, "nobody", follow=False).status_code == 401
        assert len(checked) == 1 and checked[0].startswith("scrypt$")  # as costly as a real check
        for _ in range(5):
            assert sign_in(client, "ana", "wrong password!", follow=False).status_code == 401
        blocked = sign_in(client, "ana", follow=False)  # the right password, after five failures
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert "too many failed sign-ins" in blocked.text and len(checked) == 6  # none checked
        assert sign_in(client, "ben", follow=False).status_code == 303  # another person is not held


def test_the_login_throttle_counts_per_name_and_per_address_in_a_window() -> None:
    from eyeops.console.users import LoginThrottle

    clock = Clock()
    throttle = LoginThrottle(per_user=3, per_address=5, window_s=60, clock=clock)
    for _ in range(3):
        throttle.failed("Ana", "10.0.0.1")
    assert throttle.wait_s("ana", "10.0.0.9") == 60  # names compare case-blind, any address
    clock.now += 30
    assert throttle.wait_s("ana", "10.0.0.9") == 30
    for name in ("b", "c"):
        throttle.failed(name, "10.0.0.1")
    assert throttle.wait_s("someone", "10.0.0.1") == 30  # five from one address, names sprayed
    assert throttle.wait_s("someone", "10.0.0.2") == 0
    clock.now += 31
    assert throttle.wait_s("ana", "10.0.0.1") == 0  # the window passed
    throttle.failed("ana", "10.0.0.3")
    throttle.succeeded("ana")
    assert throttle.wait_s("ana", "10.0.0.3") == 0


def test_tokens_and_cookies_in_any_text_are_refused_not_a_500(console) -> None:  # type: ignore[no-untyped-def]
    """Found by the console fuzz (tests/integration/test_console_fuzz.py): compare_digest raises on
    non-ASCII str, so a CSRF token or a session cookie with an accent was a 500."""
    app, _, _ = console
    cookies = ("eyeops_session=\u00e9.\u00e9", "eyeops_session=eyJ1IjoiYSJ9.\u00ff", "eyeops_pending=\u00e9")
    with TestClient(app) as client:
        for cookie in cookies:
            answer = client.get(
                "/queue", headers={"cookie": cookie.encode("latin-1")}, follow_redirects=False
            )
            assert answer.status_code == 303, cookie
        sign_in(client, "ana")
        answer = client.post("/logout", data={"csrf": "caf\u00e9"})
        assert answer.status_code == 403 and "stale" in answer.text
        for kind in ("nosuch", "a\x00b"):
            assert client.get("/queue", params={"kind": kind}).status_code == 400
        assert client.get("/queue", params={"reason": "a\x00b"}).status_code == 400


def test_every_route_has_a_body_ceiling_even_one_that_forgets_its_own(console) -> None:  # type: ignore[no-untyped-def]
    """Issue 28, item 3: uvicorn has no body limit, so a route that read its body without checking
    its length (one added later) would read any size. A server-wide ceiling sits under each route's."""
    from eyeops.console.app import MAX_FORM_BYTES, MAX_UPLOAD_BYTES

    app, _, _ = console

    async def careless(request: Request) -> dict[str, int]:  # reads whatever it is sent
        return {"bytes": len(await request.body())}

    app.add_api_route("/careless", careless, methods=["POST"])
    ceiling = MAX_UPLOAD_BYTES + MAX_FORM_BYTES

    def chunks(total: int):  # type: ignore[no-untyped-def]
        for _ in range(total // (1 << 20)):
            yield b"x" * (1 << 20)

    with TestClient(app) as client:
        assert client.post("/careless", content=b"x" * 1024).json() == {"bytes": 1024}
        streamed = client.post("/careless", content=chunks(ceiling + (2 << 20)))
        assert streamed.status_code == 413 and f"limit of {ceiling} bytes" in streamed.text
        declared = client.post("/careless", content=b"x", headers={"content-length": str(ceiling + 1)})
        assert declared.status_code == 413
