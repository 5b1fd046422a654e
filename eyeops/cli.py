"""The `eyeops` command line. Parsing happens here, when main() runs, never at import."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from eyeops import chartdocs
    from eyeops.gateway import cli as gateway_cli
    from eyeops.lens import cli as lens_cli
    from eyeops.monitoring import cli as monitoring_cli
    from eyeops.ocr import cli as ocr_cli
    from eyeops.ops import cli as ops_cli
    from eyeops.pipelines import cli as pipelines_cli
    from eyeops.stack import cli as stack_cli
    from eyeops.synth import cli as synth_cli

    parser = argparse.ArgumentParser(prog="eyeops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ocr_cli.add_parser(sub)
    stack_cli.add_parser(sub)
    gateway_cli.add_parser(sub)
    ops_cli.add_parser(sub)
    synth_cli.add_parser(sub)
    lens_cli.add_parser(sub)
    pipelines_cli.add_parser(sub)
    monitoring_cli.add_parser(sub)
    chartdocs.add_parser(sub)
    pipelines_cli.add_registry_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
