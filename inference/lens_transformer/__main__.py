"""Entrypoint of the lens transformer container and of `eyeops up`'s lens transformer process.

    python -m inference.lens_transformer --model_name lens --predictor_host 127.0.0.1:8081 \
        --feature_repo feature_repo --http_port 8082 --tokens clients.txt --predictor_token_file lens.token
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inference.server import add_edge_arguments

if TYPE_CHECKING:
    from inference.predictor import PredictorClient

PREDICTOR_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    """This entrypoint's own arguments; kserve.model_server.parser takes the rest (the chart's
    tests parse the args it renders with both)."""
    parser = argparse.ArgumentParser(description="eyeops lens transformer (kserve.ModelServer)")
    parser.add_argument("--model_name", default="lens")
    parser.add_argument("--predictor_host", required=True)
    parser.add_argument("--predictor_model", default="lens")
    parser.add_argument(
        "--feature_repo", default="feature_repo", help="Feast repository (feature_store.yaml)"
    )
    add_edge_arguments(parser, "hashed bearer tokens of the clinical applications that may ask")
    parser.add_argument("--jwks_file", default=None, help="the identity provider's JSON Web Key Set (OIDC)")
    parser.add_argument("--jwt_issuer", default=None, help="the `iss` a JWT must carry (with --jwks_file)")
    parser.add_argument("--jwt_audience", default=None, help="the `aud` a JWT must carry (with --jwks_file)")
    parser.add_argument(
        "--predictor_token_file",
        default=None,
        help="this service's token for the lens predictor (EYEOPS_PREDICTOR_TOKEN also works)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, _ = build_parser().parse_known_args(argv)

    from kserve import model_server

    from eyeops.features.online import FeastOnlineStore
    from inference.lens_transformer.model import LensTransformer
    from inference.payload_logger import install_payload_logger
    from inference.server import EdgeOptions, load_registry, serve

    edge = EdgeOptions.from_args(own)
    registry = load_registry(edge, "client")
    if own.jwks_file:
        from eyeops.auth import Authenticator, JwtVerifier

        if registry is None or not (own.jwt_issuer and own.jwt_audience):
            raise SystemExit("--jwks_file needs --jwt_issuer, --jwt_audience and a --tokens registry")
        verifier = JwtVerifier.from_file(Path(own.jwks_file), own.jwt_issuer, own.jwt_audience)
        registry = Authenticator(registry, verifier)
    store = FeastOnlineStore.open(Path(own.feature_repo))
    install_payload_logger(model_server.app, "transformer", own.model_name)
    predictor = build_predictor(own)
    model = LensTransformer(own.model_name, store, predictor)
    model.load()
    serve([model], edge, registry, predictor_ready=predictor.ready)
    return 0


def build_predictor(own: argparse.Namespace) -> PredictorClient:
    """The lens predictor's v1 client: `--predictor_host`, `--predictor_model`, and this service's
    token for it (`--predictor_token_file`, else EYEOPS_PREDICTOR_TOKEN) as a bearer header."""
    from inference.lens_transformer.model import RETRY_AFTER_S
    from inference.predictor import PredictorClient
    from inference.server import predictor_key

    token = predictor_key(own.predictor_token_file, "EYEOPS_PREDICTOR_TOKEN")
    return PredictorClient(
        f"http://{own.predictor_host}",
        own.predictor_model,
        protocol="v1",
        headers={"authorization": f"Bearer {token}"} if token else None,
        timeout_s=PREDICTOR_TIMEOUT_S,
        retry_after_s=RETRY_AFTER_S,
        label="lens predictor",
    )


if __name__ == "__main__":
    sys.exit(main())
