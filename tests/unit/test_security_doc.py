"""docs/security.md names a test for every control: each one it names exists, so a renamed or
removed test cannot leave a control in the table without its proof."""

from __future__ import annotations

import re

from eyeops.settings import repo_root


def test_every_test_the_threat_model_names_exists() -> None:
    root = repo_root()
    text = (root / "docs" / "security.md").read_text(encoding="utf-8")
    named = re.findall(r"`((?:tests|detectors/tests)/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(named) >= 25, named
    for path, name in named:
        source = (root / path).read_text(encoding="utf-8")
        if name:
            assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} is gone"
