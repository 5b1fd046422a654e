"""The monitor (detectors/, its own environment) restates what the lens service claims: the sizes
and the coverage of a supported size's interval and an unsupported size's bounds. Read from its
source here, so a change to the lens configuration cannot leave the monitor checking an old claim."""

from __future__ import annotations

import ast

from eyeops.lens.model import LensConfig
from eyeops.lens.sizes import SIZES_MM
from eyeops.settings import repo_root


def constant(path: str, name: str) -> object:
    tree = ast.parse((repo_root() / path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is gone from {path}")


def test_the_monitor_checks_the_claims_the_lens_service_makes() -> None:
    config = LensConfig()
    claimed = constant("detectors/eyeops_detectors/metrics.py", "CLAIMED_COVERAGE")
    assert claimed == {"supported": 1 - config.alpha, "unsupported": 1 - config.bound_alpha}
    assert constant("detectors/eyeops_detectors/detectors.py", "SIZES_MM") == SIZES_MM
