"""Entrypoint of the lens predictor container and of `eyeops up`'s lens predictor process.

python -m inference.lens_predictor --model_name lens --model_dir /mnt/models --http_port 8081 \
    --tokens /etc/eyeops/lens-predictor-callers/tokens
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.server import add_edge_arguments


def build_parser() -> argparse.ArgumentParser:
    """This entrypoint's own arguments; kserve.model_server.parser takes the rest (the chart's
    tests parse the args it renders with both)."""
    parser = argparse.ArgumentParser(description="eyeops lens predictor (kserve.ModelServer)")
    parser.add_argument("--model_name", default="lens")
    parser.add_argument("--model_dir", default="/mnt/models", help="lens model folder (KServe storageUri)")
    add_edge_arguments(parser, "hashed service tokens of its callers (the lens transformer)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, _ = build_parser().parse_known_args(argv)

    from kserve import model_server

    from inference.lens_predictor.model import LensPredictor
    from inference.payload_logger import install_payload_logger
    from inference.server import EdgeOptions, load_registry, serve

    edge = EdgeOptions.from_args(own)
    registry = load_registry(edge, "service")
    install_payload_logger(model_server.app, "predictor", own.model_name)
    model = LensPredictor(own.model_name, Path(own.model_dir))
    model.load()
    serve([model], edge, registry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
