"""The tiers from outside, as a developer or CI selects them: `pytest -m <tier>` over files from several
folders collects exactly the files whose folder has that tier (tests/conftest.py marks each test by its
folder before `-m` deselects; the map and the unit contract are checked in tests/unit/test_tiers.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eyeops.settings import repo_root

# One small file from each of four folders, two of them unit tier.
FILES = {
    "tests/unit/test_tiers.py": "unit",
    "tests/foreign/test_cohort.py": "unit",
    "tests/process/test_server_extra.py": "process",
    "tests/inprocess/test_store.py": "inprocess",
}


def collected(expression: str) -> set[str]:
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    argv += ["-m", expression, *FILES]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=repo_root(), timeout=120)
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    return {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}


@pytest.mark.parametrize("tier", ["unit", "process", "inprocess", "integration"])
def test_selecting_a_tier_collects_exactly_its_folders(tier: str) -> None:
    assert collected(tier) == {path for path, of in FILES.items() if of == tier}
