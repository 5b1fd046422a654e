"""A gateway's checks in a real process: checking the device kind imports no serving stack, and a
gateway without a device token warns as it starts (the refusals: tests/unit/test_gateway_refusals.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_gateway_refusals import isolate_data_dir, watch_argv


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_data_dir(tmp_path, monkeypatch)


def test_checking_the_device_kind_imports_no_serving_stack(tmp_path):
    """The layouts are YAML; reading them must not pull torch, KServe or Feast into a gateway."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from eyeops.gateway.config import check_watch_setup, load_gateway_config\n"
        f"config = load_gateway_config(None, {{'watch_dir': Path({str(tmp_path)!r}),"
        " 'device_kind': 'autorefractor', 'device_id': 'ar-1', 'endpoint': 'http://x'}, {})\n"
        "check_watch_setup(config)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('torch', 'kserve', 'feast', 'transformers', 'sqlalchemy')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_gateway_without_a_token_warns_at_start(tmp_path, data_dir):
    env = {**os.environ, "EYEOPS_DATA_DIR": str(data_dir)}
    argv = watch_argv(tmp_path, "optical_biometer", "--state-dir", str(tmp_path / "state"))
    process = subprocess.Popen(
        [sys.executable, "-m", "eyeops.cli", *argv], stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stderr is not None
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "watching" in line:
                break
        process.send_signal(signal.SIGINT)
        lines.extend(process.communicate(timeout=60)[1].splitlines(keepends=True))
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "".join(lines)
    warnings = [line for line in lines if "WARNING" in line]
    assert len(warnings) == 1 and "has no device token" in warnings[0] and "401" in warnings[0]
