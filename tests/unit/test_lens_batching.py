"""Issue 32: the lens predictor batches the eyes of concurrent requests into one model call, and
every answer is exactly the one a call of its own gives."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from eyeops.errors import InvalidRequest
from eyeops.lens.cohort import simulate_cohort
from eyeops.lens.features import BASE_FEATURES, ImplausibleFeatures
from eyeops.lens.model import LensConfig, LensModel
from inference.batching import RowBatcher
from inference.lens_predictor.model import LensPredictor


@pytest.fixture(scope="module")
def predictor() -> LensPredictor:
    served = LensPredictor("lens", Path("unused"))
    served.model = LensModel.fit(simulate_cohort(2000, seed=41), LensConfig(vault_rounds=120), version="b-1")
    served.ready = True
    return served


def eyes_of(cohort: pd.DataFrame, start: int, count: int) -> list[dict[str, float]]:
    return [
        {f: float(cohort.iloc[i][f]) for f in BASE_FEATURES} for i in range(start, start + count)
    ]


def alone(predictor: LensPredictor, eyes: list[dict[str, float]]) -> list[dict[str, Any]]:
    """What a model call of this request's own gives (the code before batching)."""
    assert predictor.model is not None
    pred = predictor.model.predict(pd.DataFrame(eyes, columns=list(BASE_FEATURES)))
    return [pred.eye(i, predictor.model.version) for i in range(len(eyes))]


def v2(eyes: list[dict[str, float]]) -> InferRequest:
    inputs = [InferInput(f, [len(eyes)], "FP64", data=[e[f] for e in eyes]) for f in BASE_FEATURES]
    return InferRequest("lens", inputs, request_id="r-1")


def test_concurrent_requests_share_model_calls_and_get_exactly_their_own_answers(predictor):
    cohort = simulate_cohort(120, seed=42)
    requests = [eyes_of(cohort, 3 * n, 1 + n % 3) for n in range(30)]  # 1 to 3 eyes each
    calls_before = predictor.batcher.calls

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(
                predictor.predict({"instances": eyes}) if n % 2 else predictor.predict(v2(eyes))
                for n, eyes in enumerate(requests)
            )
        )

    answers = asyncio.run(all_at_once())
    calls = predictor.batcher.calls - calls_before
    assert calls < len(requests) / 2, f"{calls} model calls for {len(requests)} concurrent requests"
    for n, (eyes, answer) in enumerate(zip(requests, answers, strict=True)):
        expected = alone(predictor, eyes)
        if n % 2:
            assert answer["predictions"] == expected
        else:
            assert isinstance(answer, InferResponse) and answer.id == "r-1"
            outputs = {o.name: o for o in answer.outputs}
            assert [json.loads(p) for p in outputs["prediction"].data] == json.loads(json.dumps(expected))
            assert outputs["vault_um"].shape == [len(eyes), 4]
            assert predictor.model is not None
            own = predictor.model.predict(pd.DataFrame(eyes, columns=list(BASE_FEATURES)))
            for name in ("vault_um", "lower_um", "upper_um", "propensity"):
                assert outputs[name].data == getattr(own, name).ravel().tolist(), name


def test_a_bad_request_is_refused_alone_and_the_others_are_answered(predictor):
    cohort = simulate_cohort(10, seed=43)
    good = [eyes_of(cohort, n, 1) for n in range(4)]
    implausible = [{**good[0][0], "wtw_mm": 30.0}]

    async def together() -> list[Any]:
        calls = [predictor.predict({"instances": eyes}) for eyes in good]
        calls.insert(2, predictor.predict({"instances": implausible}))
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(together())
    assert isinstance(answers[2], ImplausibleFeatures)
    assert [a["predictions"] for a in answers[:2] + answers[3:]] == [alone(predictor, e) for e in good]


def test_a_failing_batch_is_run_request_by_request_so_only_the_cause_fails():
    def run(rows: list[int]) -> list[int]:
        if 13 in rows:
            raise InvalidRequest("thirteen")
        return [r * 2 for r in rows]

    batcher: RowBatcher[int, list[int]] = RowBatcher(run, max_rows=8)

    async def together() -> list[Any]:
        requests = [[1, 2], [13], [3], [4, 5, 6]]
        return await asyncio.gather(*(batcher(r) for r in requests), return_exceptions=True)

    shares = asyncio.run(together())
    assert isinstance(shares[1], InvalidRequest)
    got = [s.result[s.start : s.stop] for s in (shares[0], shares[2], shares[3])]
    assert got == [[2, 4], [6], [8, 10, 12]]


def test_a_batch_holds_at_most_max_rows_and_a_lone_request_goes_at_once():
    sizes: list[int] = []

    def run(rows: list[int]) -> list[int]:
        sizes.append(len(rows))
        return rows

    batcher: RowBatcher[int, list[int]] = RowBatcher(run, max_rows=5)

    async def scenario() -> None:
        share = await batcher([7])  # alone: its own call, no waiting for company
        assert share.result[share.start : share.stop] == [7] and sizes == [1]
        await asyncio.gather(*(batcher([n, n]) for n in range(6)))

    asyncio.run(scenario())
    assert all(size <= 5 for size in sizes) and sum(sizes) == 13
