"""`gateway watch` refuses a configuration that would run without ever delivering; `gateway status`
keeps refused uploads apart from quarantined files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from eyeops.cli import main
from eyeops.devices import load_layouts
from eyeops.errors import UnknownDeviceKind
from eyeops.gateway.config import GatewaySetupError, check_watch_setup, load_gateway_config
from eyeops.gateway.outbox import Outbox


def isolate_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("EYEOPS_DATA_DIR", str(folder))
    for key in [k for k in os.environ if k.startswith("EYEOPS_GATEWAY_")]:
        monkeypatch.delenv(key)
    return folder


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_data_dir(tmp_path, monkeypatch)


def watch_argv(folder: Path, kind: str = "optical_biometer", *extra: str) -> list[str]:
    return ["gateway", "watch", str(folder), "--device-kind", kind, "--device-id", "iol-01",
            "--endpoint", "http://127.0.0.1:1", *extra]  # fmt: skip


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eyeops: error: ") and "Traceback" not in err, err
    return err


def test_a_watch_folder_that_does_not_exist_is_refused_not_created(tmp_path, data_dir, capsys):
    typo = tmp_path / "exprots"
    assert main(watch_argv(typo)) == 2
    assert f"watch folder {typo} does not exist" in one_error_line(capsys)
    assert not typo.exists() and not (data_dir / "gateway").exists()  # no outbox either

    a_file = tmp_path / "export.png"
    a_file.write_bytes(b"not a folder")
    assert main(watch_argv(a_file)) == 2
    assert "is not a folder" in one_error_line(capsys)


def test_an_unknown_device_kind_is_refused_with_the_known_kinds(tmp_path, capsys):
    assert main(watch_argv(tmp_path, "fundus_camera")) == 2
    line = one_error_line(capsys)
    assert "'fundus_camera'" in line and "--allow-unknown-kind" in line
    assert all(kind in line for kind in load_layouts().kinds())
    with pytest.raises(UnknownDeviceKind):
        main(["--debug", *watch_argv(tmp_path, "fundus_camera")])


def test_allow_unknown_kind_lets_a_newer_kind_through(tmp_path):
    base = {"watch_dir": tmp_path, "device_kind": "fundus_camera", "device_id": "f-1", "endpoint": "http://x"}
    with pytest.raises(UnknownDeviceKind):
        check_watch_setup(load_gateway_config(None, base, {}))
    check_watch_setup(load_gateway_config(None, {**base, "allow_unknown_kind": True}, {}))
    check_watch_setup(load_gateway_config(None, base, {}), known_kinds=["fundus_camera"])


def test_a_token_file_that_is_not_there_is_refused(tmp_path, capsys):
    missing = tmp_path / "iol-01.token"
    assert main(watch_argv(tmp_path, "optical_biometer", "--token-file", str(missing))) == 2
    line = one_error_line(capsys)
    assert f"token file {missing} does not exist" in line and "eyeops gateway token" in line
    with pytest.raises(GatewaySetupError):
        check_watch_setup(
            load_gateway_config(
                None,
                {
                    "watch_dir": tmp_path,
                    "device_kind": "autorefractor",
                    "device_id": "ar-1",
                    "endpoint": "http://x",
                    "token_file": missing,
                },
                {},
            )
        )


def put(outbox: Outbox, name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    outbox.capture(name, "autorefractor", name.encode(), digest, len(name), 1)
    return digest


def test_status_keeps_refused_uploads_apart_from_quarantined_files(tmp_path, capsys):
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.finish(put(outbox, "/x/a.png"), "failed", reason="unknown device token", http_status=401)
    outbox.finish(put(outbox, "/x/b.png"), "failed", reason="unknown device token", http_status=401)
    outbox.finish(put(outbox, "/x/c.txt"), "quarantined", reason="not an image: text", http_status=400)
    outbox.close()

    assert main(["gateway", "status", "--state-dir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(f["count"], f["http_status"]) for f in status["refused"]] == [(2, 401)]
    assert [f["reason"] for f in status["quarantined"]] == ["not an image: text"]
    assert status["quarantine_dir"] == str(tmp_path / "quarantine")

    assert main(["gateway", "status", "--state-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    refused_at, quarantined_at = text.index("refused uploads:   2"), text.index("quarantined files: 1")
    assert refused_at < text.index("unknown device token") < quarantined_at
    assert text.index("not an image: text") > quarantined_at
