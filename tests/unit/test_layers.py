"""Layers point down: domain types and the registry import no model, store or serving code above
them, and no evaluation imports the local stack. Checked on the source's import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from eyeops.settings import repo_root

pytestmark = pytest.mark.unit
PACKAGE = repo_root() / "eyeops"

# (modules, by path under eyeops/, that must not import) → (module prefixes they must not import)
RULES = [
    (
        ["exams.py", "fields.py", "devices"],
        ["sqlalchemy", "kserve", "feast", "torch", "eyeops.db", "inference"],
    ),
    (["registry"], ["eyeops.lens", "eyeops.ocr", "eyeops.monitoring", "eyeops.pipelines", "eyeops.stack"]),
    (["db"], ["eyeops.lens", "eyeops.ocr", "eyeops.stack", "eyeops.gateway", "inference", "feast"]),
    (["ocr/evaluate.py", "ocr/offline.py", "lens/evaluate.py", "monitoring"], ["eyeops.stack"]),
    (["."], ["inference", "tests", "bench"]),
]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(where: str) -> list[Path]:
    target = PACKAGE / where
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize(("where", "forbidden"), RULES, ids=[",".join(r[0]) for r in RULES])
def test_layer_imports_nothing_above_it(where: list[str], forbidden: list[str]) -> None:
    offences = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for part in where
        for path in files(part)
        for name in imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert offences == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from eyeops.stack.local import LocalStack\n")
    assert "eyeops.stack.local" in imports(module)
