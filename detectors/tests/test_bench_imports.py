"""The benches that run in this environment import (the main environment's
tests/unit/test_bench_imports.py imports the rest): a bench is run by hand, rarely, so a renamed
name would otherwise only show when someone needs its figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", ["drift_detection"])
def test_bench_module_imports(name: str) -> None:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None))
