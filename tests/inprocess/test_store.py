"""The results store against a database that does not answer: a TCP connection to a loopback port
nothing listens on, refused, ends as a 503 that names no host, user or port."""

from __future__ import annotations

import pytest

from eyeops.db import ResultsStore
from eyeops.errors import DatabaseUnavailable


def test_unreachable_database_is_503():
    store = ResultsStore.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable) as info:
        store.get_exam("x")
    assert info.value.status_code == 503 and info.value.retry_after_s
    # the driver's words (host, port, user) stay in the server's log (issue 28, item 10)
    assert not any(word in info.value.message for word in ("127.0.0.1", "nobody", "none", "5432", ":1"))
    assert "retry later" in info.value.message
