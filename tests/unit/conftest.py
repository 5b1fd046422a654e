"""The unit tier's contract: a unit test starts no process. One that must (the command line's
one-line errors, promtool on the alert rules, `pip freeze` of an environment against its lock) says
so with `@pytest.mark.process`; any other that starts one fails with the command it ran. Both run in
the fast tier; the mark makes the exception visible and countable."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_process_unless_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("process") is None:

        def refuse(args: Any, *_: Any, **__: Any) -> None:
            raise AssertionError(
                f"a unit test starts no process, and this one ran {args!r}: mark it"
                " @pytest.mark.process, or move it to the tier of what it starts"
            )

        monkeypatch.setattr(subprocess, "Popen", refuse)
    yield
