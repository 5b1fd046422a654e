"""Test tiers are folders (tests/tiers.py): every test file sits in a folder that has a tier, every
collected test carries its folder's marker and no other tier's, and a unit-tier test can start no
process and open no socket. The `-m` selection from outside is checked in tests/process/test_tiers.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest

from tests.tiers import TESTS, TIERS, folder_of, mark_by_tier, tier_of


def test_every_test_file_sits_in_a_folder_with_a_tier() -> None:
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 50
    without = [str(f.relative_to(TESTS.parent)) for f in files if tier_of(f) is None]
    assert not without, f"move each to its tier's folder or name its folder in tests/tiers.py: {without}"


def test_every_folder_named_in_the_map_exists_and_every_tier_is_a_declared_marker() -> None:
    assert not [folder for folder in TIERS if not (TESTS / folder).is_dir()]
    pyproject = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    declared = {line.split(":")[0] for line in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    assert set(TIERS.values()) <= declared, set(TIERS.values()) - declared


def test_the_folder_decides_the_tier() -> None:
    assert tier_of(TESTS / "unit" / "test_x.py") == "unit"
    assert tier_of(TESTS / "stress" / "test_x.py") == "unit"
    assert tier_of(TESTS / "process" / "test_x.py") == "process"
    assert tier_of(TESTS / "integration" / "test_x.py") == "integration"
    assert tier_of(TESTS / "test_x.py") is None and folder_of(TESTS / "test_x.py") == ""
    assert tier_of(TESTS / "nowhere" / "test_x.py") is None
    assert folder_of(TESTS.parent / "detectors" / "tests" / "test_x.py") is None  # not ours to mark


class FakeItem:
    def __init__(self, path: Path) -> None:
        self.path, self.nodeid, self.marks = path, f"{path.name}::test_x", list[str]()

    def add_marker(self, name: str) -> None:
        self.marks.append(name)


def test_the_hook_marks_by_folder_and_refuses_a_folder_without_a_tier() -> None:
    unit, model = FakeItem(TESTS / "foreign" / "test_x.py"), FakeItem(TESTS / "model" / "test_x.py")
    elsewhere = FakeItem(TESTS.parent / "detectors" / "tests" / "test_x.py")
    mark_by_tier(cast(Any, [unit, model, elsewhere]))
    assert (unit.marks, model.marks, elsewhere.marks) == (["unit"], ["model"], [])
    with pytest.raises(pytest.UsageError, match=r"tests/newtier has no test tier"):
        mark_by_tier(cast(Any, [FakeItem(TESTS / "newtier" / "test_x.py")]))


def test_every_test_in_this_run_carries_its_folders_tier_and_no_other(request: pytest.FixtureRequest) -> None:
    items = [item for item in request.session.items if folder_of(item.path) is not None]
    assert request.node in items
    tiers = set(TIERS.values())
    wrong = {
        item.nodeid: sorted({m.name for m in item.iter_markers()} & tiers)
        for item in items
        if {m.name for m in item.iter_markers()} & tiers != {tier_of(item.path)}
    }
    assert not wrong, f"a tier comes from the folder; remove these marks or move the files: {wrong}"


def test_a_unit_test_starts_no_process() -> None:
    with pytest.raises(AssertionError, match=r"starts no process.*tests/process"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.parametrize("verb", ["connect", "connect_ex", "bind"])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6, socket.AF_UNIX])
def test_a_unit_test_opens_no_socket(verb: str, family: socket.AddressFamily, tmp_path: Path) -> None:
    address = {socket.AF_INET: ("127.0.0.1", 9), socket.AF_INET6: ("::1", 9)}.get(family, str(tmp_path / "s"))
    with socket.socket(family) as sock, pytest.raises(AssertionError, match=r"no socket.*tests/inprocess"):
        getattr(sock, verb)(address)
