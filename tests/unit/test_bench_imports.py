"""Every bench module imports: a bench is run by hand, rarely, so a name it takes from eyeops that
was renamed or removed would otherwise only show when someone needs its figure (bench/alignment.py
imported `eyeops.align._warp` for weeks after it became `warp_to_template`). The benches that run in
the detectors environment are imported by detectors/tests/test_bench_imports.py."""

from __future__ import annotations

import importlib

import pytest

from eyeops.settings import repo_root

SOURCES = {p.stem: p.read_text(encoding="utf-8") for p in (repo_root() / "bench").glob("*.py")}
DETECTORS_ENV = sorted(name for name, text in SOURCES.items() if ".venv-detectors/bin/python bench/" in text)
MAIN_ENV = sorted(set(SOURCES) - set(DETECTORS_ENV) - {"__init__"})


def test_the_bench_folder_is_found_and_split_by_environment() -> None:
    assert len(MAIN_ENV) >= 20, MAIN_ENV
    assert DETECTORS_ENV == ["drift_detection"]


@pytest.mark.parametrize("name", MAIN_ENV)
def test_bench_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
