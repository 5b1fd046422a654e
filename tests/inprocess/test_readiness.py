"""The chart's readiness check (eyeops.readiness, run by the helm test Pod and the init
containers) against a real closed port on this machine."""

from __future__ import annotations

from eyeops.readiness import check


def test_readiness_reports_what_is_not_ready() -> None:
    assert check(["http://127.0.0.1:9/never"], attempts=1) == ["http://127.0.0.1:9/never"]
