"""The lens service on one machine: the predictor and the transformer as kserve.ModelServer processes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eyeops.stack.credentials import LocalCredentials
from eyeops.stack.process import ManagedProcess, Stack, free_port


@dataclass(frozen=True)
class LensEndpoints:
    lens: str
    predictor: str


class LensStack(Stack[LensEndpoints]):
    def __init__(
        self,
        model_dir: Path,
        feature_repo: Path,
        log_dir: Path,
        port: int | None = None,
        logger_url: str | None = None,
        predictor_port: int | None = None,
        credentials: LocalCredentials | None = None,
    ) -> None:
        """`logger_url`: send every request and response to this monitor (KServe logger mode all).
        `credentials`: the transformer takes client tokens, the predictor only the transformer's
        service token (None: both serve without authentication). Both listen on 127.0.0.1."""
        self.model_dir = model_dir
        self.logger_url = logger_url
        self.feature_repo = feature_repo
        self.log_dir = log_dir
        self.port = port or free_port()
        self.predictor_port = predictor_port or free_port()
        self.credentials = credentials
        self.processes: list[ManagedProcess] = []
        self.endpoints = LensEndpoints(
            f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.predictor_port}"
        )

    def _process(self, name: str, module: str, port: int, *extra: str) -> ManagedProcess:
        argv = [
            sys.executable, "-m", module, "--model_name", "lens", "--http_port", str(port),
            "--grpc_port", str(free_port()), "--bind_host", "127.0.0.1", *extra,
        ]  # fmt: skip
        ready = f"http://127.0.0.1:{port}/v2/models/lens/ready"
        env = None
        if self.logger_url:
            from eyeops.stack.monitor import logger_env

            token = self.credentials.logger_token if self.credentials else None
            env = logger_env(self.logger_url, "all", token)
        return ManagedProcess(name, argv, ready, self.log_dir / f"{name}.log", env=env)

    def start(self, timeout_s: float = 120.0) -> LensEndpoints:
        try:
            c = self.credentials
            predictor = self._process(
                "lens-predictor",
                "inference.lens_predictor",
                self.predictor_port,
                "--model_dir",
                str(self.model_dir),
                *(["--tokens", str(c.predictor_registry)] if c else ["--insecure"]),
            )
            self.processes.append(predictor.start())
            predictor.wait_ready(timeout_s)
            transformer = self._process(
                "lens-transformer",
                "inference.lens_transformer",
                self.port,
                "--predictor_host",
                f"127.0.0.1:{self.predictor_port}",
                "--feature_repo",
                str(self.feature_repo),
                *(["--tokens", str(c.client_registry)] if c else ["--insecure"]),
                *(["--predictor_token_file", str(c.predictor_token)] if c else []),
            )
            self.processes.append(transformer.start())
            transformer.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def local_eye_features(seed: int = 7) -> dict[str, dict[str, float]]:
    """Base features of the eyes prepare_local_lens(seed) stores, by eye id (for benchmarks that send
    the same eyes to the predictor directly)."""
    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.features import BASE_FEATURES

    eyes = simulate_cohort(40, seed + 1)
    return {str(row.eye_id): {c: float(getattr(row, c)) for c in BASE_FEATURES} for row in eyes.itertuples()}


def prepare_local_lens(
    root: Path, seed: int = 7, say: Callable[[str], None] = print
) -> tuple[Path, Path, list[str]]:
    """A lens model trained on a simulated cohort and a Feast repository holding other simulated eyes
    (exams in the last year), under `root`; reused when already there. Returns model, repo, eye ids."""
    import numpy as np
    import pandas as pd

    from eyeops.features import repository as fs
    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.model import LensConfig, LensModel

    model_dir, repo = root / "lens-model", root / "feature_repo"
    if not (model_dir / "manifest.json").exists():
        say("training a lens model on 8,000 simulated eyes ...")
        LensModel.fit(
            simulate_cohort(8000, seed), LensConfig(vault_rounds=400), version=f"local-{seed}"
        ).save(model_dir)
    eyes = simulate_cohort(40, seed + 1)
    days = np.random.default_rng(seed).integers(1, 300, len(eyes))
    eyes["exam_date"] = pd.Timestamp.now().normalize() - pd.to_timedelta(days, unit="D")
    if not (repo / "data" / "registry.db").exists():
        fs.prepare_repo(repo)
        fs.write_offline_data(eyes, repo)
        fs.apply_and_materialize(fs.open_store(repo), repo)
    return model_dir, repo, list(eyes["eye_id"])
