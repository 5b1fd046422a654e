"""Every `eyeops ...` command in the README's and the docs' shell blocks parses with the command line
it documents (the same argparse the program runs), so a renamed flag, subcommand or choice cannot
stay in the docs. Parsing, not running: most commands need a stack, a cluster or hours of CPU; the
tiers that run them are named beside them in the docs. `[...]` marks an optional part and is read
without its brackets."""

from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest

from eyeops.settings import repo_root

ROOT = repo_root()
COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:\S*/bin/)?eyeops\s+(.*)$")


def documented_commands() -> list[tuple[str, str]]:
    """(file, the arguments after `eyeops`) for each command line in a bash/sh/console block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"\s(?:&&|;|\|\|)\s", line.split(" #")[0].strip()):
                    match = COMMAND.match(part.strip().removeprefix("$ "))
                    if match:
                        rest = re.split(r"\s(?:\||>|2>|<)\s", match.group(1))[0]
                        found.append((str(path.relative_to(ROOT)), rest.replace("[", "").replace("]", "")))
    return found


def test_the_docs_show_enough_commands_to_be_worth_checking() -> None:
    commands = documented_commands()
    assert len(commands) >= 50
    assert {c.split()[0] for _, c in commands} >= {"ocr", "lens", "gateway", "console", "devices", "registry"}


@pytest.mark.parametrize(("where", "arguments"), documented_commands())
def test_every_documented_command_parses(where: str, arguments: str) -> None:
    from eyeops.cli import build_parser

    parser = build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(shlex.split(arguments))
    except SystemExit as exc:
        assert exc.code in (0, None), f"{where}: eyeops {arguments}\n{stderr.getvalue().strip()}"


def test_a_stale_flag_would_be_caught() -> None:
    from eyeops.cli import build_parser

    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(io.StringIO()):
        build_parser().parse_args(shlex.split("ocr eval --count 300 --no-such-flag"))
    assert info.value.code == 2
