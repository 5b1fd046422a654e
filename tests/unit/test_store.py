from eyeops.db import ResultsStore, migrate
from eyeops.exams import ExamRecord
from eyeops.fields import FieldReading

LOG = {"http_status": 200, "model_name": "trocr", "model_version": "1", "total_ms": 12.0}


def record(exam_id="a" * 64, status="review") -> ExamRecord:
    return ExamRecord(
        exam_id=exam_id,
        device_kind="optical_biometer",
        status=status,
        device_id="dev-1",
        fields=[
            FieldReading("al_mm", "24.35", 24.35, "mm", 0.99, "accepted"),
            FieldReading("k1_d", "4x.1", None, "D", 0.4, "review", "grammar: ..."),
        ],
        header={"patient_id": "P1234567", "laterality": "OD", "exam_date": "2024-01-02"},
    )


def exercise_store(url: str) -> None:
    migrate(url)
    store = ResultsStore.from_url(url)
    assert store.save_exam(record(), LOG) is True
    got = store.get_exam("a" * 64)
    assert got is not None and got.fields == record().fields and got.header["patient_id"] == "P1234567"
    assert store.counts() == {"exams": 1, "fields": 2, "review_items": 1, "log_rows": 1}
    assert store.save_exam(record(), LOG) is False  # re-send: only a log row
    assert store.counts() == {"exams": 1, "fields": 2, "review_items": 1, "log_rows": 2}
    failed = ExamRecord(
        exam_id="b" * 64,
        device_kind="autorefractor",
        status="failed",
        fields=[],
        error="alignment failed: ...",
    )
    store.save_exam(failed, {**LOG, "http_status": 422})
    assert ("b" * 64, None, "alignment failed: ...") in store.open_reviews()


def test_sqlite_store(sqlite_url):
    exercise_store(sqlite_url)
