from __future__ import annotations

from sqlalchemy import create_engine

from eyeops.db import ResultsStore, migrate
from eyeops.db.review_types import reason_kind
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading
from eyeops.ops.report import collect, render_html


def test_report_counts_statuses_reasons_errors_and_latency(sqlite_url):
    migrate(sqlite_url)
    store = ResultsStore.from_url(sqlite_url)
    for i, (kind, status, ms) in enumerate(
        [
            ("autorefractor", "accepted", 100.0),
            ("autorefractor", "review", 300.0),
            ("optical_biometer", "accepted", 200.0),
        ]
    ):
        fields = [FieldReading("x", "1", 1.0, None, 0.99, "accepted")]
        if status == "review":
            fields.append(FieldReading("y", "9x", None, None, 0.3, "review", "grammar: '9x'"))
        record = ExamRecord(exam_id=f"{i:064d}", device_kind=kind, status=status, fields=fields)
        store.save_exam(record, {"http_status": 200, "total_ms": ms, "device_kind": kind})
    store.log_request(outcome="failed", http_status=413, error="too large", device_kind="autorefractor")
    engine = create_engine(sqlite_url)
    data = collect(engine)
    engine.dispose()
    assert data.status_by_kind["autorefractor"] == {"accepted": 1, "review": 1}
    assert data.review_reasons == {"grammar": 1}
    assert data.requests == 4 and data.error_rate == 0.25 and data.errors_by_status == {413: 1}
    assert data.latency_percentiles()["p50"] == 200.0
    page = render_html(data)
    assert page.count("<img") == 6 and "25.00%" in page and "grammar" not in page.split("<figure>")[0]


def test_reason_kind():
    assert reason_kind("out_of_range: 61.2 outside [20, 60]") == "out_of_range"
    assert reason_kind(None) == "unknown"
    # the same kind the review queue shows (one rule, eyeops.db.review_types)
    assert reason_kind("alignment failed: score 0.41 < 0.75") == "alignment"


def test_an_empty_database_still_gives_a_page(sqlite_url):
    migrate(sqlite_url)
    engine = create_engine(sqlite_url)
    page = render_html(collect(engine))
    engine.dispose()
    assert "No exams or requests" in page
