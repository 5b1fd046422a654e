"""32 browsers' worth of clients at once against a real `eyeops console serve` on PostgreSQL: two
reviewers each open and release the same 8 exams at the same moment (one wins each, the other is
told who saved first), and 16 more exams are released by one client each. Nothing answers 5xx."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from eyeops.console.users import add_user
from eyeops.db.review import ReviewStore
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from tests.console_server import console_server
from tests.review_seed import seed_exam

PASSWORD = "a long local password"


async def _client(base: str, user: str, exam_id: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        page = await c.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        data = {"user": user, "password": PASSWORD, "csrf": csrf.group(1), "next": "/queue"}
        assert (await c.post("/login", data=data)).status_code == 303
        page = await c.get(f"/exams/{exam_id}")
        form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
        response = await c.post(f"/exams/{exam_id}/release", data=form)
        return response.status_code


def test_many_reviewers_at_once_never_5xx_and_each_exam_is_released_once(
    pg_url: str, layouts: LayoutRegistry, tmp_path: Path
) -> None:
    migrate(pg_url)
    results = ResultsStore.from_url(pg_url)
    ids = [seed_exam(results, layouts["optical_biometer"], 100 + i, doubtful=["k1_d"])[0] for i in range(24)]
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer"], PASSWORD)
    add_user(users, "ben", ["reviewer"], PASSWORD)
    flags = ("--crops-dir", str(tmp_path / "crops"), "--second-look-share", "0")
    with console_server(pg_url, users, tmp_path, *flags) as base:

        async def everyone() -> list[int]:
            contested = [_client(base, user, ids[i]) for i in range(8) for user in ("ana", "ben")]
            single = [_client(base, "ana" if i % 2 else "ben", ids[i]) for i in range(8, 24)]
            return await asyncio.gather(*contested, *single)

        codes = asyncio.run(everyone())
    assert sorted(codes) == [303] * 24 + [409] * 8, codes
    store = ReviewStore(results.engine)
    assert store.queue() == []
    for exam_id in ids:
        exam = store.exam(exam_id)
        assert exam is not None and exam.record.status == "accepted"
        assert sum(a.action == "release" for a in exam.audit) == 1  # released once, by the winner
