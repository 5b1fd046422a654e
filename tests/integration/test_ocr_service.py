"""The OCR service as deployed: real tritonserver + kserve.ModelServer processes + PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from eyeops.db import ResultsStore
from eyeops.ocr.client import OcrClient, OcrReply
from eyeops.settings import Settings
from eyeops.stack.local import LocalStack
from eyeops.stack.process import free_port, free_triton_port
from eyeops.synth.exams import render_one
from tests.conftest import PG_ADMIN, create_pg_database, drop_pg_database
from tests.helpers import bomb_png, noise_png, unalignable_png

LIMIT_BYTES = 1_000_000
LIMIT_PIXELS = 8_000_000


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, str, ResultsStore]]:
    name, url = create_pg_database()
    saved = dict(os.environ)
    os.environ["EYEOPS_MAX_IMAGE_BYTES"] = str(LIMIT_BYTES)
    os.environ["EYEOPS_MAX_IMAGE_PIXELS"] = str(LIMIT_PIXELS)
    settings = Settings(data_dir=tmp_path_factory.mktemp("service"))
    stack = LocalStack(settings, triton_port=free_triton_port(), ocr_port=free_port(), database_url=url)
    try:
        stack.start()
        yield stack, name, ResultsStore.from_url(url)
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        drop_pg_database(name)


def send(stack: LocalStack, image: bytes, kind: str, protocol: str = "v1", **hints: str) -> OcrReply:
    async def go() -> OcrReply:
        client = OcrClient(stack.endpoints.ocr, protocol=protocol)
        try:
            return await client.read_exam(image, kind, device_id="it-1", **hints)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_exam_is_read_and_stored_in_postgres_and_resend_adds_no_rows(service, layouts):
    stack, _, store = service
    exam = render_one(layouts["optical_biometer"], 21, "eval", 0)
    first = send(stack, exam.image, exam.device_kind)
    assert first.status_code == 200, first.body
    before = store.counts()
    assert before["exams"] == 1 and before["fields"] == len(exam.texts)
    second = send(stack, exam.image, exam.device_kind, protocol="v2")
    assert second.status_code == 200 and second.exam["duplicate"] is True
    assert second.exam["fields"] == first.exam["fields"]
    after = store.counts()
    assert (after["exams"], after["fields"], after["review_items"]) == (
        before["exams"],
        before["fields"],
        before["review_items"],
    )
    assert after["log_rows"] == before["log_rows"] + 1


@pytest.mark.parametrize(
    ("make", "kind", "status", "says"),
    [
        (lambda: b"this is not an image", "optical_biometer", 400, "accepted formats"),
        (lambda: noise_png(300, 300)[:20_000], "optical_biometer", 400, "truncated"),
        (lambda: noise_png(1200, 1000), "optical_biometer", 413, "over the limit"),
        (lambda: bomb_png(4000), "optical_biometer", 413, "decompression bomb"),
        (lambda: noise_png(50, 50), "fundus_camera", 400, "known kinds"),
    ],
)
def test_bad_input_status_codes(service, make, kind, status, says):
    stack, _, store = service
    before = store.counts()["exams"]
    reply = send(stack, make(), kind)
    assert reply.status_code == status, reply.body
    assert says in reply.body["error"]
    assert store.counts()["exams"] == before


def test_malformed_requests_say_what_to_send(service):
    stack, _, _ = service
    url = f"{stack.endpoints.ocr}/v1/models/ocr:predict"
    r = httpx.post(url, json={"instances": [{"device_kind": "autorefractor"}]}, timeout=30)
    assert r.status_code == 400 and "image_b64" in r.json()["error"]
    r = httpx.post(
        url, json={"instances": [{"image_b64": "%%%", "device_kind": "autorefractor"}]}, timeout=30
    )
    assert r.status_code == 400 and "base64" in r.json()["error"]
    v2 = f"{stack.endpoints.ocr}/v2/models/ocr/infer"
    body = {
        "inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(b"x").decode()]}
        ]
    }
    r = httpx.post(v2, json=body, timeout=30)
    assert r.status_code == 400 and "device_kind" in r.json()["error"]


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_gateways_exam_date_is_checked_against_the_header(service, layouts, protocol):
    stack, _, _ = service
    layout = layouts["optical_biometer"]
    spec = layout.field("exam_date")
    assert spec.date_format is not None
    index = {"v1": 0, "v2": 1}[protocol]
    same, other = (render_one(layout, 31, "eval", 2 * index + i, clean=True) for i in range(2))
    iso = dt.datetime.strptime(same.texts["exam_date"], spec.date_format).date().isoformat()
    agreed = send(stack, same.image, same.device_kind, protocol, exam_date=iso)
    assert agreed.status_code == 200, agreed.body
    date = {f["name"]: f for f in agreed.exam["fields"]}["exam_date"]
    assert not (date["reason"] or "").startswith("identity_mismatch"), date
    wrong = send(stack, other.image, other.device_kind, protocol, exam_date="1999-01-01")
    assert wrong.status_code == 200, wrong.body
    date = {f["name"]: f for f in wrong.exam["fields"]}["exam_date"]
    assert date["status"] == "review" and date["reason"].startswith("identity_mismatch"), date
    assert "gateway says '1999-01-01'" in date["reason"]
    refused = send(stack, other.image, other.device_kind, protocol, exam_date="01.01.1999")
    assert refused.status_code == 400 and "YYYY-MM-DD" in refused.body["error"]


def test_unalignable_image_is_422_and_queued(service):
    stack, _, store = service
    reply = send(stack, unalignable_png(), "specular_microscope")
    assert reply.status_code == 422 and "alignment failed" in reply.body["error"]
    assert any(field is None and "alignment failed" in reason for _, field, reason in store.open_reviews())


def test_metrics_are_exposed(service):
    stack, _, _ = service
    text = httpx.get(f"{stack.endpoints.ocr}/metrics", timeout=10).text
    assert 'eyeops_ocr_exams_total{device_kind="optical_biometer"' in text
    assert "eyeops_ocr_stage_seconds_bucket" in text
    triton = httpx.get(stack.endpoints.triton_metrics, timeout=10).text
    assert 'nv_inference_request_success{model="trocr"' in triton


def test_database_unreachable_is_503_and_nothing_half_written(service, layouts):
    stack, name, store = service
    before = store.counts()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        reply = send(stack, render_one(layouts["autorefractor"], 21, "eval", 9).image, "autorefractor")
        assert reply.status_code == 503 and reply.retry_after
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert store.counts() == before


def test_triton_down_is_503_with_retry_after_and_nothing_written(service, layouts):
    """Last in this module: it stops the stack's Triton."""
    stack, _, store = service
    before = store.counts()
    stack.processes[0].stop()
    reply = send(
        stack, render_one(layouts["anterior_segment_oct"], 21, "eval", 10).image, "anterior_segment_oct"
    )
    assert reply.status_code == 503, reply.body
    assert reply.retry_after is not None and "retry" in reply.body["error"]
    assert store.counts() == before
