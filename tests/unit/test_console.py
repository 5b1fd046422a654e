"""The review console's pages through Starlette's test client: sign-in, roles, CSRF, release,
optimistic concurrency, expired sessions that keep typed values, no patient id in any URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from eyeops.console.app import SESSION_COOKIE, ConsoleConfig, create_app
from eyeops.console.users import Sessions, add_user, load_users, verify_password
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from tests.review_seed import seed_exam

pytestmark = pytest.mark.unit
KIND = "optical_biometer"
PASSWORD = "correct horse battery"
SECRET = b"s" * 48
PROXY_SECRET = b"p" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def console(sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path):  # type: ignore[no-untyped-def]
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


def test_users_file_keeps_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    add_user(path, "ana", ["reviewer", "device_admin"], PASSWORD)
    assert PASSWORD not in path.read_text() and oct(path.stat().st_mode)[-3:] == "600"
    user = load_users(path)["ana"]
    assert user.roles == {"reviewer", "device_admin"} and verify_password(PASSWORD, user.password_hash)
    assert not verify_password("wrong password!", user.password_hash)


def test_pages_need_sign_in_and_the_right_role(console) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = console
    with TestClient(app) as client:
        assert (
            client.get("/queue", follow_redirects=False).headers["location"].startswith("/login?next=/queue")
        )
        assert sign_in(client, "ana", "not the password").status_code == 401
        assert sign_in(client, "ana").status_code == 200
        assert client.get("/devices").status_code == 403  # a reviewer is no device admin
    with TestClient(app) as client:
        sign_in(client, "dev")
        assert client.get("/queue").status_code == 403
        assert client.get("/devices").status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200


def test_release_through_the_form(console, layouts: LayoutRegistry) -> None:  # type: ignore[no-untyped-def]
    app, store, _ = console
    layout = layouts[KIND]
    exam_id, truth = seed_exam(store.results, layout, 0, misread={"al_mm": "23.99"})
    with TestClient(app) as client:
        sign_in(client, "ana")
        queue = client.get("/queue")
        links = re.findall(r'href="(/exams/[^"]+)"', queue.text)
        assert links == [f"/exams/{exam_id}"]
        patient = truth["patient_id"]
        assert all(patient not in link for link in re.findall(r'(?:href|src|action)="([^"]+)"', queue.text))
        page = client.get(links[0])
        assert page.status_code == 200
        for url in re.findall(r'src="(/exams/[^"]+\.png)"', page.text):
            image = client.get(url)
            assert image.status_code == 200 and image.content[:4] == b"\x89PNG" and patient not in url
        fields = form_fields(page.text)
        assert fields["value__al_mm"] == "23.99"
        form = {**fields, "value__al_mm": "45.00"}  # out of range: refused with the rule
        refused = client.post(f"/exams/{exam_id}/release", data=form)
        assert refused.status_code == 422 and "out_of_range" in refused.text
        assert store.exam(exam_id).record.status == "review"  # type: ignore[union-attr]
        no_csrf = client.post(f"/exams/{exam_id}/release", data={**fields, "csrf": "forged"})
        assert no_csrf.status_code == 403
        done = client.post(f"/exams/{exam_id}/release", data={**fields, "value__al_mm": truth["al_mm"]})
        assert done.status_code == 200 and "released" in done.text, re.findall(
            r"class=\"(?:problem|error)\"[^>]*>([^<]*)", done.text
        )
        assert re.search(r"<td>ana</td><td>correct</td><td>al_mm</td><td>23.99</td>", done.text)
        assert store.exam(exam_id).record.status == "accepted"  # type: ignore[union-attr]
        metrics = client.get("/metrics").text
        assert (
            'eyeops_review_fields_total{action="correct",device_kind="optical_biometer",field="al_mm"} 1.0'
            in metrics
        )


def test_both_readings_are_shown_and_the_proposal_is_what_the_form_offers(
    console, layouts: LayoutRegistry
) -> None:  # type: ignore[no-untyped-def]
    """TrOCR misread al_mm; PP-OCR read it otherwise and more credibly: the form starts from its
    reading, the page shows both, and releasing as offered records a correction of TrOCR's."""
    app, store, _ = console
    layout = layouts[KIND]
    exam_id, truth = seed_exam(store.results, layout, 1, misread={"al_mm": "23.99"}, second={})
    fields = {f.name: f for f in store.exam(exam_id).record.fields}  # type: ignore[union-attr]
    assert fields["al_mm"].second_text is None  # asked, not answered: a person reads it from the crop
    exam_id, truth = seed_exam(
        store.results, layout, 2, misread={"al_mm": "23.99"}, second={"al_mm": (truth_of(layout, 2), 0.995)}
    )
    stored = {f.name: f for f in store.exam(exam_id).record.fields}  # type: ignore[union-attr]
    assert stored["al_mm"].status == "review" and stored["al_mm"].raw_text == "23.99"
    assert stored["al_mm"].second_text == truth["al_mm"] and stored["al_mm"].proposal == truth["al_mm"]
    with TestClient(app) as client:
        sign_in(client, "ana")
        page = client.get(f"/exams/{exam_id}")
        assert form_fields(page.text)["value__al_mm"] == truth["al_mm"]  # the proposal, to confirm
        row = re.search(r'<tr[^>]*data-field="al_mm">(.*?)</tr>', page.text, re.S)
        assert row is not None and "<code>23.99</code>" in row.group(1)  # what TrOCR read
        assert f'<code>{truth["al_mm"]}</code> (0.995) <span class="disagree">' in row.group(1)
        done = client.post(f"/exams/{exam_id}/release", data=form_fields(page.text))
        assert done.status_code == 200 and "released" in done.text
        assert re.search(r"<td>ana</td><td>correct</td><td>al_mm</td><td>23.99</td>", done.text)


def truth_of(layout, index: int) -> str:  # type: ignore[no-untyped-def]
    from eyeops.synth.exams import render_one

    return render_one(layout, 4242, "eval", index, clean=True).texts["al_mm"]


def test_second_reviewer_is_told_who_saved_first(console, layouts: LayoutRegistry) -> None:  # type: ignore[no-untyped-def]
    app, store, _ = console
    exam_id, _ = seed_exam(store.results, layouts[KIND], 1, doubtful=["k1_d"])
    with TestClient(app) as ana, TestClient(app) as ben:
        sign_in(ana, "ana")
        sign_in(ben, "ben")
        form_a = form_fields(ana.get(f"/exams/{exam_id}").text)
        form_b = form_fields(ben.get(f"/exams/{exam_id}").text)
        assert ana.post(f"/exams/{exam_id}/release", data=form_a).status_code == 200
        late = ben.post(f"/exams/{exam_id}/release", data={**form_b, "value__k1_d": "44.00"})
        assert late.status_code == 409 and "ana saved this exam first" in late.text
        assert '<code class="typed" data-field="k1_d">44.00</code>' in late.text  # what ben typed stays


def test_expired_session_keeps_typed_values(console, layouts: LayoutRegistry) -> None:  # type: ignore[no-untyped-def]
    app, store, clock = console
    exam_id, truth = seed_exam(store.results, layouts[KIND], 2, misread={"acd_mm": "9.99"})
    with TestClient(app) as client:
        sign_in(client, "ana")
        form = form_fields(client.get(f"/exams/{exam_id}").text)
        clock.now += 3600  # past the 600 s session
        typed = {**form, "value__acd_mm": truth["acd_mm"]}
        gone = client.post(f"/exams/{exam_id}/release", data=typed, follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"].startswith(
            f"/login?next=/exams/{exam_id}"
        )
        assert store.exam(exam_id).record.status == "review"  # type: ignore[union-attr]
        login = client.get(gone.headers["location"])
        assert "What you typed is kept" in login.text
        back = sign_in_from(client, login.text)
        assert back.url.path == f"/exams/{exam_id}"
        assert (
            f'name="value__acd_mm" value="{truth["acd_mm"]}"' in back.text
            and "session had expired" in back.text
        )


def sign_in_from(client: TestClient, login_page: str):  # type: ignore[no-untyped-def]
    fields = form_fields(login_page)
    return client.post("/login", data={**fields, "user": "ana", "password": PASSWORD})


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


def test_unknown_or_malformed_exam_ids_are_404_without_echo(console) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = console
    with TestClient(app) as client:
        sign_in(client, "ana")
        for exam_id in ("P1234567", "0" * 64, "../etc/passwd"):
            response = client.get(f"/exams/{exam_id}")
            assert response.status_code == 404 and "P1234567" not in response.text


class TruthReader:
    """The recogniser as a test double: reads what the renderer drew (the Triton path is tested in
    tests/inprocess/test_transformer.py)."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def read(self, crops, grammars):  # type: ignore[no-untyped-def]
        return [(text, 0.999) for text in self.texts.values()]


def test_a_failed_exam_is_read_again_from_marked_corners(
    sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path
) -> None:
    import hashlib

    from eyeops.ocr.pipeline import failed_record
    from eyeops.ocr.wire import ExamInput
    from eyeops.synth.exams import render_one

    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    layout = layouts[KIND]
    exam = render_one(layout, 4242, "eval", 9, clean=True)
    exam_id = hashlib.sha256(exam.image).hexdigest()
    failed = failed_record(ExamInput(exam.image, KIND), "alignment failed: quality 0.10")
    store.results.save_exam(failed, {"http_status": 422}, image=exam.image)
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer"], PASSWORD)
    config = ConsoleConfig(Sessions(SECRET), users=load_users(users))
    app = create_app(store, lambda: layouts, config, recognizer=TruthReader(dict(exam.texts)))
    with TestClient(app) as client:
        sign_in(client, "ana")
        page = client.get(f"/exams/{exam_id}")
        assert 'id="corners-form"' in page.text and 'id="release-form"' not in page.text
        form = form_fields(page.text)
        bad = client.post(f"/exams/{exam_id}/corners", data={**form, "corners": "1,2;3,4"})
        assert bad.status_code == 400 and "four corners" in bad.text
        from eyeops.review.images import view_exam
        from eyeops.settings import Settings

        corners = view_exam(exam.image, layout, Settings()).alignment["corners"]  # type: ignore[index]
        marked = ";".join(f"{x},{y}" for x, y in corners)  # type: ignore[union-attr]
        done = client.post(f"/exams/{exam_id}/corners", data={**form, "corners": marked})
        assert done.status_code == 200 and "read again" in done.text
        after = store.exam(exam_id)
        assert after is not None and after.record.status == "review" and after.corners is not None
        assert [r.raw_text for r in after.record.fields] == list(exam.texts.values())
        released = client.post(f"/exams/{exam_id}/release", data=form_fields(done.text))
        assert released.status_code == 200 and "released" in released.text
        assert store.exam(exam_id).record.status == "accepted"  # type: ignore[union-attr]


def test_operations_page_and_metrics_show_the_backlog(console, layouts: LayoutRegistry) -> None:  # type: ignore[no-untyped-def]
    app, store, _ = console
    seed_exam(store.results, layouts[KIND], 5, doubtful=["k1_d"])
    seed_exam(store.results, layouts["autorefractor"], 6)
    with TestClient(app) as client:
        sign_in(client, "ana")
        page = client.get("/operations")
        assert page.status_code == 200
        backlog = re.search(r'<table id="backlog">(.*?)</table>', page.text, re.S)
        assert backlog and "<td>optical_biometer</td><td>1</td>" in backlog.group(1)
        assert "autorefractor" not in backlog.group(1)  # accepted: nothing waits
        hours = re.search(r'<table id="per-hour">(.*?)</table>', page.text, re.S)
        assert hours and "<th>autorefractor</th>" in hours.group(1)
        # the same series drawn beside the tables: one waiting biometer exam, under an hour old;
        # an exam per kind this hour; the biometer's doubtful reading among the day's reasons
        charts = re.findall(r'<svg class="chart" role="img" aria-label="([^"]+)"', page.text)
        assert len(charts) == 4, charts  # and no latency chart: this database logged no request
        assert 'id="no-latency"' in page.text
        assert "<title>optical_biometer · under 1 h: 1</title>" in page.text
        assert re.search(r"<title>\d\d:00 · autorefractor: 1</title>", page.text)
        assert re.search(r"<title>\d{4}-\d\d-\d\d · low_confidence: 1</title>", page.text)
        metrics = client.get("/metrics").text
        assert 'eyeops_review_backlog_exams{device_kind="optical_biometer"} 1.0' in metrics
        assert "eyeops_review_max_wait_seconds 14400.0" in metrics
        age = re.search(
            r'eyeops_review_oldest_age_seconds\{device_kind="optical_biometer"\} ([0-9.e+]+)', metrics
        )
        assert age and 0 <= float(age.group(1)) < 600


def test_onboarding_refuses_a_shipped_kind_and_boxes_off_the_sample(
    console, layouts: LayoutRegistry, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import cv2
    import numpy as np

    app, _, _ = console
    sample = tmp_path / "sample.png"
    cv2.imwrite(str(sample), np.full((300, 400), 200, np.uint8))
    with TestClient(app) as client:
        sign_in(client, "dev")
        csrf = form_fields(client.get("/devices").text)["csrf"]
        boxes = '[{"name": "patient_id", "type": "patient id", "x": 10, "y": 10, "w": 500, "h": 30}]'
        for kind, status, said in (("autorefractor", 409, "ships"), ("lensmeter", 400, "falls off")):
            with sample.open("rb") as image:
                response = client.post(
                    "/devices",
                    data={"csrf": csrf, "kind": kind, "boxes": boxes},
                    files={"sample": ("sample.png", image, "image/png")},
                )
            assert response.status_code == status and said in response.text, response.text[-400:]
        assert client.get("/devices").status_code == 200  # the kinds still load


def test_a_sampled_release_is_checked_blind_by_another_reviewer(
    sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path
) -> None:
    migrate(sqlite_url)
    store = ReviewStore(ResultsStore.from_url(sqlite_url).engine)
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer"], PASSWORD)
    add_user(users, "ben", ["reviewer"], PASSWORD)
    config = ConsoleConfig(Sessions(SECRET), users=load_users(users), second_look_share=1.0)
    exam_id, truth = seed_exam(store.results, layouts[KIND], 12, misread={"al_mm": "23.99"})
    app = create_app(store, lambda: layouts, config)
    with TestClient(app) as ana, TestClient(app) as ben:
        sign_in(ana, "ana")
        sign_in(ben, "ben")
        form = form_fields(ana.get(f"/exams/{exam_id}").text)
        assert (
            ana.post(f"/exams/{exam_id}/release", data={**form, "value__al_mm": truth["al_mm"]}).status_code
            == 200
        )
        own = ana.get(f"/exams/{exam_id}").text
        assert "another reviewer takes the second look" in own and 'id="second-look"' not in own
        blind = ben.get(f"/exams/{exam_id}").text
        assert 'id="second-look"' in blind and 'id="audit"' not in blind
        fields = form_fields(blind)
        assert fields["value__al_mm"] == "23.99"  # what the recogniser read, not ana's value
        saved = ben.post(f"/exams/{exam_id}/second-look", data={**fields, "value__al_mm": truth["al_mm"]})
        assert saved.status_code == 200 and "both reviewers agree" in saved.text
        metrics = ben.get("/metrics").text
        agreed = '{device_kind="optical_biometer",field="al_mm",outcome="agree"} 1.0'
        assert f"eyeops_review_second_look_fields_total{agreed}" in metrics


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


def test_a_console_without_fine_tunes_names_the_command(console) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = console
    with TestClient(app) as client:
        sign_in(client, "dev")
        page = client.get("/devices")
        assert "eyeops devices finetune KIND" in page.text
        csrf = form_fields(page.text)["csrf"]
        refused = client.post("/devices/autorefractor/finetune", data={"csrf": csrf})
        assert refused.status_code == 409 and "eyeops devices finetune autorefractor" in refused.text
        unknown = client.post("/devices/P1234567/finetune", data={"csrf": csrf})  # never echoed
        assert "eyeops devices finetune KIND" in unknown.text and "P1234567" not in unknown.text


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
