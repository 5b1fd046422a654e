"""The gateway runs on the core dependencies alone; other commands name the extra they need."""

from __future__ import annotations

import argparse
import sys

import pytest

from eyeops.cli import build_parser, main
from eyeops.extras import ServerExtraMissing, needs_server_extra


def test_a_missing_server_library_names_the_extra() -> None:
    def up(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'kserve.model'", name="kserve.model")

    with pytest.raises(
        ServerExtraMissing, match=r"eyeops up needs the server extra: pip install 'eyeops\[server\]'"
    ):
        needs_server_extra("up", up)(argparse.Namespace())


def test_other_missing_modules_stay_bugs() -> None:
    def broken(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'eyeops.gone'", name="eyeops.gone")

    with pytest.raises(ModuleNotFoundError):
        needs_server_extra("up", broken)(argparse.Namespace())


def test_gateway_commands_are_left_alone_and_server_commands_are_guarded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    gateway = parser.parse_args(
        ["gateway", "token", "--device-id", "d", "--registry", "r", "--token-file", "t"]
    )
    assert gateway.func.__module__ == "eyeops.gateway.cli"
    assert parser.parse_args(["batch", "x", "--device-kind", "k", "--out", "o"]).func.__module__ == (
        "eyeops.gateway.cli"
    )
    compile_ = parser.parse_args(["pipelines", "compile"]).func
    assert compile_.__module__ == "eyeops.pipelines.cli" and hasattr(compile_, "__wrapped__")

    # Where kfp is absent, the command ends as one line and exit 2, not a traceback.
    monkeypatch.setitem(sys.modules, "kfp", None)  # `import kfp` now raises ModuleNotFoundError
    assert main(["pipelines", "compile", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "eyeops: error: eyeops pipelines compile needs the server extra: pip install 'eyeops[server]'"
        " (no module 'kfp')"
    )
