"""Each environment on this machine is its lock (images/constraints-*.txt): what `importlib.metadata`
reports in the environment's own interpreter, against the pins (the locks against what the project
asks for: tests/unit/test_locks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.unit.test_locks import ENVIRONMENTS, read_lock

# Installed apart (torch: exactly 2.13.0, the machine's CPU build) or by pip/venv themselves.
NOT_LOCKED = {"torch", "pip", "setuptools", "wheel", "eyeops", "eyeops-detectors"}


def installed(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return {canonicalize_name(k): v for k, v in json.loads(out).items()}


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_the_environment_on_this_machine_is_its_lock(name: str) -> None:
    python = ENVIRONMENTS[name][0]
    if name == "main":
        python = Path(sys.executable)  # the tests themselves run in the main environment
    have = installed(python)
    pins = read_lock(name)
    drifted = {
        k: f"{v} (lock: {pins.get(k, 'absent')})"
        for k, v in have.items()
        if k not in NOT_LOCKED and not k.startswith("nvidia-") and k != "triton" and pins.get(k) != v
    }
    missing = sorted(set(pins) - set(have))
    assert not drifted and not missing, (
        f"{name}: installed versions differ from the lock {drifted}, lock entries not installed {missing};"
        " run `bash scripts/setup.sh` (or `bash scripts/lock.sh` if the lock is what should change)"
    )
    if "torch" in have:
        assert have["torch"].startswith("2.13.0"), have["torch"]
