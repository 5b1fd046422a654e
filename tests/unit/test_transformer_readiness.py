"""A transformer's readiness (`/v2/health/ready`, its pod's readiness probe) includes its predictor's:
the probe helper, the composition the server installs, and the lens transformer's check of its
predictor's model; requests never pay for it (they read their model's own flag)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from inference.lens_transformer.model import LensTransformer
from inference.server import answers_ready, server_ready

pytestmark = pytest.mark.unit


def transport(status: int, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"ready": status == 200})

    return httpx.MockTransport(handle)


def test_a_predictor_is_ready_only_when_its_readiness_path_answers_200() -> None:
    seen: list[httpx.Request] = []
    assert asyncio.run(
        answers_ready("http://p/v2/models/trocr/ready", {"k": "v"}, transport=transport(200, seen))
    )
    assert seen[0].headers["k"] == "v"
    assert not asyncio.run(answers_ready("http://p/x", transport=transport(503, seen)))

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert not asyncio.run(answers_ready("http://p/x", transport=httpx.MockTransport(unreachable)))


def test_the_lens_transformer_asks_its_predictor_for_its_model() -> None:
    seen: list[httpx.Request] = []
    model = LensTransformer("lens", lambda ids: [], "http://predictor:8080/", "lens", predictor_token="t")
    assert asyncio.run(model.predictor_ready(transport(200, seen)))
    assert str(seen[0].url) == "http://predictor:8080/v1/models/lens"
    assert seen[0].headers["authorization"] == "Bearer t"
    assert not asyncio.run(model.predictor_ready(transport(503, seen)))


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
