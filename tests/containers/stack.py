"""The images started as the chart runs them, for tests/containers/test_images.py (whose fixtures start
each once per module): the seed Job's three steps filling a models volume, Triton serving the seeded
OCR version, the OCR transformer with a device's token, the feature repository of the cluster profile,
the lens predictor and transformer, and the monitor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eyeops.settings import repo_root
from tests.conftest import create_pg_database, drop_pg_database
from tests.containers.conftest import Engine, free_ports, shared_dir, world_readable

KIND = "optical_biometer"
REDIS_DB = 11
EYEOPS = str(repo_root() / ".venv" / "bin" / "eyeops")


def host(*argv: str) -> None:
    import subprocess

    subprocess.run([EYEOPS, *argv], check=True, capture_output=True, text=True, timeout=300)


def seed_models(engine: Engine, volumes: Path) -> Path:
    """The seed Job, step by step, with the chart's mounts: /mnt/eyeops (the models PVC) and
    /var/lib/eyeops-seed (its scratch emptyDir)."""
    pvc, work = shared_dir(volumes / "pvc"), shared_dir(volumes / "seed-work")
    mounts = [(pvc, "/mnt/eyeops", False), (work, "/var/lib/eyeops-seed", False)]
    registry = "/mnt/eyeops/registry"
    engine.run(
        "pipelines",
        [
            "registry",
            "seed",
            "--root",
            registry,
            "--lens-eyes",
            "2000",
            "--reference",
            "/var/lib/eyeops-seed/reference.npz",
        ],
        name="seed",
        mounts=mounts,
        entrypoint="eyeops",
        detach=False,
    )
    engine.run(
        "detectors",
        [
            "fit",
            "--reference",
            "/var/lib/eyeops-seed/reference.npz",
            "--out",
            "/var/lib/eyeops-seed/detectors",
        ],
        name="fit-detectors",
        mounts=mounts,
        detach=False,
    )
    engine.run(
        "pipelines",
        [
            "registry",
            "--root",
            registry,
            "register",
            "detectors",
            "seed",
            "/var/lib/eyeops-seed/detectors",
            "--promote",
            "--exist-ok",
        ],
        name="register-detectors",
        mounts=mounts,
        entrypoint="eyeops",
        detach=False,
    )
    return pvc / "registry"


def start_triton(engine: Engine, models: Path) -> str:
    """Triton serving the seeded OCR version, its folder mounted read-only at /mnt/models; its address."""
    http, grpc, metrics = free_ports(3)
    engine.started(
        "triton",
        [
            "--model-store=/mnt/models",
            f"--http-port={http}",
            f"--grpc-port={grpc}",
            f"--metrics-port={metrics}",
        ],
        f"http://127.0.0.1:{http}/v2/health/ready",
        name="triton",
        mounts=[(models / "ocr" / "seed", "/mnt/models", True)],
    )
    return f"127.0.0.1:{http}"


def start_ocr(engine: Engine, triton: str, results_db: str, volumes: Path) -> dict[str, Any]:
    """The OCR transformer calling `triton`, writing to `results_db`, with the device iolm-7's token:
    its url, the token and the folder of the token registry."""
    tokens = shared_dir(volumes / "device-tokens")
    host(
        "gateway",
        "token",
        "--device-id",
        "iolm-7",
        "--registry",
        str(tokens / "registry"),
        "--token-file",
        str(tokens / "iolm-7.token"),
    )
    world_readable(tokens)
    http, grpc = free_ports(2)
    engine.started(
        "ocr-transformer",
        [
            "--model_name",
            "ocr",
            "--predictor_model",
            "trocr",
            "--predictor_protocol",
            "v2",
            "--predictor_host",
            triton,
            "--http_port",
            str(http),
            "--grpc_port",
            str(grpc),
            "--bind_host",
            "127.0.0.1",
            "--tokens",
            "/etc/eyeops/device-tokens/registry",
        ],
        f"http://127.0.0.1:{http}/v2/health/ready",
        name="ocr-transformer",
        mounts=[(tokens, "/etc/eyeops/device-tokens", True)],
        env={"EYEOPS_DATABASE_URL": results_db},
    )
    token = (tokens / "iolm-7.token").read_text().strip()
    return {"url": f"http://127.0.0.1:{http}", "token": token, "tokens": tokens}


def exam_rows(url: str) -> list[tuple[str, str, str]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT id, device_id, status FROM exams"))]  # type: ignore[misc]
    finally:
        engine.dispose()


@contextmanager
def feature_repo(volumes: Path) -> Iterator[tuple[Path, str]]:
    """The cluster profile: Redis online store, registry and offline store in PostgreSQL."""
    import redis

    from eyeops.features import repository as fs
    from eyeops.lens.cohort import simulate_cohort

    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    name, url = create_pg_database()
    previous = os.environ.get("EYEOPS_FEAST_OFFLINE")
    os.environ["EYEOPS_FEAST_OFFLINE"] = "postgres"
    try:
        eyes = simulate_cohort(5, seed=4)
        days = np.random.default_rng(4).integers(1, 100, len(eyes))
        eyes["exam_date"] = pd.Timestamp.now().normalize() - pd.to_timedelta(days, unit="D")
        repo = fs.prepare_repo(volumes / "feature_repo", "redis", f"127.0.0.1:6379,db={REDIS_DB}", url)
        fs.write_offline_data(eyes, repo, url)
        fs.apply_and_materialize(fs.open_store(repo), repo)
        world_readable(repo)
        yield repo, str(eyes["eye_id"].iloc[0])
    finally:
        if previous is None:
            os.environ.pop("EYEOPS_FEAST_OFFLINE", None)
        else:
            os.environ["EYEOPS_FEAST_OFFLINE"] = previous
        drop_pg_database(name)


def start_lens(engine: Engine, models: Path, feast_repo: tuple[Path, str], volumes: Path) -> dict[str, str]:
    """The lens predictor and transformer images as the chart runs them, with the seeded model."""
    repo, eye = feast_repo
    secrets = shared_dir(volumes / "lens-secrets")
    host(
        "gateway",
        "token",
        "--device-id",
        "lens-transformer",
        "--registry",
        str(secrets / "callers"),
        "--token-file",
        str(secrets / "predictor.token"),
    )
    host(
        "gateway",
        "token",
        "--device-id",
        "clinic-app",
        "--registry",
        str(secrets / "clients"),
        "--token-file",
        str(secrets / "client.token"),
    )
    world_readable(secrets)
    p_http, p_grpc, t_http, t_grpc = free_ports(4)
    engine.started(
        "lens",
        [
            "-m",
            "inference.lens_predictor",
            "--model_name",
            "lens",
            "--model_dir",
            "/mnt/models",
            "--http_port",
            str(p_http),
            "--grpc_port",
            str(p_grpc),
            "--bind_host",
            "127.0.0.1",
            "--tokens",
            "/etc/eyeops/callers/callers",
        ],
        f"http://127.0.0.1:{p_http}/v2/health/live",
        name="lens-predictor",
        entrypoint="python",
        mounts=[(models / "lens" / "seed", "/mnt/models", True), (secrets, "/etc/eyeops/callers", True)],
    )
    engine.started(
        "lens",
        [
            "--model_name",
            "lens",
            "--predictor_host",
            f"127.0.0.1:{p_http}",
            "--feature_repo",
            "/app/feature_repo",
            "--http_port",
            str(t_http),
            "--grpc_port",
            str(t_grpc),
            "--bind_host",
            "127.0.0.1",
            "--tokens",
            "/etc/eyeops/lens-clients/clients",
        ],
        f"http://127.0.0.1:{t_http}/v2/health/ready",
        name="lens-transformer",
        mounts=[
            (repo / "feature_store.yaml", "/app/feature_repo/feature_store.yaml", True),
            (secrets, "/etc/eyeops/lens-clients", True),
        ],
        env={"EYEOPS_PREDICTOR_TOKEN": (secrets / "predictor.token").read_text().strip()},
    )
    client = (secrets / "client.token").read_text().strip()
    return {"url": f"http://127.0.0.1:{t_http}", "token": client, "eye": eye}


def start_monitor(engine: Engine, models: Path, volumes: Path) -> dict[str, int]:
    """The monitor (detectors image) as the chart runs it, with the seeded detector set."""
    state = shared_dir(volumes / "monitor-state")
    port, sink_port = free_ports(2)  # as the chart runs it: the event sink on a port of its own
    engine.started(
        "detectors",
        [
            "serve",
            "--detectors",
            "/mnt/registry/registry/detectors/seed",
            "--state",
            "/var/lib/eyeops-monitor/monitor.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--sink-port",
            str(sink_port),
            "--service",
            "lens=lens",
            "--service",
            "ocr=ocr",
            "--insecure",
        ],
        f"http://127.0.0.1:{port}/healthz",
        name="monitor",
        mounts=[(models.parent, "/mnt/registry", True), (state, "/var/lib/eyeops-monitor", False)],
    )
    return {"port": port, "sink_port": sink_port}
