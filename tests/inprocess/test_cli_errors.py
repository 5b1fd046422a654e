"""A refused connection ends as one line naming the URL and the command that starts the service, and a
database's password never reaches the line: `main()` in this process against a loopback port nothing
listens on (the other one-line errors: tests/unit/test_cli_errors.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eyeops.cli import main
from eyeops.stack.process import free_port
from tests.unit.test_cli_errors import error_line, isolate_data_dir


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_data_dir(tmp_path, monkeypatch)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed, so a connection is refused."""
    return free_port()


def test_unreachable_database_hides_its_password(tmp_path, closed_port, capsys):
    url = f"postgresql+psycopg://eyeops:s3cret@127.0.0.1:{closed_port}/results"
    assert main(["ops", "report", "--out", str(tmp_path / "r.html"), "--database-url", url]) == 2
    line = error_line(capsys, f"127.0.0.1:{closed_port}/results", "eyeops up")
    assert "s3cret" not in line


def test_refused_connection_in_recommend_names_the_url_and_the_command(closed_port, capsys):
    endpoint = f"http://127.0.0.1:{closed_port}"
    assert main(["recommend", "EYE0001", "--endpoint", endpoint]) == 2
    error_line(capsys, f"no service at {endpoint}", "connection refused", "`eyeops up`")


def test_refused_connection_in_monitor_report_names_the_url_and_the_command(tmp_path, closed_port, capsys):
    monitor = f"http://127.0.0.1:{closed_port}"
    argv = ["monitor", "report", "--monitor", monitor, "--out", str(tmp_path / "drift.html")]
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2  # a subcommand's SystemExit keeps its message for callers of main()
    error_line(capsys, monitor, "`eyeops up`")
