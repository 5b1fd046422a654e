"""Wire a gateway from its configuration: outbox, client, watcher, loops, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from eyeops.auth import read_token_file
from eyeops.gateway.config import GatewayConfig, check_watch_setup
from eyeops.gateway.metrics import GatewayMetrics
from eyeops.gateway.outbox import Outbox
from eyeops.gateway.service import Gateway, SendPolicy
from eyeops.gateway.watch import Capturer, FolderWatcher
from eyeops.ocr.client import OcrClient

log = logging.getLogger("eyeops.gateway")


def make_client(
    endpoint: str, token_file: Path | None, protocol: str, model: str = "ocr", timeout_s: float = 60.0
) -> OcrClient:
    token = read_token_file(token_file) if token_file is not None else None
    return OcrClient(endpoint, model=model, protocol=protocol, timeout_s=timeout_s, token=token)


async def run_watch(
    config: GatewayConfig, stop: asyncio.Event, registry: CollectorRegistry = REGISTRY
) -> None:
    """Resume what the outbox holds, watch the folder, deliver until `stop` is set. A configuration
    that could never deliver is refused first (GatewaySetupError, UnknownDeviceKind)."""
    check_watch_setup(config)
    if config.token_file is None:
        log.warning(
            "gateway %s has no device token (--token-file): a service that checks tokens refuses every"
            " upload with 401; create one with `eyeops gateway token --device-id %s`",
            config.device_id,
            config.device_id,
        )
    # A capture (the device-facing acknowledgement) runs in the watcher's thread and must not wait
    # out the default 5 ms GIL hand-over behind an upload being encoded in the event loop.
    sys.setswitchinterval(0.0005)
    metrics = GatewayMetrics(registry)
    if config.metrics_port is not None:
        start_http_server(config.metrics_port, addr="127.0.0.1", registry=registry)
    outbox = Outbox(config.outbox_path())
    client = make_client(config.endpoint, config.token_file, config.protocol, config.model, config.timeout_s)
    limits = config.limits()
    quarantine = config.resolved_quarantine_dir()
    gateway = Gateway(
        outbox,
        client,
        config.device_id,
        limits,
        quarantine,
        metrics,
        SendPolicy(
            concurrency=config.concurrency,
            retry_base_s=config.retry_base_s,
            retry_max_s=config.retry_max_s,
            max_server_errors=config.max_server_errors,
            settle_s=config.settle_s,
        ),
        name_pattern=config.name_pattern(),
    )
    capturer = Capturer(outbox, config.device_kind, config.include, limits.max_bytes, metrics, gateway.wake)
    watcher = FolderWatcher(config.watch_dir, capturer, config.rescan_interval_s, config.settle_s, quarantine)
    counts = outbox.counts()
    log.info(
        "gateway %s (%s) watching %s -> %s; outbox %s; resuming %d received, %d pending",
        config.device_id,
        config.device_kind,
        config.watch_dir,
        config.endpoint,
        config.outbox_path(),
        counts["received"],
        counts["pending"],
    )
    # The watcher's threads start here, before run() lowers the priority of the upload side: threads
    # inherit their creator's niceness, and captures must keep the normal one.
    watcher.start()
    runner = asyncio.create_task(gateway.run(stop))
    try:
        await runner
    finally:
        stop.set()
        await asyncio.to_thread(watcher.stop)
        await runner
        await client.aclose()
        outbox.close()
        log.info("gateway %s stopped", config.device_id)
