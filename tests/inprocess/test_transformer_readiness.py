"""A transformer's readiness (`/v2/health/ready`, its pod's readiness probe) includes its predictor's:
each transformer's client asks its predictor for its model (built from the entrypoint's arguments),
and the composition the server installs; requests never pay for it (they read their model's own flag)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from eyeops.auth import TRITON_KEY_HEADER
from inference.lens_transformer.__main__ import build_parser as lens_parser
from inference.lens_transformer.__main__ import build_predictor as lens_predictor
from inference.ocr_transformer.__main__ import build_parser as ocr_parser
from inference.ocr_transformer.__main__ import build_predictor as ocr_predictor
from inference.server import server_ready


def transport(status: int, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"ready": status == 200})

    return httpx.MockTransport(handle)


def test_the_ocr_transformer_asks_triton_for_its_recogniser(tmp_path: Path) -> None:
    """The chart's args plus what KServe injects (--predictor_host) make the client of Triton."""
    key = tmp_path / "triton.key"
    key.write_text("k-1\n")
    argv = ["--predictor_model", "trocr", "--predictor_protocol", "v2", "--predictor_key_file", str(key)]
    argv += ["--predictor_host", "ocr-predictor.eyeops", "--http_port", "8080"]
    seen: list[httpx.Request] = []
    own, _ = ocr_parser().parse_known_args(argv)
    assert asyncio.run(ocr_predictor(own, argv, transport(200, seen)).ready())
    assert str(seen[0].url) == "http://ocr-predictor.eyeops/v2/models/trocr/ready"
    assert seen[0].headers[TRITON_KEY_HEADER] == "k-1"
    assert not asyncio.run(ocr_predictor(own, argv, transport(503, seen)).ready())
    with pytest.raises(SystemExit, match="--predictor_host"):
        ocr_predictor(own, argv[:6])


def test_the_lens_transformer_asks_its_predictor_for_its_model(tmp_path: Path) -> None:
    token = tmp_path / "lens.token"
    token.write_text("t\n")
    own, _ = lens_parser().parse_known_args(
        ["--predictor_host", "predictor:8080", "--predictor_token_file", str(token)]
    )
    seen: list[httpx.Request] = []
    assert asyncio.run(lens_predictor(own, transport(200, seen)).ready())
    assert str(seen[0].url) == "http://predictor:8080/v1/models/lens"
    assert seen[0].headers["authorization"] == "Bearer t"
    assert not asyncio.run(lens_predictor(own, transport(503, seen)).ready())

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert not asyncio.run(lens_predictor(own, httpx.MockTransport(unreachable)).ready())


class Model:
    def __init__(self, ready: bool) -> None:
        self.ready = ready

    async def healthy(self) -> bool:
        return self.ready


def test_server_readiness_needs_its_models_kserve_and_the_predictor() -> None:
    async def yes() -> bool:
        return True

    async def no() -> bool:
        return False

    assert asyncio.run(server_ready([Model(True)], yes, yes)())
    assert not asyncio.run(server_ready([Model(True)], yes, no)())  # predictor not ready
    assert not asyncio.run(server_ready([Model(False)], yes, yes)())  # own model not loaded
    assert not asyncio.run(server_ready([Model(True)], no, yes)())
