"""Results database: exams, fields, review queue, inference log and feature outbox (SQLAlchemy 2 +
Alembic). The domain types it stores live in eyeops.exams."""

from eyeops.db.store import ResultsStore, migrate

__all__ = ["ResultsStore", "migrate"]
