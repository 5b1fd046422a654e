"""Results database: exams, fields, review queue and inference log (SQLAlchemy 2 + Alembic)."""

from eyeops.db.store import ExamRecord, ResultsStore, migrate

__all__ = ["ExamRecord", "ResultsStore", "migrate"]
