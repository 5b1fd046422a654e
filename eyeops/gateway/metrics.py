"""Prometheus metrics of a gateway. Labels are low-cardinality: outcome, state, reason kind."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

ACK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.captured = Counter(
            "eyeops_gateway_files_captured_total", "Exam files committed to the outbox", registry=registry
        )
        self.duplicates = Counter(
            "eyeops_gateway_duplicate_files_total",
            "Files whose image was already in the outbox (one exam)",
            registry=registry,
        )
        self.quarantined = Counter(
            "eyeops_gateway_quarantined_total",
            "Files quarantined, by reason kind",
            ["reason"],
            registry=registry,
        )
        self.uploads = Counter(
            "eyeops_gateway_uploads_total",
            "Upload attempts, by outcome (done, failed, retry)",
            ["outcome"],
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "eyeops_gateway_ack_seconds",
            "From noticing a complete file to its durable commit in the outbox",
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.upload_seconds = Histogram(
            "eyeops_gateway_upload_seconds",
            "One upload round trip",
            buckets=UPLOAD_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge(
            "eyeops_gateway_outbox_items", "Outbox items by state", ["state"], registry=registry
        )
        self.last_success = Gauge(
            "eyeops_gateway_last_success_timestamp_seconds",
            "When an upload last succeeded",
            registry=registry,
        )
