"""Prometheus metrics of the OCR service. Pass a registry: tests use a fresh CollectorRegistry."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class OcrMetrics:
    """Labels stay low-cardinality: device kind, status, reason kind and stage; never patient ids."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.exams = Counter(
            "eyeops_ocr_exams_total",
            "Exams answered, by device kind and status",
            ["device_kind", "status"],
            registry=registry,
        )
        self.review_fields = Counter(
            "eyeops_ocr_review_fields_total",
            "Fields sent to review, by device kind and reason kind",
            ["device_kind", "reason"],
            registry=registry,
        )
        self.requests_failed = Counter(
            "eyeops_ocr_requests_failed_total",
            "Requests refused or failed, by HTTP status",
            ["status_code"],
            registry=registry,
        )
        self.feature_pushes = Counter(
            "eyeops_ocr_feature_pushes_total",
            "Feature-store pushes of stored exams, by outcome"
            " (pushed; skipped: feeds no view; failed: stays queued and is retried)",
            ["outcome"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "eyeops_ocr_stage_seconds",
            "Latency of each OCR stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )

        self.alignment_score = Histogram(
            "eyeops_ocr_alignment_score",
            "Quality of each exam's alignment (share of value boxes whose text lies inside them),"
            " by device kind and the method that found the screen (frame, layout)",
            ["device_kind", "method"],
            buckets=(0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
            registry=registry,
        )

    def observe_reason(self, device_kind: str, reason: str | None) -> None:
        kind = (reason or "unknown").split(":", 1)[0]
        self.review_fields.labels(device_kind=device_kind, reason=kind).inc()
