"""The `eyeops` command line. Parsing happens here, when main() runs, never at import.

A failure the user can act on ends as one line on stderr, `eyeops: error: ...`, and exit code 2
(130 for Ctrl-C); `eyeops --debug ...` lets the traceback through instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
    import pydantic
    import sqlalchemy.exc

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
START_THE_STACK = "start the stack with `eyeops up` (it prints each service's URL)"


def build_parser() -> argparse.ArgumentParser:
    from eyeops import chartdocs
    from eyeops.console import cli as console_cli
    from eyeops.devices import cli as devices_cli
    from eyeops.gateway import cli as gateway_cli
    from eyeops.lens import cli as lens_cli
    from eyeops.monitoring import cli as monitoring_cli
    from eyeops.ocr import cli as ocr_cli
    from eyeops.ops import cli as ops_cli
    from eyeops.pipelines import cli as pipelines_cli
    from eyeops.stack import cli as stack_cli
    from eyeops.synth import cli as synth_cli

    parser = argparse.ArgumentParser(prog="eyeops", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also accepted later)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ocr_cli.add_parser(sub)
    stack_cli.add_parser(sub)
    gateway_cli.add_parser(sub)
    devices_cli.add_parser(sub)
    ops_cli.add_parser(sub)
    synth_cli.add_parser(sub)
    lens_cli.add_parser(sub)
    pipelines_cli.add_parser(sub)
    monitoring_cli.add_parser(sub)
    chartdocs.add_parser(sub)
    console_cli.add_parser(sub)
    pipelines_cli.add_registry_parser(sub)
    # Where only `eyeops[gateway]` is installed, the other commands say which extra they need.
    from eyeops.extras import guard_server_commands

    guard_server_commands(parser)
    return parser


def take_debug_flag(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether `--debug` appears anywhere before a `--`, and the arguments without it."""
    args = list(argv)
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    return debug, [a for i, a in enumerate(args) if not (i < end and a == "--debug")]


def main(argv: Sequence[str] | None = None) -> int:
    debug, rest = take_debug_flag(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(rest)  # a usage error exits 2 here, as argparse does
    args.debug = debug
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        # `raise SystemExit("message")` is how subcommands report a usage problem: same line, same
        # exit code; the exception still propagates, so callers of main() see the message in it.
        if isinstance(exc.code, str) and not debug:
            line = one_line(exc.code)
            if is_unreachable_service(exc.__cause__):
                line = f"{line}; {START_THE_STACK}"
            print_error(line)
            exc.code = EXIT_ERROR
        elif isinstance(exc.code, str):
            import traceback

            traceback.print_exc()
        raise
    except Exception as exc:
        described = describe_error(exc, args)
        if described is None or debug:
            raise
        print_error(described)
        return EXIT_ERROR
    return result


def print_error(line: str) -> None:
    print(f"eyeops: error: {line}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def describe_error(exc: BaseException, args: argparse.Namespace | None = None) -> str | None:
    """One line for an error the user can act on; None for a bug (which keeps its traceback)."""
    from eyeops.errors import EyeopsError

    if isinstance(exc, EyeopsError):
        return one_line(str(exc))
    # Third-party errors are only checked for when their library is loaded: catching them must not
    # import pydantic, httpx or SQLAlchemy into a command that never used them.
    if "pydantic" in sys.modules:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return describe_validation_error(exc)
    if "httpx" in sys.modules:
        import httpx

        if isinstance(exc, httpx.HTTPError):
            return describe_http_error(exc)
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            return describe_database_error(exc, args)
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return None


def is_unreachable_service(exc: BaseException | None) -> bool:
    if exc is None or "httpx" not in sys.modules:
        return False
    import httpx

    return isinstance(exc, httpx.ConnectError)


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """Field names and messages, never the offending input (it may be a patient's data)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    return one_line(f"invalid {exc.title}: " + "; ".join(problems))


def describe_http_error(exc: httpx.HTTPError) -> str:
    import httpx

    try:
        url = exc.request.url
    except RuntimeError:  # an error raised without a request has no URL to name
        return one_line(f"{type(exc).__name__}: {exc}")
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    if isinstance(exc, httpx.ConnectError):
        why = "connection refused" if "refused" in str(exc).lower() else one_line(str(exc))
        return f"no service at {origin} ({why}): {START_THE_STACK}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{origin} did not answer {url.path} in time ({type(exc).__name__}); is the service healthy?"
    if isinstance(exc, httpx.HTTPStatusError):
        body = one_line(exc.response.text)[:200]
        return f"{url} answered {exc.response.status_code}: {body}"
    return one_line(f"{url}: {type(exc).__name__}: {exc}")


def describe_database_error(exc: sqlalchemy.exc.SQLAlchemyError, args: argparse.Namespace | None) -> str:
    """Which database and what to do. Never the statement's parameters: they can hold patient data."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, OperationalError

    given = getattr(args, "database_url", None)
    if given:
        url = str(given)
    else:
        from eyeops.settings import Settings

        url = Settings().resolved_database_url()
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is itself the problem; show only its scheme
        shown = url.split(":", 1)[0] + ":…"
    where = f"results database {shown}"
    if not isinstance(exc, DBAPIError):
        return f"{where}: {type(exc).__name__} (run with --debug for the details)"
    # Only an OperationalError's first line is shown (missing table, refused connection, locked
    # file): other driver messages may quote the values of a row.
    driver = type(exc.orig).__name__
    detail = str(exc.orig).splitlines()[0] if isinstance(exc, OperationalError) and str(exc.orig) else ""
    if "no such table" in detail or "does not exist" in detail:
        create = "create it by starting the stack once (`eyeops up`), or pass --database-url"
        return f"{where} has no tables ({detail}); {create}"
    if detail:
        return f"{where}: {detail} ({driver}); start it with `eyeops up`, or pass --database-url"
    return f"{where}: the query failed with {driver} (run with --debug for the statement)"


def describe_os_error(exc: OSError) -> str:
    what = exc.strerror or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {what}"
    if exc.filename is not None:
        return f"{exc.filename}: {what}"
    return one_line(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
