"""A transformer's readiness (`/v2/health/ready`, its pod's readiness probe) includes its predictor's:
each transformer's client asks its predictor for its model (built from the entrypoint's arguments),
and the composition the server installs; requests never pay for it (they read their model's own flag)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eyeops.auth import TRITON_KEY_HEADER
from eyeops.stack.process import free_port
from inference.lens_transformer.__main__ import build_parser as lens_parser
from inference.lens_transformer.__main__ import build_predictor as lens_predictor
from inference.ocr_transformer.__main__ import build_parser as ocr_parser
from inference.ocr_transformer.__main__ import build_predictor as ocr_predictor
from inference.server import server_ready
from tests.inprocess.http_predictor import answer, predictor


def test_the_ocr_transformer_asks_triton_for_its_recogniser(tmp_path: Path) -> None:
    """The chart's args plus what KServe injects (--predictor_host) make the client of Triton."""
    key = tmp_path / "triton.key"
    key.write_text("k-1\n")
    for status in (200, 503):
        with predictor(answer(status, {"ready": status == 200})) as server:
            host = server.url.removeprefix("http://")
            argv = ["--predictor_model", "trocr", "--predictor_protocol", "v2"]
            argv += ["--predictor_key_file", str(key), "--predictor_host", host, "--http_port", "8080"]
            own, _ = ocr_parser().parse_known_args(argv)
            assert asyncio.run(ocr_predictor(own, argv).ready()) is (status == 200)
        assert server.seen[0].path == "/v2/models/trocr/ready"
        assert server.seen[0].headers[TRITON_KEY_HEADER.lower()] == "k-1"
    with pytest.raises(SystemExit, match="--predictor_host"):
        ocr_predictor(own, argv[:6])  # the model, protocol and key: no host


def test_the_lens_transformer_asks_its_predictor_for_its_model(tmp_path: Path) -> None:
    token = tmp_path / "lens.token"
    token.write_text("t\n")
    for status in (200, 503):
        with predictor(answer(status, {"ready": status == 200})) as server:
            host = server.url.removeprefix("http://")
            own, _ = lens_parser().parse_known_args(
                ["--predictor_host", host, "--predictor_token_file", str(token)]
            )
            assert asyncio.run(lens_predictor(own).ready()) is (status == 200)
        assert server.seen[0].path == "/v1/models/lens"
        assert server.seen[0].headers["authorization"] == "Bearer t"

    nothing_listens = f"127.0.0.1:{free_port()}"
    own, _ = lens_parser().parse_known_args(["--predictor_host", nothing_listens])
    assert not asyncio.run(lens_predictor(own).ready())


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
