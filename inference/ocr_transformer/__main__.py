"""Entrypoint of the OCR transformer container and of `eyeops up`'s transformer process.

    python -m inference.ocr_transformer --model_name ocr --predictor_host 127.0.0.1:8000 \
        --predictor_protocol v2 --http_port 8080
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eyeops.resources import TRITON_SECOND_MODEL_NAME
from inference.server import add_edge_arguments

if TYPE_CHECKING:
    from inference.predictor import PredictorClient


def build_parser() -> argparse.ArgumentParser:
    """This entrypoint's own arguments; kserve.model_server.parser takes the rest (the chart's
    tests parse the args it renders with both)."""
    parser = argparse.ArgumentParser(description="eyeops OCR transformer (kserve.ModelServer)")
    parser.add_argument("--model_name", default="ocr")
    parser.add_argument("--predictor_model", default="trocr", help="model name on the Triton predictor")
    parser.add_argument(
        "--second_model",
        default=TRITON_SECOND_MODEL_NAME,
        help="the second recogniser's model on the same Triton (EYEOPS_SECOND_OPINION=false leaves it out)",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        help="the recognisers' confidence calibration (`eyeops ocr calibrate`; default: the shipped one)",
    )
    parser.add_argument("--database_url", default=None, help="SQLAlchemy URL (default: settings)")
    parser.add_argument("--feature_repo", default=None, help="Feast repository to push accepted exams to")
    add_edge_arguments(
        parser, "hashed device token registry (`eyeops gateway token`; default EYEOPS_DEVICE_TOKENS_FILE)"
    )
    parser.add_argument("--device_tokens", dest="tokens", help="the same as --tokens (older name)")
    parser.add_argument(
        "--predictor_key_file",
        default=None,
        help="file holding the key Triton's restricted APIs expect (EYEOPS_TRITON_KEY also works)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, _ = build_parser().parse_known_args(argv)

    from kserve import model_server

    from eyeops.db.store import ResultsStore, migrate
    from eyeops.devices import load_layouts
    from eyeops.metrics import OcrMetrics
    from eyeops.settings import Settings
    from inference.auth import DEVICE_HEADER
    from inference.ocr_transformer.model import OcrTransformer
    from inference.payload_logger import install_payload_logger
    from inference.server import EdgeOptions, load_registry, serve

    predictor = build_predictor(own, argv)
    settings = Settings()
    if own.tokens is None and settings.device_tokens_file is not None:
        own.tokens = str(settings.device_tokens_file)
    edge = EdgeOptions.from_args(own)
    registry = load_registry(edge, "device")
    url = own.database_url or settings.resolved_database_url()
    migrate(url)
    install_payload_logger(model_server.app, "transformer", own.model_name)
    metrics = OcrMetrics()
    store = ResultsStore.from_url(url)
    features = None
    if own.feature_repo:
        from eyeops.features.outbox import FeatureOutboxWriter

        features = FeatureOutboxWriter(
            store,
            _feast_sink(own.feature_repo),
            on_outcome=lambda outcome: metrics.feature_pushes.labels(outcome=outcome).inc(),
        )
    second_model = own.second_model if settings.second_opinion else None
    if second_model:
        logging.info("second opinion on: %s on Triton checks readings below the confidence bar", second_model)
    else:
        logging.warning("second opinion OFF (EYEOPS_SECOND_OPINION=false): more silent errors under shift")
    from eyeops.ocr.arbitrate import Calibrations, shipped_calibrations

    calibrations = Calibrations.load(Path(own.calibration)) if own.calibration else shipped_calibrations()
    model = OcrTransformer(
        own.model_name,
        load_layouts(),
        store,
        settings,
        metrics,
        predictor,
        features=features,
        second_model=second_model,
        calibrations=calibrations,
        **({} if settings.second_opinion_below is None else {"second_below": settings.second_opinion_below}),
    )
    model.load()
    # An image of the size limit, base64-encoded (4/3), and the JSON around it.
    body_limit = settings.max_image_bytes * 4 // 3 + (64 << 10)
    refused = metrics.requests_failed.labels(status_code="401").inc
    serve(
        [model],
        edge,
        registry,
        DEVICE_HEADER,
        refused,
        max_body_bytes=body_limit,
        predictor_ready=lambda: _all_ready(predictor, second_model),
    )
    return 0


def build_predictor(own: argparse.Namespace, argv: Sequence[str]) -> PredictorClient:
    """The recogniser's client, from the predictor arguments KServe gives a transformer
    (`--predictor_host`, `--predictor_use_ssl`, `--predictor_request_timeout_seconds`, read with
    kserve.model_server.parser) and ours (`--predictor_model`, the key). Triton is always asked
    in v2: over HTTP (`--predictor_protocol v2`) or over gRPC (`grpc-v2`, KServe's name for it;
    `--predictor_host` is then Triton's gRPC address, and the key travels as the metadata Triton
    reads on gRPC)."""
    from kserve import model_server

    from eyeops.auth import TRITON_GRPC_KEY_HEADER, TRITON_KEY_HEADER
    from inference.ocr_transformer.model import PREDICTOR_RETRY_AFTER_S
    from inference.predictor import PredictorClient
    from inference.server import predictor_key

    kserve_args, _ = model_server.parser.parse_known_args(list(argv))
    if not kserve_args.predictor_host:
        raise SystemExit("--predictor_host HOST:PORT (Triton's address) is required")
    grpc = kserve_args.predictor_protocol == "grpc-v2"
    if not grpc and kserve_args.predictor_protocol != "v2":
        raise SystemExit("--predictor_protocol: Triton is asked in v2 (HTTP) or grpc-v2 (gRPC)")
    scheme = ("grpc" if grpc else "http") + ("s" if kserve_args.predictor_use_ssl else "")
    key = predictor_key(own.predictor_key_file)
    return PredictorClient(
        f"{scheme}://{kserve_args.predictor_host}",
        own.predictor_model,
        protocol="grpc-v2" if grpc else "v2",
        headers={TRITON_GRPC_KEY_HEADER if grpc else TRITON_KEY_HEADER: key} if key else None,
        timeout_s=float(kserve_args.predictor_request_timeout_seconds),
        retry_after_s=PREDICTOR_RETRY_AFTER_S,
        label="OCR predictor",
    )


async def _all_ready(predictor: PredictorClient, second_model: str | None) -> bool:
    """Ready when Triton has the primary recogniser and, with a second opinion, the second one."""
    if not await predictor.ready():
        return False
    return second_model is None or await predictor.ready(second_model)


def _feast_sink(repo: str):  # type: ignore[no-untyped-def]
    from eyeops.features.ingest import ExamFeatureSink
    from eyeops.features.online import FeastOnlineStore

    return ExamFeatureSink(FeastOnlineStore.open(Path(repo)))


if __name__ == "__main__":
    sys.exit(main())
