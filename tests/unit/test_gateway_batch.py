from __future__ import annotations

import csv
import io
import zipfile

import pytest

from eyeops.gateway.batch import MAX_RATIO, summarise, unsafe_member_name, write_csv, zip_members
from tests.helpers import noise_png


@pytest.mark.parametrize(
    "name", ["../evil.png", "a/../../evil.png", "/etc/passwd", "C:/x.png", "dir\\..\\x.png"]
)
def test_zip_slip_names_are_refused(name):
    assert unsafe_member_name(name) is not None


def test_safe_names_pass():
    assert unsafe_member_name("2024/03/exam-1.png") is None


def test_zip_members_guard_against_slip_bombs_and_size(tmp_path):
    archive = tmp_path / "old.zip"
    good = noise_png(40, 40)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("2024/exam-1.png", good)
        z.writestr("../escape.png", good)
        z.writestr("zeros.png", b"\0" * 250_000)  # under the size limit, but compresses ~1000:1
        z.writestr("huge.png", noise_png(600, 600))  # over the per-file limit below
        z.writestr("__MACOSX/.hidden.png", good)
    members = {m.source.split("!", 1)[1]: m for m in zip_members(archive, 300_000, 10_000_000)}
    assert set(members) == {"2024/exam-1.png", "../escape.png", "zeros.png", "huge.png"}
    assert members["2024/exam-1.png"].data == good and members["2024/exam-1.png"].refused is None
    assert "climbs out" in (members["../escape.png"].refused or "")
    assert f"{MAX_RATIO}:1" in (members["zeros.png"].refused or "")
    assert "over the limit" in (members["huge.png"].refused or "")
    assert members["huge.png"].data == b""
    with pytest.raises(ValueError, match="unpacks to"):
        list(zip_members(archive, 300_000, 100_000))


def test_csv_has_one_row_per_file_with_fields_and_errors(tmp_path):
    rows = [
        {
            "sha256": "a" * 64,
            "source": "old.zip!1.png",
            "state": "done",
            "http_status": 200,
            "reason": None,
            "result": {
                "status": "review",
                "fields": [
                    {"name": "sphere_d", "value": -2.25, "status": "accepted", "reason": None},
                    {"name": "cyl_d", "value": None, "status": "review", "reason": "grammar: '-O.5'"},
                ],
            },
            "finished_at": 10.0,
        },
        {
            "sha256": "b" * 64,
            "source": "old.zip!2.png",
            "state": "quarantined",
            "http_status": 400,
            "reason": "file is named .png but holds JPEG data",
            "result": None,
            "finished_at": 10.0,
        },
    ]
    out = tmp_path / "results.csv"
    write_csv(out, rows, ["sphere_d", "cyl_d"])
    read = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["state"] for r in read] == ["done", "quarantined"]
    assert read[0]["sphere_d"] == "-2.25" and read[0]["cyl_d_status"] == "review"
    assert read[0]["review_reasons"] == "cyl_d: grammar: '-O.5'"
    assert read[1]["error"].startswith("file is named .png")
    summary = summarise(rows, elapsed_s=2.0, since=0.0)
    assert (summary["files"], summary["done"], summary["quarantined"], summary["exams_review"]) == (
        2,
        1,
        1,
        1,
    )
    assert summary["field_review_rate"] == 0.5 and summary["exams_per_s"] == 0.5
