"""The four locks (images/constraints-*.txt) are what set-up, CI and the images install. These
tests fail when a lock and what the project asks for disagree; tests/process/test_locks.py fails when
an environment on this machine has drifted from its lock, so a green run means the tested system is
the shipped one."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from eyeops.settings import repo_root

ROOT = repo_root()
ENVIRONMENTS = {
    # lock: (interpreter of the environment built from it, what asks for the packages)
    "main": (ROOT / ".venv" / "bin" / "python", ROOT / "pyproject.toml"),
    "detectors": (ROOT / ".venv-detectors" / "bin" / "python", ROOT / "detectors" / "pyproject.toml"),
    "triton": (ROOT / ".venv-triton" / "bin" / "python", ROOT / "inference" / "triton" / "requirements.txt"),
    "docs": (ROOT / ".venv-docs" / "bin" / "python", ROOT / "docs" / "requirements.txt"),
}


def read_lock(name: str) -> dict[str, str]:
    """A lock's pins by canonical name; every line is NAME==VERSION or a comment."""
    pins: dict[str, str] = {}
    for line in (ROOT / "images" / f"constraints-{name}.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        package, sep, version = line.partition("==")
        assert sep and version.strip() and " " not in version.strip(), f"not an exact pin: {line!r}"
        pins[canonicalize_name(package)] = version.strip()
    return pins


def requirements(source: Path) -> list[Requirement]:
    """Every requirement the project states for an environment: dependencies and all extras."""
    if source.suffix == ".toml":
        project = tomllib.loads(source.read_text())["project"]
        lines = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            lines += extra
    else:
        lines = [ln.split("#")[0].strip() for ln in source.read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


def unlocked(name: str) -> list[str]:
    pins = read_lock(name)
    problems = []
    for req in requirements(ENVIRONMENTS[name][1]):
        key = canonicalize_name(req.name)
        if key == "torch":
            assert str(req.specifier) == "==2.13.0", f"torch must be pinned exactly, not {req}"
            continue
        if key not in pins:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pins[key], prereleases=True):
            problems.append(f"{req} but the lock pins {pins[key]}")
    return problems


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_every_stated_requirement_is_pinned_by_its_lock_within_its_range(name: str) -> None:
    assert unlocked(name) == [], f"run `bash scripts/lock.sh {name}` and commit the lock"


def test_a_requirement_the_lock_does_not_satisfy_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "requirements.txt"
    source.write_text("numpy>=3\nnot-a-locked-package\n")
    pins = read_lock("triton")
    reqs = requirements(source)
    assert not reqs[0].specifier.contains(pins["numpy"])
    assert canonicalize_name(reqs[1].name) not in pins
