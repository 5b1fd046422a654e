"""Issue 32: KServe's per-request timing lines (two INFO lines and two getrusage calls per request)
are off in our servers unless `--enable_latency_logging` is given."""

from __future__ import annotations

import argparse

import pytest

from inference.server import latency_logging_asked


@pytest.mark.parametrize(
    ("argv", "parsed", "expected"),
    [
        ([], True, False),  # KServe's default (true) does not count: not asked for
        (["--enable_latency_logging", "true"], True, True),
        (["--enable_latency_logging=true"], True, True),
        (["--enable_latency_logging", "false"], False, False),
        (["--model_name", "lens", "--enable_latency_logging_x"], True, False),
    ],
)
def test_latency_logging_runs_only_when_asked(argv: list[str], parsed: bool, expected: bool) -> None:
    assert latency_logging_asked(argv, argparse.Namespace(enable_latency_logging=parsed)) is expected
