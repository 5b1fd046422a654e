"""The review console's pages through Starlette's test client: sign-in, roles, CSRF, release,
optimistic concurrency, expired sessions that keep typed values, no patient id in any URL, the
operations page, onboarding and second looks. Its defences against forged identities, odd input and
large bodies: test_console_security.py. PASSWORD, SECRET, form_fields and sign_in import from here as
before (tests/unit/console_helpers.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from eyeops.console.app import ConsoleConfig, create_app
from eyeops.console.users import Sessions, add_user, load_users, verify_password
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from tests.review_seed import seed_exam
from tests.unit.console_helpers import (
    KIND,
    PASSWORD,
    SECRET,
    Console,
    TruthReader,
    form_fields,
    make_console,
    sign_in,
    sign_in_from,
    truth_of,
)


@pytest.fixture
def console(sqlite_url: str, layouts: LayoutRegistry, tmp_path: Path) -> Console:
    return make_console(sqlite_url, layouts, tmp_path)


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


def test_unknown_or_malformed_exam_ids_are_404_without_echo(console) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = console
    with TestClient(app) as client:
        sign_in(client, "ana")
        for exam_id in ("P1234567", "0" * 64, "../etc/passwd"):
            response = client.get(f"/exams/{exam_id}")
            assert response.status_code == 404 and "P1234567" not in response.text


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
