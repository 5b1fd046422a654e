"""Screenshots of the real review console for the clinic staff's docs (docs/console.md): a real
`eyeops console serve` on a results database seeded with a week of exams as the OCR service stores
them (rendered images of the shipped layouts, a few read wrongly or doubtfully), signed in through
Chromium as a person would, each page saved as a PNG.

    .venv/bin/python -m tests.screenshots --out docs/img

No patient data: every exam is drawn by eyeops' own renderer. tests/integration/test_console_browser.py
runs this command into a temporary folder, so the pictures in the docs come from code that is tested.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import update

PASSWORD = "a long local password for screenshots"
PAGES = ("queue", "exam", "operations", "devices")
VIEWPORT = {"width": 1280, "height": 900}


def seed_week(database_url: str, exams: int = 60, seed: int = 7) -> str:
    """`exams` exams of the six shipped kinds over the last 7 days, one in eight read doubtfully and
    one in twelve wrongly, with an inference-log row each. Returns the id of an exam with a misread
    field (the one the exam page shows)."""
    from eyeops.db.schema import Exam, InferenceLog, ReviewItem
    from eyeops.db.store import ResultsStore, migrate
    from eyeops.devices import load_layouts
    from eyeops.synth.exams import render_one
    from tests.review_seed import seed_exam

    migrate(database_url)
    results = ResultsStore.from_url(database_url)
    layouts = load_layouts()
    kinds = sorted(layouts.kinds())
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    shown = ""
    for i in range(exams):
        layout = layouts[kinds[i % len(kinds)]]
        names = [
            f.name for f in layout.all_fields() if f.name not in ("patient_id", "laterality", "exam_date")
        ]
        misread, second = None, None
        if i % 12 == 5:  # one digit read wrongly; the second recogniser read it right
            texts = render_one(layout, 4242, "eval", i, clean=True).texts
            true = texts[names[0]]
            at_digit = next(k for k, c in enumerate(true) if c.isdigit() and c not in "01")
            misread = {names[0]: true[:at_digit] + "8" + true[at_digit + 1 :]}
            second = {name: (text, 0.99) for name, text in texts.items()}
        doubtful = [rng.choice(names)] if i % 8 == 3 else []
        exam_id, _ = seed_exam(results, layout, i, misread=misread, doubtful=doubtful, second=second)
        # the newest exams within the last day, the rest spread over the week
        at = now - (
            dt.timedelta(minutes=rng.uniform(5, 23 * 60))
            if i >= exams // 2
            else dt.timedelta(days=rng.uniform(1, 6.9))
        )
        with results.session() as s:
            s.execute(update(Exam).where(Exam.id == exam_id).values(received_at=at))
            s.execute(update(ReviewItem).where(ReviewItem.exam_id == exam_id).values(created_at=at))
            s.execute(
                update(InferenceLog)
                .where(InferenceLog.exam_id == exam_id)
                .values(created_at=at, total_ms=rng.gauss(420, 60), predict_ms=rng.gauss(300, 40))
            )
        if misread and not shown:
            shown = exam_id
    results.engine.dispose()
    return shown


def take(out: Path, work: Path, chromium: str | None = None) -> list[Path]:
    """Seed a database in `work`, serve the console on it, and save one PNG per page in `out`."""
    from playwright.sync_api import sync_playwright

    from eyeops.console.users import add_user
    from tests.console_server import console_server

    url = f"sqlite:///{work / 'results.db'}"
    exam_id = seed_week(url)
    users = work / "users.txt"
    add_user(users, "ana", ["reviewer", "device_admin"], PASSWORD)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    flags = ("--crops-dir", str(work / "crops"), "--layouts-dir", str(work / "layouts"))
    with console_server(url, users, work, *flags) as base, sync_playwright() as p:
        executable = chromium or shutil.which("chromium") or "/usr/bin/chromium"
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{base}/")
            page.fill("input[name=user]", "ana")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/queue")
            for name, path in (("queue", "/queue"), ("exam", f"/exams/{exam_id}"), ("devices", "/devices")):
                _open(page, f"{base}{path}")
                saved.append(out / f"console-{name}.png")
                page.screenshot(path=str(saved[-1]), full_page=True)
            _open(page, f"{base}/operations")  # its charts and tables, without the page's header
            saved.append(out / "console-operations.png")
            page.locator("main").screenshot(path=str(saved[-1]))
        finally:
            browser.close()
    return saved


def _open(page: Any, url: str) -> None:
    """Go to `url`; a page that does not answer 200 is an error, not a picture."""
    response = page.goto(url)
    if response is None or response.status != 200:
        raise RuntimeError(f"{url} answered {None if response is None else response.status}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        for path in take(args.out, Path(work)):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
