"""Layers point down, as docs/architecture.md's layer table says: every module of eyeops/,
inference/ and kfp_pipelines/ has a layer (the longest matching prefix in the table), and no import,
at the top of a file or inside a function, reaches a module of a higher layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from eyeops.settings import repo_root

ROOT = repo_root()
PACKAGES = ("eyeops", "inference", "kfp_pipelines")
SKIPPED = ("eyeops/features/feature_repo/", "inference/triton/")  # Feast's and Triton's own loaders
ENTRY_POINTS = ("cli", "__main__")


def layer_table() -> dict[str, int]:
    """`module prefix -> layer` from the table under "## Layers" in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1]
    table: dict[str, int] = {}
    for row in re.findall(r"^\| (\d+) \| (.+?) \|", section, re.M):
        for name in re.findall(r"`([\w.*]+)`", row[1]):
            table[name] = int(row[0])
    return table


def layer_of(module: str, table: dict[str, int]) -> int | None:
    last = module.rsplit(".", 1)[-1]
    if last in ENTRY_POINTS:
        return table[f"*.{last}"]
    matches = [p for p in table if module == p or (module.startswith(p + ".") and p != "eyeops")]
    return table[max(matches, key=len)] if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(name: str) -> str | None:
    """The module a dotted import name lands in (`pkg.mod.Name` -> `pkg.mod`)."""
    while name:
        base = ROOT / name.replace(".", "/")
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return name
        name = name.rpartition(".")[0]
    return None


def internal_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and (module := resolve(name)):
                found.add(module)
    return found


def sources() -> list[Path]:
    return [
        p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if not str(p.relative_to(ROOT)).startswith(SKIPPED)
    ]


def offences(here: str, path: Path, table: dict[str, int]) -> list[str]:
    mine = layer_of(here, table)
    assert mine is not None, f"{here} has no layer: add it to docs/architecture.md's table"
    found = []
    for target in sorted(internal_imports(path)):
        theirs = layer_of(target, table)
        if theirs is not None and theirs > mine:
            found.append(f"{here} (layer {mine}) imports {target} (layer {theirs})")
    return found


def test_every_module_has_a_layer_and_no_import_points_up() -> None:
    table = layer_table()
    assert set(table.values()) == set(range(6)) and len(table) > 25
    files = sources()
    assert len(files) > 100
    assert [o for path in files for o in offences(module_name(path), path, table)] == []


def test_the_check_sees_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    table = layer_table()
    planted = ROOT / "eyeops" / "fields.py"  # layer 1, importing the local stack (layer 4)
    source = planted.read_text(encoding="utf-8")
    fake = tmp_path / "fields.py"
    fake.write_text(source + "\n\ndef _f() -> None:\n    from eyeops.stack.local import LocalStack\n")
    assert offences("eyeops.fields", fake, table) == [
        "eyeops.fields (layer 1) imports eyeops.stack.local (layer 4)"
    ]
    assert layer_of("eyeops.fields", table) == 1 and layer_of("eyeops.stack.local", table) == 4
    assert layer_of("eyeops.ocr.cli", table) == 5 and layer_of("eyeops.devices.layout", table) == 1
    assert layer_of("eyeops.devices.onboard", table) == 3


def test_only_the_database_layer_names_the_schema() -> None:
    """The results database sits behind its repositories (eyeops.db.store, .review, .queries,
    .feature_outbox): a table or column renamed in eyeops.db.schema changes eyeops/db/ alone."""
    outside = {
        module_name(path)
        for path in sources()
        if not module_name(path).startswith("eyeops.db")
        and "eyeops.db.schema" in internal_imports(path)
    }
    assert outside == set()
