"""The OCR transformer object against a real tritonserver started by a fixture (no HTTP in front)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest
from prometheus_client import CollectorRegistry

from eyeops.auth import TRITON_KEY_HEADER
from eyeops.db import ResultsStore, migrate
from eyeops.errors import AlignmentFailed, PredictorUnavailable, UnknownDeviceKind
from eyeops.metrics import OcrMetrics
from eyeops.settings import Settings
from eyeops.stack.process import free_port
from eyeops.stack.triton import triton_process
from eyeops.synth.exams import render_one
from inference.ocr_transformer.model import OcrTransformer
from inference.predictor import PredictorClient
from tests.helpers import unalignable_png

# One loop for every test: asyncio.run would close the loop a model's client has connections on.
LOOP = asyncio.new_event_loop()
KEY = "inprocess-triton-key"  # Triton restricts every API but health to it, as on a cluster


def run(coro):  # type: ignore[no-untyped-def]
    return LOOP.run_until_complete(coro)


@pytest.fixture(scope="module")
def triton_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("triton"))
    port = free_port()
    with triton_process(settings, port, settings.data_dir / "triton.log", key=KEY) as proc:
        proc.wait_ready(180)
        yield f"127.0.0.1:{port}"


def make_model(
    layouts, url: str, host: str, registry: CollectorRegistry, key: str = KEY, **second: object
) -> OcrTransformer:
    predictor = PredictorClient(
        f"http://{host}", "trocr", "v2", {TRITON_KEY_HEADER: key}, timeout_s=60, retry_after_s=10
    )
    migrate(url)
    store = ResultsStore.from_url(url)
    model = OcrTransformer("ocr", layouts, store, Settings(), OcrMetrics(registry), predictor, **second)  # type: ignore[arg-type]
    model.load()
    return model


def v1(image: bytes, kind: str) -> dict:
    return {
        "instances": [
            {"image_b64": base64.b64encode(image).decode(), "device_kind": kind, "device_id": "dev-7"}
        ]
    }


def test_reads_stores_and_dedupes(layouts, sqlite_url, triton_host):
    registry = CollectorRegistry()
    model = make_model(layouts, sqlite_url, triton_host, registry)
    exam = render_one(layouts["specular_microscope"], 11, "eval", 3)

    body, _ = run(model(v1(exam.image, exam.device_kind), {"ce-id": "req-1"}))
    result = body["predictions"][0]
    assert result["exam_id"] == hashlib.sha256(exam.image).hexdigest()
    assert [f["name"] for f in result["fields"]] == list(exam.texts)
    for f in result["fields"]:
        assert set(f) == {"name", "raw_text", "value", "unit", "confidence", "status", "reason"} | {
            "second_text",
            "second_confidence",
            "proposal",
        }
        assert f["status"] in ("accepted", "review") and 0.0 <= f["confidence"] <= 1.0
    assert result["duplicate"] is False
    counts = model.store.counts()
    assert counts["exams"] == 1 and counts["fields"] == len(exam.texts)
    assert (
        registry.get_sample_value(
            "eyeops_ocr_exams_total", {"device_kind": "specular_microscope", "status": result["status"]}
        )
        == 1
    )

    again, _ = run(model(v1(exam.image, exam.device_kind), {}))
    assert again["predictions"][0]["duplicate"] is True
    assert again["predictions"][0]["fields"] == result["fields"]
    assert model.store.counts()["exams"] == 1 and model.store.counts()["log_rows"] == 2


def _inference_count(host: str, model: str) -> tuple[int, int]:
    stats = httpx.get(f"http://{host}/v2/models/{model}/stats", headers={TRITON_KEY_HEADER: KEY}, timeout=10)
    row = stats.json()["model_stats"][0]
    return int(row["inference_count"]), int(row["execution_count"])


def test_the_second_recogniser_on_triton_checks_every_field_it_is_asked_about_in_one_request(
    layouts, sqlite_url, triton_host
):
    """Asked about every field (second_below above any confidence): one batched request to Triton's
    ppocr per exam; a field stays accepted only where both recognisers read the same, and both
    readings are in the answer."""
    from eyeops.ocr.arbitrate import SECOND_OPINION_REASON

    model = make_model(
        layouts, sqlite_url, triton_host, CollectorRegistry(), second_model="ppocr", second_below=1.01
    )
    alone = make_model(layouts, sqlite_url.replace(".db", "-alone.db"), triton_host, CollectorRegistry())
    exam = render_one(layouts["optical_biometer"], 12, "eval", 5)
    before = _inference_count(triton_host, "ppocr")
    body, _ = run(model(v1(exam.image, exam.device_kind), {}))
    first = {
        f["name"]: f for f in run(alone(v1(exam.image, exam.device_kind), {}))[0]["predictions"][0]["fields"]
    }
    after = _inference_count(triton_host, "ppocr")
    fields = {f["name"]: f for f in body["predictions"][0]["fields"]}
    asked = list(first)
    assert after[0] - before[0] == len(asked) and after[1] - before[1] == 1  # one request, every region
    accepted = [n for n in asked if first[n]["status"] == "accepted"]
    agreed = [n for n in accepted if fields[n]["status"] == "accepted"]
    assert len(agreed) >= len(accepted) - 2  # PP-OCR reads our renderer's fields as we do, nearly always
    for name in asked:
        assert fields[name]["second_text"] is not None and 0.0 <= fields[name]["second_confidence"] <= 1.0
        if name in accepted and name not in agreed:
            assert fields[name]["reason"] == SECOND_OPINION_REASON
            assert fields[name]["proposal"] in (fields[name]["raw_text"].strip(), fields[name]["second_text"])
        assert fields[name]["raw_text"] == first[name]["raw_text"]  # never rewritten, only held back


def test_a_second_recogniser_that_does_not_answer_sends_its_fields_to_review_not_the_exam_to_503(
    layouts, sqlite_url, triton_host
):
    from eyeops.ocr.arbitrate import SECOND_OPINION_MISSING

    model = make_model(
        layouts, sqlite_url, triton_host, CollectorRegistry(), second_model="no-such-model", second_below=1.01
    )
    exam = render_one(layouts["noncontact_tonometer"], 12, "eval", 6)
    body, _ = run(model(v1(exam.image, exam.device_kind), {}))
    result = body["predictions"][0]
    assert result["status"] == "review"
    assert all(f["status"] == "review" for f in result["fields"])
    assert any(f["reason"] == SECOND_OPINION_MISSING for f in result["fields"])


def test_v2_request_returns_exam_output(layouts, sqlite_url, triton_host):
    model = make_model(layouts, sqlite_url, triton_host, CollectorRegistry())
    exam = render_one(layouts["noncontact_tonometer"], 11, "eval", 4)
    image = InferInput("image", [1], "BYTES", data=[base64.b64encode(exam.image).decode()])
    request = InferRequest("ocr", [image], parameters={"device_kind": "noncontact_tonometer"})
    response, _ = run(model(request, {}))
    out = {o.name: o for o in response.outputs}
    result = json.loads(out["exam"].data[0])
    assert result["device_kind"] == "noncontact_tonometer" and len(result["fields"]) == len(exam.texts)


def test_accepted_exams_queue_one_feature_push_that_survives_a_failing_store(
    layouts, sqlite_url, triton_host
):
    import datetime as dt

    from eyeops.features.ingest import feature_push_for
    from eyeops.features.outbox import FeatureOutboxWriter

    registry = CollectorRegistry()
    model = make_model(layouts, sqlite_url, triton_host, registry)
    now = [dt.datetime(2026, 11, 1, tzinfo=dt.UTC)]
    seen = []
    healthy = [True]

    def sink(record):  # type: ignore[no-untyped-def]
        if not healthy[0]:
            raise ConnectionError("feature store down")
        seen.append(record.exam_id)
        return feature_push_for(record)

    writer = FeatureOutboxWriter(
        model.store,
        sink,
        on_outcome=lambda outcome: model.metrics.feature_pushes.labels(outcome=outcome).inc(),
        clock=lambda: now[0],
    )
    model.features = writer  # not started: the test drains it itself
    accepted = []
    for index in range(6, 16):
        exam = render_one(layouts["optical_biometer"], 11, "eval", index)
        answer, _ = run(model(v1(exam.image, exam.device_kind), {}))
        if answer["predictions"][0]["status"] == "accepted":
            accepted.append(exam)
        if len(accepted) == 2:
            break
    assert len(accepted) == 2, "the recogniser should accept most rendered biometry exams"
    first, second = (hashlib.sha256(e.image).hexdigest() for e in accepted)
    run(model(v1(accepted[0].image, "optical_biometer"), {}))  # a re-send queues nothing more
    assert model.store.feature_push_counts() == {"queued": 2, "pushed": 0}

    healthy[0] = False
    assert writer.drain() == 0  # the store is down: the answer was 200 and the pushes stay queued
    assert model.store.feature_push_counts() == {"queued": 2, "pushed": 0}
    assert registry.get_sample_value("eyeops_ocr_feature_pushes_total", {"outcome": "failed"}) == 2
    healthy[0] = True
    assert writer.drain() == 0  # not due before the backoff has passed
    now[0] += dt.timedelta(seconds=writer.backoff_s(1))
    assert writer.drain() == 2 and seen == [first, second]  # oldest first, each once
    assert writer.drain() == 0 and model.store.feature_push_counts() == {"queued": 0, "pushed": 2}
    assert registry.get_sample_value("eyeops_ocr_feature_pushes_total", {"outcome": "pushed"}) == 2


def test_alignment_failure_is_recorded_for_review(layouts, sqlite_url, triton_host):
    model = make_model(layouts, sqlite_url, triton_host, CollectorRegistry())
    with pytest.raises(AlignmentFailed) as info:
        run(model(v1(unalignable_png(), "optical_biometer"), {}))
    assert info.value.status_code == 422
    assert model.store.counts()["exams"] == 1
    reviews = model.store.open_reviews()
    assert len(reviews) == 1 and reviews[0][1] is None and "alignment failed" in reviews[0][2]


def test_unknown_kind_before_any_work(layouts, sqlite_url, triton_host):
    model = make_model(layouts, sqlite_url, triton_host, CollectorRegistry())
    with pytest.raises(UnknownDeviceKind):
        run(model(v1(b"not even an image", "fundus_camera"), {}))
    assert model.store.counts()["exams"] == 0


def test_unreachable_predictor_writes_nothing(layouts, sqlite_url, tmp_path: Path):
    model = make_model(layouts, sqlite_url, f"127.0.0.1:{free_port()}", CollectorRegistry())
    exam = render_one(layouts["autorefractor"], 11, "eval", 5)
    with pytest.raises(PredictorUnavailable) as info:
        run(model(v1(exam.image, exam.device_kind), {}))
    assert info.value.status_code == 503 and info.value.retry_after_s
    assert model.store.counts() == {"exams": 0, "fields": 0, "review_items": 0, "log_rows": 0}


def test_a_refused_key_or_a_stopped_model_writes_nothing(layouts, sqlite_url, triton_host):
    """Triton refuses a wrong key (4xx): the caller gets 503 (retry later), as when Triton is down,
    and nothing is stored. A stopped model's client is closed: 503 too, nothing sent."""
    exam = render_one(layouts["autorefractor"], 11, "eval", 6)
    wrong = make_model(layouts, sqlite_url, triton_host, CollectorRegistry(), key="not-the-key")
    with pytest.raises(PredictorUnavailable) as info:
        run(wrong(v1(exam.image, exam.device_kind), {}))
    assert info.value.status_code == 503 and "PredictorError" in info.value.message
    assert wrong.store.counts()["exams"] == 0

    model = make_model(layouts, sqlite_url, triton_host, CollectorRegistry())
    assert run(model.predictor.ready())

    async def shutdown() -> None:  # KServe calls the synchronous stop() while its loop runs
        model.stop()
        await asyncio.sleep(0.1)

    run(shutdown())
    assert model.predictor.closed and not run(model.predictor.ready())
    with pytest.raises(PredictorUnavailable, match="shutting down"):
        run(model(v1(exam.image, exam.device_kind), {}))
    assert model.store.counts()["exams"] == 0


def test_the_console_reads_an_exam_again_through_the_same_triton(layouts, triton_host):
    """A reviewer marks the screen's corners on an exam that failed alignment: the console warps the
    image from them and sends the crops to the recogniser the OCR service uses (JSON v2 request)."""
    from eyeops.review.images import view_exam
    from eyeops.review.reread import TritonRecognizer, reread

    layout = layouts["optical_biometer"]
    exam = render_one(layout, 11, "eval", 5)
    found = view_exam(exam.image, layout, Settings())
    assert found.alignment is not None
    corners = found.alignment["corners"]  # where a careful reviewer clicks
    marked = view_exam(exam.image, layout, Settings(), corners=corners)  # type: ignore[arg-type]
    readings = reread(layout, marked.crops, TritonRecognizer(f"http://{triton_host}", key=KEY), 0.97)
    assert [r.name for r in readings] == list(exam.texts)
    right = sum(r.raw_text.strip() == exam.texts[r.name] for r in readings)
    assert right >= len(readings) - 1, [(r.name, r.raw_text) for r in readings]
    with pytest.raises(PredictorUnavailable):
        reread(layout, marked.crops, TritonRecognizer(f"http://127.0.0.1:{free_port()}"), 0.97)
