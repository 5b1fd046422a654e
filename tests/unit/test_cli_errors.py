"""Every failure a user can act on ends as one line on stderr (`eyeops: error: ...`, exit 2), never a
traceback; `--debug` lets the traceback through. Real files, no patched eyeops code. Refused
connections: tests/inprocess/test_cli_errors.py; the shell's view of a process: tests/process/."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest
import sqlalchemy.exc

from eyeops.cli import describe_error, main, take_debug_flag
from eyeops.errors import EyeopsError
from eyeops.gateway.config import GatewayConfig
from eyeops.registry import ModelRegistry


def isolate_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing a test runs writes into the checkout; no gateway variable of the caller leaks in."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("EYEOPS_DATA_DIR", str(folder))
    monkeypatch.delenv("EYEOPS_DATABASE_URL", raising=False)
    for key in [k for k in os.environ if k.startswith("EYEOPS_GATEWAY_")]:
        monkeypatch.delenv(key)
    return folder


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_data_dir(tmp_path, monkeypatch)


def error_line(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    """The one stderr line, checked for the prefix, the names it must mention and no traceback."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("eyeops: error: "), line
    assert "Traceback" not in captured.out + captured.err
    for name in names:
        assert name in line, (name, line)
    return line


def test_debug_flag_is_taken_anywhere_before_a_double_dash():
    assert take_debug_flag(["--debug", "ops", "report"]) == (True, ["ops", "report"])
    assert take_debug_flag(["ops", "report", "--debug"]) == (True, ["ops", "report"])
    assert take_debug_flag(["pipelines", "--", "--debug"]) == (False, ["pipelines", "--", "--debug"])


def test_gateway_watch_without_device_kind_names_the_option(tmp_path, capsys):
    argv = ["gateway", "watch", str(tmp_path), "--device-id", "iol-01", "--endpoint", "http://127.0.0.1:1"]
    assert main(argv) == 2
    line = error_line(capsys, "--device-kind", "EYEOPS_GATEWAY_DEVICE_KIND")
    assert "endpoint" not in line  # only what is missing is named
    with pytest.raises(EyeopsError, match="missing --device-kind"):
        main(["--debug", *argv])


def test_second_token_for_a_device_says_how_to_rotate(tmp_path, capsys):
    registry, token_file = tmp_path / "tokens.txt", tmp_path / "iol-01.token"
    argv = ["gateway", "token", "--device-id", "iol-01", "--registry", str(registry)]
    assert main([*argv, "--token-file", str(token_file)]) == 0
    first_token, first_registry = token_file.read_text(), registry.read_text()
    capsys.readouterr()

    assert main([*argv, "--token-file", str(token_file)]) == 2
    error_line(capsys, "'iol-01' already has a token", str(registry), "--rotate")
    assert (token_file.read_text(), registry.read_text()) == (first_token, first_registry)

    assert main([*argv, "--token-file", str(token_file), "--rotate"]) == 0
    assert "restart it" in capsys.readouterr().out
    lines = registry.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iol-01 sha256:") and lines[0] != first_registry.strip()
    assert token_file.read_text() != first_token and token_file.stat().st_mode & 0o777 == 0o600


def test_rotation_keeps_every_other_device(tmp_path):
    from eyeops.auth import TokenRegistry

    registry = tmp_path / "tokens.txt"
    for device in ("a-1", "b-2", "c-3"):
        assert main(["gateway", "token", "--device-id", device, "--registry", str(registry),
                     "--token-file", str(tmp_path / f"{device}.token")]) == 0  # fmt: skip
    before = registry.read_text().splitlines()
    assert main(["gateway", "token", "--device-id", "b-2", "--registry", str(registry),
                 "--token-file", str(tmp_path / "b-2.token"), "--rotate"]) == 0  # fmt: skip
    after = registry.read_text().splitlines()
    assert [before[0], before[2]] == after[:2] and after[2].startswith("b-2 ")
    new_token = (tmp_path / "b-2.token").read_text().strip()
    assert TokenRegistry.from_file(registry).authenticate(f"Bearer {new_token}") == "b-2"


def test_promoting_a_missing_version_lists_the_versions_that_exist(tmp_path, capsys):
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.json").write_text("{}")
    root = tmp_path / "registry"
    store = ModelRegistry(root)
    store.register("lens", "1", artifact, {})
    store.register("lens", "2", artifact, {})
    argv = ["registry", "--root", str(root), "promote", "lens", "9", "--note", "typo"]
    assert main(argv) == 2
    error_line(capsys, "lens has no version '9'", "1, 2")
    with pytest.raises(EyeopsError, match="no version '9'"):
        main([*argv, "--debug"])


def test_missing_results_database_names_the_url_and_how_to_create_it(tmp_path, data_dir, capsys):
    out = tmp_path / "report.html"
    assert main(["ops", "report", "--out", str(out)]) == 2
    line = error_line(capsys, f"sqlite:///{data_dir / 'results.db'}", "eyeops up", "--database-url")
    assert "SELECT" not in line and not out.exists()
    assert not (data_dir / "results.db").exists()  # looking did not create an empty database

    (tmp_path / "elsewhere.db").touch()  # a file that is no results database
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["ops", "report", "--out", str(out), "--database-url", elsewhere]) == 2
    error_line(capsys, elsewhere, "no such table")
    with pytest.raises(sqlalchemy.exc.OperationalError):
        main(["--debug", "ops", "report", "--out", str(out), "--database-url", elsewhere])


def test_a_usage_message_from_a_subcommand_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no outbox at") as raised:
        main(["gateway", "status", "--state-dir", str(tmp_path / "never-ran")])
    assert raised.value.code == 2
    error_line(capsys, str(tmp_path / "never-ran" / "outbox.db"))


def test_argparse_errors_stay_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["registry", "promote", "lens"])
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_missing_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    assert main(["gateway", "status", "--config", str(config)]) == 2
    error_line(capsys, str(config), "No such file")


def test_calibrate_names_a_missing_exam_folder_before_loading_any_model(tmp_path, capsys, monkeypatch):
    import eyeops.ocr.model as model

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("the recogniser was loaded before the folders were checked")

    monkeypatch.setattr(model, "load_recognizer", no_model)
    missing = tmp_path / "no-such-set"
    assert main(["ocr", "calibrate", "--exams", str(missing), "--out", str(tmp_path / "c.json")]) == 2
    error_line(capsys, str(missing / "truth.jsonl"))


def test_validation_errors_name_fields_but_never_echo_values():
    with pytest.raises(pydantic.ValidationError) as raised:
        GatewayConfig.model_validate(
            {
                "watch_dir": "/x",
                "device_kind": "k",
                "device_id": "d-1",
                "endpoint": "e",
                "concurrency": "P0001234",
            }
        )
    line = describe_error(raised.value)
    assert line is not None and "concurrency" in line and "GatewayConfig" in line
    assert "P0001234" not in line and "\n" not in line


def test_a_bug_keeps_its_traceback():
    assert describe_error(ZeroDivisionError("division by zero")) is None
