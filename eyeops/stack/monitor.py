"""The monitoring service on one machine: detectors fitted once for the local lens model, the
monitor process (the detectors environment's `python -m eyeops_detectors serve`), and the
environment that makes the local model servers send it what KServe's logger would."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from eyeops.errors import EyeopsError
from eyeops.settings import Settings
from eyeops.stack.credentials import LocalCredentials
from eyeops.stack.process import ManagedProcess, Stack, free_port


class DetectorsEnvironmentMissing(EyeopsError):
    """.venv-detectors is not there; the message says how to make it."""


def detectors_python() -> Path:
    python = Settings().detectors_python
    if not python.exists():
        raise DetectorsEnvironmentMissing(
            f"{python} not found; set EYEOPS_DETECTORS_PYTHON to the detectors environment's python,"
            " or run bash scripts/setup.sh in a source checkout"
        )
    return python


def prepare_local_detectors(
    root: Path,
    model_dir: Path,
    seed: int = 7,
    ert: int = 1000,
    say: Callable[[str], None] = print,
    window: int | None = None,
) -> Path:
    """Detectors fitted on the local lens model's answers for its training cohort (the cohort
    prepare_local_lens trains on); reused when already there. `window`: rows per drift test
    (None: the detectors' default)."""
    out = root / ("detectors" if window is None else f"detectors-w{window}")
    if (out / "manifest.json").exists():
        return out
    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.model import LensModel
    from eyeops.monitoring.reference import lens_reference, save_reference

    say(f"fitting drift detectors on the lens model's training cohort (ERT {ert}) ...")
    reference = save_reference(
        lens_reference(LensModel.load(model_dir), simulate_cohort(8000, seed)), root / "reference.npz"
    )
    subprocess.run(
        [str(detectors_python()), "-m", "eyeops_detectors", "fit", "--reference", str(reference),
         "--out", str(out), "--ert", str(ert), *([] if window is None else ["--window", str(window)])],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return out


def logger_env(url: str, mode: str, token_file: Path | None = None) -> dict[str, str]:
    """What makes inference.payload_logger send a server's traffic to the monitor (with the token in
    `token_file` when the monitor's sink asks for one)."""
    import os

    env = {**os.environ, "EYEOPS_LOGGER_URL": url, "EYEOPS_LOGGER_MODE": mode}
    if token_file is not None:
        env["EYEOPS_LOGGER_TOKEN_FILE"] = str(token_file)
    return env


class MonitorStack(Stack[str]):
    def __init__(
        self,
        detectors: Path,
        state: Path,
        log_dir: Path,
        port: int | None = None,
        credentials: LocalCredentials | None = None,
        kinds: Sequence[str] = (),
    ) -> None:
        """`kinds`: the device kinds whose OCR events may label the monitor's metrics.
        `credentials`: /feedback, /status and /history take the monitor's tokens, the event sink
        the payload loggers' (None: --insecure)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            str(detectors_python()), "-m", "eyeops_detectors", "serve", "--detectors", str(detectors),
            "--state", str(state), "--host", "127.0.0.1", "--port", str(self.port),
            "--service", "lens=lens", "--service", "ocr=ocr",
            *(["--tokens", str(credentials.monitor_registry), "--sink-tokens",
               str(credentials.logger_registry), "--read-tokens", str(credentials.monitor_read_registry)]
              if credentials else ["--insecure"]),
            *(f"--device-kind={kind}" for kind in kinds),
        ]  # fmt: skip
        self.process = ManagedProcess("monitor", argv, f"{self.url}/healthz", log_dir / "monitor.log")

    def start(self, timeout_s: float = 120.0) -> str:
        self.process.start()
        try:
            self.process.wait_ready(timeout_s)
        except BaseException:
            self.process.stop()
            raise
        return self.url

    def stop(self) -> None:
        self.process.stop()
