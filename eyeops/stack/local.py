"""The whole OCR path on one machine: real tritonserver + the OCR transformer's kserve.ModelServer."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from eyeops.settings import Settings
from eyeops.stack.credentials import LocalCredentials
from eyeops.stack.process import ManagedProcess, Stack, free_port
from eyeops.stack.triton import triton_process


@dataclass(frozen=True)
class Endpoints:
    ocr: str
    triton: str
    triton_metrics: str
    database_url: str


class LocalStack(Stack[Endpoints]):
    """Starts Triton, waits for its model, then the transformer; stops both in reverse order."""

    def __init__(
        self,
        settings: Settings,
        triton_port: int | None = None,
        ocr_port: int | None = None,
        database_url: str | None = None,
        log_dir: Path | None = None,
        device_tokens: Path | None = None,
        feature_repo: Path | None = None,
        logger_url: str | None = None,
        credentials: LocalCredentials | None = None,
    ) -> None:
        """`logger_url`: send the OCR transformer's responses to this monitor (KServe logger mode
        response). `device_tokens`: the OCR's registry (None: the credentials', else settings', else
        no authentication). `credentials`: Triton's APIs then require its key (the transformer sends
        it), and the transformer's logger sends its token to the monitor. Every server listens on
        127.0.0.1 only."""
        self.settings = settings
        self.logger_url = logger_url
        self.triton_port = triton_port or settings.http_port_triton
        self.ocr_port = ocr_port or settings.http_port_ocr
        self.ocr_grpc_port = free_port()  # chosen once: a restarted transformer gets the same ports
        self.database_url = database_url or settings.resolved_database_url()
        self.log_dir = log_dir or settings.data_dir / "log"
        self.device_tokens = (
            device_tokens
            or (credentials.device_registry if credentials else None)
            or settings.device_tokens_file
        )
        self.feature_repo = feature_repo
        self.credentials = credentials
        self.processes: list[ManagedProcess] = []
        self.endpoints = Endpoints(
            ocr=f"http://127.0.0.1:{self.ocr_port}",
            triton=f"http://127.0.0.1:{self.triton_port}",
            triton_metrics=f"http://127.0.0.1:{self.triton_port + 2}/metrics",
            database_url=self.database_url,
        )

    def transformer_process(self) -> ManagedProcess:
        argv = [
            sys.executable,
            "-m",
            "inference.ocr_transformer",
            "--model_name",
            "ocr",
            # Triton over gRPC (its port is the HTTP one + 1): a third of the client CPU per call of
            # KServe's REST client, the same readings (docs/throughput.md, "HTTP or gRPC to Triton").
            "--predictor_host",
            f"127.0.0.1:{self.triton_port + 1}",
            "--predictor_protocol",
            "grpc-v2",
            "--http_port",
            str(self.ocr_port),
            "--grpc_port",
            str(self.ocr_grpc_port),
            "--database_url",
            self.database_url,
            "--bind_host",
            "127.0.0.1",
        ]
        argv += ["--tokens", str(self.device_tokens)] if self.device_tokens is not None else ["--insecure"]
        if self.credentials is not None:
            argv += ["--predictor_key_file", str(self.credentials.triton_key)]
        if self.feature_repo is not None:
            argv += ["--feature_repo", str(self.feature_repo)]
        ready = f"{self.endpoints.ocr}/v2/models/ocr/ready"
        env = None
        if self.logger_url:
            from eyeops.stack.monitor import logger_env

            token = self.credentials.logger_token if self.credentials else None
            env = logger_env(self.logger_url, "response", token)
        return ManagedProcess("ocr-transformer", argv, ready, self.log_dir / "ocr-transformer.log", env=env)

    def start(self, timeout_s: float = 180.0) -> Endpoints:
        try:
            key = self.credentials.read_triton_key() if self.credentials else None
            triton = triton_process(self.settings, self.triton_port, self.log_dir / "triton.log", key=key)
            self.processes.append(triton.start())
            triton.wait_ready(timeout_s)
            self.start_transformer(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def start_transformer(self, timeout_s: float = 180.0) -> ManagedProcess:
        """(Re)start the OCR transformer alone, as after a crash or a rolling update."""
        transformer = self.transformer_process()
        self.processes.append(transformer.start())
        transformer.wait_ready(timeout_s)
        return transformer

    def stop_transformer(self) -> None:
        for process in [p for p in self.processes if p.name == "ocr-transformer"]:
            process.stop()
            self.processes.remove(process)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
