"""The review console in a real browser: headless Chromium (Debian's, driven by Playwright) against
`eyeops console serve` on PostgreSQL. A reviewer signs in, opens the oldest exam, corrects one
field and releases the exam; the audit row is on the page, the Feast push of the released exam
goes through the same outbox and sink as an accepted exam, and the field lands in the labelled
crop set. A device admin draws boxes on a sample export and saves a layout."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from eyeops.console.users import add_user
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from eyeops.features.outbox import FeatureOutboxWriter
from tests.console_server import console_server
from tests.review_seed import seed_exam

KIND = "optical_biometer"  # feeds the Feast view `biometry`
PASSWORD = "a long local password"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Console:
    url: str
    store: ReviewStore
    crops: Path
    layouts: Path


@pytest.fixture
def console(pg_url: str, tmp_path: Path) -> Iterator[Console]:
    migrate(pg_url)
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer"], PASSWORD)
    add_user(users, "dev", ["device_admin"], PASSWORD)
    crops, layouts = tmp_path / "crops", tmp_path / "layouts"
    flags = ("--crops-dir", str(crops), "--layouts-dir", str(layouts))
    with console_server(pg_url, users, tmp_path, *flags) as url:
        yield Console(url, ReviewStore(ResultsStore.from_url(pg_url).engine), crops, layouts)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page, url: str, user: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_reviewer_corrects_a_field_and_releases_the_exam(
    console: Console, browser, layouts: LayoutRegistry, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from eyeops.features import repository as fs
    from eyeops.features.ingest import ExamFeatureSink
    from eyeops.features.online import FeastOnlineStore
    from eyeops.lens.cohort import simulate_cohort
    from eyeops.ocr.dataset import CropSet

    layout = layouts[KIND]
    oldest, truth = seed_exam(console.store.results, layout, 0, misread={"al_mm": "23.99"})
    seed_exam(console.store.results, layout, 1, doubtful=["k1_d"])  # a younger one behind it
    page = browser.new_page()  # type: ignore[attr-defined]
    sign_in(page, console.url, "ana")
    assert page.url.endswith("/queue")
    started = time.perf_counter()
    clicks = 0
    page.click("a.exam-link >> nth=0")  # the oldest first
    clicks += 1
    assert page.url.endswith(f"/exams/{oldest}")
    assert page.input_value("input[name=value__al_mm]") == "23.99"
    page.fill("input[name=value__al_mm]", truth["al_mm"])
    clicks += 1
    page.click("#release")
    clicks += 1
    page.wait_for_selector("#note")
    seconds = time.perf_counter() - started
    assert "released" in page.inner_text("#note")
    assert page.inner_text("#exam-status") == "accepted"
    audit = page.inner_text("#audit")
    assert "ana\tcorrect\tal_mm\t23.99" in audit and "release" in audit
    print(f"\nbrowser: {clicks} clicks and {seconds:.2f} s for one corrected field, release included")

    # the Feast row: the released exam's push is in the outbox the OCR service's writer drains
    repo = fs.prepare_repo(tmp_path / "repo")
    fs.write_offline_data(simulate_cohort(20, seed=5), repo)
    feature_store = fs.open_store(repo)
    fs.apply_and_materialize(feature_store, repo)
    writer = FeatureOutboxWriter(console.store.results, ExamFeatureSink(FeastOnlineStore(feature_store)))
    assert writer.drain() == 1
    eye = f"{truth['patient_id']}-{truth['laterality']}"
    online = FeastOnlineStore(feature_store).read_frame([eye]).set_index("eye_id")
    assert online.loc[eye, "al_mm"] == pytest.approx(float(truth["al_mm"]))

    # the crop-set entry, written in the background after the release
    deadline = time.monotonic() + 30
    while not (console.crops / "reviewed.npz").exists():
        assert time.monotonic() < deadline, "no labelled crop set after 30 s"
        time.sleep(0.2)
    data = CropSet.load(console.crops / "reviewed.npz")
    at = data.fields.index("al_mm")
    assert data.texts[at] == truth["al_mm"] and data.kinds[at] == KIND
    assert len(data) == len(list(layout.all_fields()))


def test_device_admin_draws_boxes_on_a_sample_and_saves_a_layout(
    console: Console, browser, layouts: LayoutRegistry, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from eyeops.align import align_to_template
    from eyeops.synth.exams import render_one

    source = layouts["autorefractor"]
    exam = render_one(source, 99, "eval", 0, clean=True)
    grey = cv2.imdecode(np.frombuffer(exam.image, np.uint8), cv2.IMREAD_GRAYSCALE)
    sample = tmp_path / "lensmeter.png"
    cv2.imwrite(str(sample), align_to_template(grey, source))  # an export in the template's pixels
    page = browser.new_page()  # type: ignore[attr-defined]
    sign_in(page, console.url, "dev")
    page.goto(f"{console.url}/devices")
    page.fill("input[name=kind]", "lensmeter")
    page.set_input_files("#sample", str(sample))
    page.wait_for_function("document.getElementById('canvas').width > 0")
    scale = min(1.0, 1000 / source.template.width)
    wanted = [
        ("patient_id", "patient id"),
        ("laterality", "laterality"),
        ("exam_date", "date (dd/mm/yyyy)"),
        ("sphere_d", "signed number"),
    ]
    for row, (name, kind) in enumerate(wanted, start=1):
        x, y, w, h = source.field(name).box
        page.locator("#canvas").scroll_into_view_if_needed()
        box = page.locator("#canvas").bounding_box()  # where it is now: naming a box scrolls the page
        assert box is not None
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        page.mouse.move(box["x"] + (x + w) * scale, box["y"] + (y + h) * scale, steps=4)
        page.mouse.up()
        cells = page.locator("#box-table tr").nth(row)
        cells.locator(".box-name").fill(name)
        cells.locator(".box-type").select_option(kind)
        if kind == "signed number":
            cells.locator(".box-unit").fill("D")
            cells.locator(".box-decimals").fill("2")
            cells.locator(".box-low").fill("-25")
            cells.locator(".box-high").fill("15")
    page.click("#save-layout")
    page.wait_for_selector("#onboarded")
    assert "Onboarded lensmeter: 4 fields" in page.inner_text("#onboarded")
    assert "lensmeter" in page.inner_text("#kinds")
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")  # the preview loaded
    from eyeops.devices.layout import load_layout_file

    saved = load_layout_file(console.layouts / "lensmeter.yaml")
    for name, _ in wanted:  # the drawn boxes, within a pixel or two of the source's
        assert np.allclose(saved.field(name).box, source.field(name).box, atol=3), name
    assert (console.layouts / "lensmeter.reference.png").exists()


def test_the_docs_screenshots_command_pictures_every_page(tmp_path: Path) -> None:
    """`python -m tests.screenshots` (docs/console.md's pictures): one PNG per page, of the page
    asked for, drawn by a real console in Chromium."""
    from PIL import Image

    from tests.screenshots import PAGES, take

    work = tmp_path / "work"
    work.mkdir()
    saved = take(tmp_path / "img", work, CHROMIUM)
    assert sorted(p.name for p in saved) == sorted(f"console-{name}.png" for name in PAGES)
    for path in saved:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.width >= 1000 and picture.height >= 400, path.name
    assert "Traceback" not in (work / "console.log").read_text()


def test_the_screenshots_command_refuses_a_page_that_is_not_there(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A page that answers anything but 200 stops the command: the docs never show an error page."""
    import tests.screenshots as shots

    def empty_database(url: str) -> str:  # no exam seeded: the exam page has nothing to show
        migrate(url)
        return "0" * 64

    monkeypatch.setattr(shots, "seed_week", empty_database)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(RuntimeError, match="answered 404"):
        shots.take(tmp_path / "img", work, CHROMIUM)
