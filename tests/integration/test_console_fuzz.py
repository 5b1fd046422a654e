"""2,000 seeded, fuzzed requests against a real `eyeops console serve` on PostgreSQL, signed in as a
person with both roles (issue 28): query strings and forms with NaN, infinities, numbers beyond a
float, deep JSON, patient-like ids, long and invalid UTF-8 text, odd content types and headers,
multipart uploads that are not images, on every route a person reaches. Not one 5xx, no error page
repeats an identifier it was sent, and the console is still serving afterwards."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from urllib.parse import quote

import httpx

from eyeops.console.users import add_user
from eyeops.db.store import ResultsStore, migrate
from eyeops.devices import LayoutRegistry
from tests.console_server import console_server
from tests.fuzz import PATIENT_LIKE, random_json
from tests.review_seed import seed_exam

PASSWORD = "a long local password"
REQUESTS = 2000
ODD_TEXT = [
    "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "1" + "0" * 400, "-0", "0x1f", "1_000",
    "", " ", "abc", "é€😀", "\u0000", "%00", "../../etc/passwd", "<script>x</script>", "9" * 300,
    "23.99", "-3.25", "OD", "2026-02-30", "31.12.2026", "P" + "1234567", "x" * 20_000,
]  # fmt: skip
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-16",
    "application/json",
    "text/plain",
    "multipart/form-data",  # no boundary
    "multipart/form-data; boundary=x",
    "",
]


def odd(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(ODD_TEXT)
    if roll < 0.8:
        return rng.choice(PATIENT_LIKE) + rng.choice(["", "-OD", "-OS"])
    if roll < 0.85:
        return rng.choice(["eyJ1IjoiYSJ9.", "x.", ""]) + rng.choice(["\u00e9", "\u00ff\u00fe", "caf\u00e9"])
    return json.dumps(random_json(rng), allow_nan=True)


def latin1(headers: dict[str, str]) -> httpx.Headers:
    """Header values beyond ASCII go out as latin-1 bytes, as any client may send them."""
    return httpx.Headers(headers, encoding="latin-1")


def sent_identifiers(text: str) -> list[str]:
    """Identifiers we sent, found outside the reviewer's own input boxes (a refused form keeps what
    its reviewer typed there, in their session, to correct it)."""
    outside_inputs = re.sub(r"<input [^>]*>", "", text)
    return [p for p in PATIENT_LIKE if p in outside_inputs]


def test_fuzzed_console_requests_never_5xx_and_errors_echo_nothing(
    pg_url: str, layouts: LayoutRegistry, tmp_path: Path
) -> None:
    migrate(pg_url)
    results = ResultsStore.from_url(pg_url)
    layout = layouts["optical_biometer"]
    exams = [seed_exam(results, layout, 500 + i, doubtful=["k1_d"])[0] for i in range(6)]
    fields = [s.name for s in layout.all_fields()]
    users = tmp_path / "users.txt"
    add_user(users, "ana", ["reviewer", "device_admin"], PASSWORD)
    rng = random.Random(28)
    statuses: dict[int, int] = {}
    flags = ("--crops-dir", str(tmp_path / "crops"), "--layouts-dir", str(tmp_path / "layouts"))
    with (
        console_server(pg_url, users, tmp_path, *flags) as base,
        httpx.Client(base_url=base, timeout=60) as c,
    ):
        login = c.get("/login")
        csrf_login = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert csrf_login is not None
        signed = c.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_login.group(1)})
        assert signed.status_code == 303
        page = c.get(f"/exams/{exams[0]}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf is not None
        token = csrf.group(1)

        def exam_id() -> str:
            return rng.choice([*exams, *exams, "0" * 64, "../etc", odd(rng)[:80]])

        for n in range(REQUESTS):
            kind = n % 8
            headers: dict[str, str] = {}
            if rng.random() < 0.15:  # odd headers a client can send (what HTTP lets through)
                name = rng.choice(["X-Forwarded-User", "X-Forwarded-Groups", "Referer", "Accept", "Cookie"])
                text = re.sub(r"[^\x21-\x7e\xa0-\xff]", "?", odd(rng)[:200]) or "-"
                headers[name] = f"eyeops_session={text}" if name == "Cookie" else text  # latin-1 too
            if kind == 0:
                params = {k: odd(rng) for k in rng.sample(["older_than_h", "kind", "reason", "x"], 2)}
                reply = c.get("/queue", params=params, headers=latin1(headers))
            elif kind == 1:
                reply = c.get(f"/exams/{quote(exam_id(), safe='')}", headers=latin1(headers))
            elif kind in (2, 3):
                form = {f"value__{rng.choice(fields)}": odd(rng) for _ in range(rng.randint(1, 4))}
                form |= {"csrf": token if rng.random() < 0.9 else odd(rng), "reason": odd(rng)}
                action = rng.choice(["release", "reject", "second-look"])
                if rng.random() < 0.2:  # a body that is not what its content type says
                    body = rng.choice(
                        [b"\xff\xfe\x00", b"value__al_mm=%ff%fe&csrf=" + token.encode(), b"{" * 500]
                    )
                    headers["content-type"] = rng.choice(CONTENT_TYPES)
                    reply = c.post(
                        f"/exams/{quote(exam_id(), safe='')}/{action}", content=body, headers=latin1(headers)
                    )
                else:
                    reply = c.post(
                        f"/exams/{quote(exam_id(), safe='')}/{action}", data=form, headers=latin1(headers)
                    )
            elif kind == 4:
                boxes = json.dumps(random_json(rng), allow_nan=True) if rng.random() < 0.5 else odd(rng)
                sample = rng.choice([b"", b"\x89PNG\r\n\x1a\n" + bytes(64), b"GIF89a", odd(rng).encode()])
                reply = c.post(
                    "/devices",
                    data={"csrf": token, "kind": odd(rng)[:40], "boxes": boxes, "description": odd(rng)},
                    files={"sample": (rng.choice(["s.png", "s.dcm", "s.exe", ""]), sample, "image/png")},
                    headers=latin1(headers),
                )
            elif kind == 5:
                reply = c.post(f"/devices/{quote(odd(rng)[:40], safe='')}/finetune", data={"csrf": token})
            elif kind == 6:
                what = rng.choice(
                    ["original.png", "aligned.png", f"crop/{rng.choice(fields)}.png", "x/y.png"]
                )
                reply = c.get(f"/exams/{quote(exam_id(), safe='')}/{what}", headers=latin1(headers))
            else:
                with httpx.Client(base_url=base, timeout=60) as stranger:  # signed out: no cookie
                    reply = stranger.post(
                        rng.choice(["/login", "/logout", f"/exams/{exams[1]}/release"]),
                        data={"user": odd(rng)[:80], "password": odd(rng), "csrf": odd(rng)},
                        headers=latin1(headers),
                    )
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            assert reply.status_code < 500, (n, kind, reply.status_code, reply.text[-300:])
            if reply.status_code >= 400:
                assert not sent_identifiers(reply.text), (n, kind, reply.text[-300:])
        assert c.get("/readyz").status_code == 200 and c.get("/queue").status_code == 200
    assert sum(statuses.values()) == REQUESTS
    assert len(statuses) >= 4, statuses  # the fuzz reached refusals of several kinds, not one
    print(f"console fuzz: {REQUESTS} requests, statuses {dict(sorted(statuses.items()))}")
    log = (tmp_path / "console.log").read_text()
    assert "Traceback" not in log and not sent_identifiers(log)
