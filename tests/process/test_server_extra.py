"""The gateway runs on the core dependencies alone: a fresh interpreter that builds the command line and
imports the gateway loads no server library (the extras' messages: tests/unit/test_server_extra.py)."""

from __future__ import annotations

import subprocess
import sys

from eyeops.extras import GATEWAY_COMMANDS, SERVER_MODULES


def test_the_gateway_import_chain_loads_no_server_library() -> None:
    code = (
        "import sys\n"
        "from eyeops.cli import build_parser\n"
        "build_parser()\n"
        "import eyeops.gateway.batch, eyeops.gateway.runner, eyeops.gateway.validate, eyeops.auth\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SERVER_MODULES)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert {"gateway", "batch"} == GATEWAY_COMMANDS
