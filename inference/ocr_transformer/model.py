"""OCR transformer: exam image → aligned crops → one batched v2 request to Triton's primary recogniser
(trocr) → validation → one batched request to the second recogniser (ppocr) for the fields whose
decision it can change → validated, stored fields. No model runs in this process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from eyeops.auth import Forbidden
from eyeops.db.store import ResultsStore
from eyeops.devices.layout import LayoutRegistry
from eyeops.errors import AlignmentFailed, EyeopsError, PredictorUnavailable
from eyeops.exams import ExamRecord
from eyeops.features.outbox import FeatureOutboxWriter
from eyeops.fields import FieldReading
from eyeops.metrics import OcrMetrics
from eyeops.ocr.arbitrate import SECOND_OPINION_BELOW, Calibrations, needs_second
from eyeops.ocr.peers import region_pixels
from eyeops.ocr.pipeline import (
    PreparedExam,
    exam_record,
    failed_record,
    prepare_exam,
    validate,
)
from eyeops.ocr.tesseract import whitelist
from eyeops.ocr.triton_batch import CROPS, GRAMMAR, TEXT, TOKEN_CONFIDENCE, field_confidence
from eyeops.ocr.wire import V2_EXAM, ExamInput, answer_body, exam_from_v1, exam_from_v2
from eyeops.settings import Settings
from inference.auth import DEVICE_HEADER
from inference.errors import check_request_id
from inference.predictor import PredictorClient, PredictorError, PredictorTransformer

PREDICTOR_RETRY_AFTER_S = 10
log = logging.getLogger("eyeops.ocr")


def recognizer_request(
    model: str, crops: np.ndarray, grammars: Sequence[str], request_id: str
) -> InferRequest:
    """One v2 request for the recogniser: every crop of an exam with its field grammar, sent with
    the binary tensor extension (raw bytes after the JSON header, not lists of numbers)."""
    pixels = InferInput(CROPS, list(crops.shape), "UINT8")
    pixels.set_data_from_numpy(crops, binary_data=True)
    grammar = InferInput(GRAMMAR, [len(grammars), 1], "BYTES")
    rows = np.array([[g.encode()] for g in grammars], dtype=np.object_)
    grammar.set_data_from_numpy(rows, binary_data=True)
    return InferRequest(model, [pixels, grammar], request_id=request_id)


def peer_request(model: str, prepared: PreparedExam, names: Sequence[str], request_id: str) -> InferRequest:
    """One v2 request for the second recogniser: the named fields' regions as it reads them
    (eyeops.ocr.peers.region_pixels) with the characters each field can hold."""
    specs = {s.name: s for s in prepared.specs}
    regions = np.stack([region_pixels(prepared.regions[n]) for n in names])
    pixels = InferInput("REGION", list(regions.shape), "UINT8")
    pixels.set_data_from_numpy(regions, binary_data=True)
    allowed = InferInput("ALLOWED", [len(names), 1], "BYTES")
    rows = np.array([[whitelist(specs[n]).encode()] for n in names], dtype=np.object_)
    allowed.set_data_from_numpy(rows, binary_data=True)
    return InferRequest(model, [pixels, allowed], request_id=request_id)


@dataclass
class ExamContext:
    """What preprocess learned, carried through predict to postprocess."""

    exam: ExamInput
    protocol: str
    started: float
    prepared: PreparedExam | None = None
    stored: ExamRecord | None = None
    readings: list[FieldReading] = field(default_factory=list)  # validated, before a second opinion
    asked: list[str] = field(default_factory=list)  # the fields the second recogniser was asked
    second: dict[str, tuple[str, float]] | None = None  # its (text, confidence) of each it answered
    model_version: str = "1"
    predict_ms: float = 0.0


@dataclass(frozen=True)
class RecognizerCall:
    """What preprocess hands to predict: the exam's context and the one request for the
    recogniser (None when the exam was stored before: nothing to recognise)."""

    context: ExamContext
    request: InferRequest | None


class OcrTransformer(PredictorTransformer):
    """KServe transformer. Domain work lives in eyeops.ocr.pipeline; this class only adapts it."""

    call_type = RecognizerCall

    def __init__(
        self,
        name: str,
        layouts: LayoutRegistry,
        store: ResultsStore,
        settings: Settings,
        metrics: OcrMetrics,
        predictor: PredictorClient,
        features: FeatureOutboxWriter | None = None,
        second_model: str | None = None,
        second_below: float = SECOND_OPINION_BELOW,
        calibrations: Calibrations | None = None,
    ) -> None:
        """`predictor`: the v2 client of the recogniser on Triton (its model, its key header).
        `features`: the writer that drains the feature outbox (the Feast push of accepted
        exams); with it, every accepted exam's push is queued in the exam's own transaction.
        `second_model`: the second recogniser's model on the same Triton (None: no second opinion),
        asked about accepted readings less confident than `second_below` and fields in review;
        `calibrations`: both recognisers' confidence calibrations for the arbitration (None: raw
        confidences, and agreement never accepts a reading below the bar)."""
        super().__init__(name, predictor)
        self.layouts = layouts
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.predictor_model = predictor.model
        self.features = features
        self.second_model = second_model
        self.second_below = second_below
        self.calibrations = calibrations or Calibrations.identity()

    def load(self) -> bool:
        if self.features is not None:
            self.features.start()  # drains what an earlier process left queued, then new pushes
        self.ready = True
        return True

    # -- preprocess: parse, dedupe, decode, align, crop -------------------------------------------
    async def preprocess(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> RecognizerCall:
        headers = headers or {}
        started = time.perf_counter()
        exam: ExamInput | None = None
        try:
            request_id = check_request_id(headers) or str(uuid.uuid4())
            if isinstance(payload, InferRequest):
                exam = exam_from_v2(payload.inputs, payload.parameters, request_id)
                protocol = "v2"
            else:
                exam = exam_from_v1(payload, request_id)
                protocol = "v1"
            exam = _bind_device(exam, headers.get(DEVICE_HEADER))
            self.layouts[exam.device_kind]  # unknown kinds fail before any image work
            ctx = ExamContext(exam, protocol, started)
            stored = await asyncio.to_thread(self.store.get_exam, exam.exam_id)
            if stored is not None:
                ctx.stored = stored
            else:
                try:
                    ctx.prepared = await asyncio.to_thread(prepare_exam, exam, self.layouts, self.settings)
                except AlignmentFailed as exc:
                    await asyncio.to_thread(
                        self._save, failed_record(exam, exc.message), ctx, 422, exc.message
                    )
                    raise
        except EyeopsError as exc:
            self._refused(exc, exam)
            raise
        if ctx.prepared is None:
            return RecognizerCall(ctx, None)
        request = recognizer_request(
            self.predictor_model, ctx.prepared.crops, ctx.prepared.grammars, request_id
        )
        return RecognizerCall(ctx, request)

    # -- predict: one v2 request to Triton for all crops of the exam ------------------------------
    async def predict(self, call: RecognizerCall, headers: dict[str, str] | None = None) -> ExamContext:
        ctx = call.context
        if call.request is None:
            return ctx
        t0 = time.perf_counter()
        try:
            response = await self.predictor.infer(call.request)
        except PredictorUnavailable as exc:
            self._refused(exc, ctx.exam)
            raise
        except PredictorError as exc:  # Triton refused what we sent (or our key): ours to fix
            log.error("the recogniser refused a request (HTTP %d): %s", exc.status_code, exc.message)
            error = PredictorUnavailable(
                f"OCR predictor unavailable (PredictorError: HTTP {exc.status_code}); retry later",
                retry_after_s=self.predictor.retry_after_s,
            )
            self._refused(error, ctx.exam)
            raise error from exc
        outputs = {o.name: o for o in response.outputs}
        raw = outputs[TEXT].as_numpy().reshape(-1)
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
        confidences = outputs[TOKEN_CONFIDENCE].as_numpy()
        recognitions = [(text, field_confidence(row)) for text, row in zip(texts, confidences, strict=True)]
        ctx.model_version = str(response.model_version or "1")
        if ctx.prepared is not None:
            ctx.readings = validate(ctx.prepared, recognitions, self.settings.confidence_threshold)
            if self.second_model is not None:
                ctx.asked = needs_second(ctx.readings, self.second_below, ctx.prepared.layout)
                ctx.second = await self._second_opinion(ctx.prepared, ctx.asked, ctx.exam.request_id)
        ctx.predict_ms = (time.perf_counter() - t0) * 1e3
        return ctx

    async def _second_opinion(
        self, prepared: PreparedExam, names: list[str], request_id: str | None
    ) -> dict[str, tuple[str, float]]:
        """The second recogniser's (text, confidence) of the fields whose decision it can change,
        in one batched request; {} when no field needs it. If it cannot answer, its fields go to
        review (the exam is still read and stored, never refused for it)."""
        assert self.second_model is not None
        if not names:
            return {}
        request = peer_request(self.second_model, prepared, names, request_id or "")
        try:
            response = await self.predictor.infer(request, model=self.second_model)
        except (PredictorUnavailable, PredictorError) as exc:
            # counted under eyeops_ocr_review_fields_total{reason="second_opinion"}, as every review reason
            log.warning(
                "the second recogniser did not answer (%s): its fields go to review", type(exc).__name__
            )
            return {}
        outputs = {o.name: o for o in response.outputs}
        texts = outputs["TEXT"].as_numpy().reshape(-1)
        confidences = outputs["CONFIDENCE"].as_numpy().reshape(-1)
        return {
            name: ((t.decode("utf-8") if isinstance(t, bytes) else str(t)), float(c))
            for name, t, c in zip(names, texts, confidences, strict=True)
        }

    # -- postprocess: validate, persist in one transaction, answer ---------------------------------
    async def postprocess(
        self, ctx: ExamContext, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        duplicate = ctx.stored is not None
        if ctx.stored is not None:
            record = ctx.stored
            await asyncio.to_thread(self._log_duplicate, ctx)
        else:
            assert ctx.prepared is not None
            t0 = time.perf_counter()
            record = await asyncio.to_thread(
                exam_record,
                ctx.prepared,
                ctx.readings,
                self.predictor_model,
                ctx.model_version,
                ctx.second,
                ctx.asked,
                self.calibrations,
                self.second_below,
                self.settings.learn_from_traffic,
            )
            post_ms = (time.perf_counter() - t0) * 1e3
            ctx.prepared.timings_ms.update(predict_ms=ctx.predict_ms, postprocess_ms=post_ms)
            stored = await asyncio.to_thread(self._save, record, ctx, 200, None)
            duplicate = not stored
            self._observe(record, ctx)
            if stored and self.features is not None:
                self.features.notify()
        body = {**record.to_dict(), "duplicate": duplicate}
        if ctx.protocol == "v1":
            return answer_body(body)
        out = InferOutput(V2_EXAM, [1], "BYTES", data=[json.dumps(body)])
        return InferResponse(ctx.exam.request_id or "", self.name, [out])

    # -- helpers -----------------------------------------------------------------------------------
    def _log_values(self, ctx: ExamContext, status: int, error: str | None) -> dict[str, object]:
        timings = ctx.prepared.timings_ms if ctx.prepared else {}
        return {
            "request_id": ctx.exam.request_id,
            "device_kind": ctx.exam.device_kind,
            "model_name": self.predictor_model,
            "model_version": ctx.model_version,
            "http_status": status,
            "error": error,
            "decode_ms": timings.get("decode_ms"),
            "align_ms": timings.get("align_ms"),
            "predict_ms": timings.get("predict_ms"),
            "postprocess_ms": timings.get("postprocess_ms"),
            "total_ms": (time.perf_counter() - ctx.started) * 1e3,
        }

    def _save(self, record: ExamRecord, ctx: ExamContext, status: int, error: str | None) -> bool:
        return self.store.save_exam(
            record,
            self._log_values(ctx, status, error),
            push_features=self.features is not None,
            image=ctx.exam.image,  # kept only when a person has to look at the exam
        )

    def _log_duplicate(self, ctx: ExamContext) -> None:
        self.store.log_request(
            exam_id=ctx.exam.exam_id, outcome="duplicate", **self._log_values(ctx, 200, None)
        )

    def _observe(self, record: ExamRecord, ctx: ExamContext) -> None:
        self.metrics.exams.labels(device_kind=record.device_kind, status=record.status).inc()
        for reading in record.fields:
            if reading.status == "review":
                self.metrics.observe_reason(record.device_kind, reading.reason)
        if ctx.prepared is not None:
            found = ctx.prepared.alignment
            if found:
                self.metrics.alignment_score.labels(
                    device_kind=record.device_kind, method=str(found["method"])
                ).observe(float(str(found["score"])))
                log.info("exam %s aligned: %s", record.exam_id[:12], json.dumps(found))
            for stage, ms in ctx.prepared.timings_ms.items():
                self.metrics.stage_seconds.labels(stage=stage.removesuffix("_ms")).observe(ms / 1e3)
        self.metrics.stage_seconds.labels(stage="total").observe(time.perf_counter() - ctx.started)

    def _refused(self, exc: EyeopsError, exam: ExamInput | None) -> None:
        self.metrics.requests_failed.labels(status_code=str(exc.status_code)).inc()
        if exc.status_code == 422 and exam is not None:
            self.metrics.exams.labels(device_kind=exam.device_kind, status="failed").inc()


def _bind_device(exam: ExamInput, authenticated: str | None) -> ExamInput:
    """The device a token authenticated is the exam's device; a body naming another is refused."""
    if authenticated is None:
        return exam
    if exam.device_id is not None and exam.device_id != authenticated:
        raise Forbidden(
            f"this token belongs to device {authenticated!r}, not to the device_id the request names;"
            " use that device's token"
        )
    return replace(exam, device_id=authenticated)
