"""Which commands need the `server` extra, and the one-line answer when it is not installed.

A clinic PC installs `eyeops[gateway]`: the core dependencies only. Every command still parses
(no sub-CLI imports a server library at import), and a command that needs torch, KServe, Feast,
KFP, SQLAlchemy ... says which extra to install instead of ending in a ModuleNotFoundError.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from eyeops.errors import EyeopsError

# What `eyeops[gateway]` runs: these commands need the core dependencies only.
GATEWAY_COMMANDS = frozenset({"gateway", "batch"})

# Top-level modules of the server extra's requirements (and of what they pull in).
SERVER_MODULES = frozenset(
    {
        "alembic",
        "cv2",
        "feast",
        "joblib",
        "kfp",
        "kserve",
        "lightgbm",
        "matplotlib",
        "pandas",
        "pandera",
        "psycopg",
        "pyarrow",
        "pytesseract",
        "interegular",
        "redis",
        "scipy",
        "sklearn",
        "sqlalchemy",
        "torch",
        "transformers",
    }
)

Command = Callable[[argparse.Namespace], int]


class ServerExtraMissing(EyeopsError):
    """A command of the servers, pipelines or local stack ran where only the gateway is installed."""


def needs_server_extra(command: str, func: Command) -> Command:
    """`func`, with a missing server library turned into ServerExtraMissing naming the extra."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing not in SERVER_MODULES:
                raise
            raise ServerExtraMissing(
                f"eyeops {command} needs the server extra: pip install 'eyeops[server]'"
                f" (no module {missing!r})"
            ) from exc

    return run


def guard_server_commands(parser: argparse.ArgumentParser) -> None:
    """Wrap every command outside GATEWAY_COMMANDS with needs_server_extra."""
    for name, subparser in _subcommands(parser):
        if name not in GATEWAY_COMMANDS:
            _wrap_all(subparser, name)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    # argparse lists subparsers only through the _SubParsersAction that add_subparsers returns.
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, Any] = action.choices
            found += [
                (name, sub) for name, sub in choices.items() if isinstance(sub, argparse.ArgumentParser)
            ]
    return found


def _wrap_all(parser: argparse.ArgumentParser, command: str) -> None:
    func = parser.get_default("func")
    if callable(func):
        parser.set_defaults(func=needs_server_extra(command, func))
    for name, subparser in _subcommands(parser):
        _wrap_all(subparser, f"{command} {name}")
