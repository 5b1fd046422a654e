"""Credentials of the local stack, made once under the data folder (mode 0700) and reused: what a
cluster keeps in Secrets. Every server of `eyeops up` authenticates its callers with them.

- device tokens: the OCR transformer's registry, with one token for a first device (`local-device`);
  add devices with `eyeops gateway token --registry <registry> --device-id ... --token-file ...`
- client tokens: the lens service's registry of clinical applications, one for `local-client`
  (what `eyeops recommend --token-file` sends)
- service tokens: the lens transformer's token for the lens predictor
- the monitor's token (for /feedback, /status, /history), and the payload loggers' for its sink
- Triton's key for its restricted APIs (inference, metadata, admin), held by the OCR transformer
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from eyeops.auth import add_device


@dataclass(frozen=True)
class LocalCredentials:
    root: Path

    @property
    def device_registry(self) -> Path:
        return self.root / "device-tokens.txt"

    @property
    def device_token(self) -> Path:
        return self.root / "local-device.token"

    @property
    def client_registry(self) -> Path:
        return self.root / "lens-client-tokens.txt"

    @property
    def client_token(self) -> Path:
        return self.root / "local-client.token"

    @property
    def predictor_registry(self) -> Path:
        return self.root / "lens-predictor-callers.txt"

    @property
    def predictor_token(self) -> Path:
        return self.root / "lens-transformer.token"

    @property
    def monitor_registry(self) -> Path:
        return self.root / "monitor-tokens.txt"

    @property
    def monitor_token(self) -> Path:
        return self.root / "monitor.token"

    @property
    def monitor_read_registry(self) -> Path:
        return self.root / "monitor-read-tokens.txt"

    @property
    def monitor_read_token(self) -> Path:
        """The review console's: it reads the monitor's status and posts nothing."""
        return self.root / "console-monitor.token"

    @property
    def logger_registry(self) -> Path:
        return self.root / "monitor-sink-tokens.txt"

    @property
    def logger_token(self) -> Path:
        return self.root / "payload-logger.token"

    @property
    def triton_key(self) -> Path:
        return self.root / "triton.key"

    @classmethod
    def provision(cls, root: Path, device_registry: Path | None = None) -> LocalCredentials:
        """Make what is missing under `root`; keep what is there (tokens survive restarts).
        `device_registry`: the OCR's registry when the caller keeps its own (the demo's devices)."""
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        made = cls(root)
        if device_registry is None and not made.device_token.exists():
            add_device(made.device_registry, made.device_token, "local-device")
        for registry, token, name in (
            (made.client_registry, made.client_token, "local-client"),
            (made.predictor_registry, made.predictor_token, "lens-transformer"),
            (made.monitor_registry, made.monitor_token, "local-operator"),
            (made.monitor_read_registry, made.monitor_read_token, "local-console"),
            (made.logger_registry, made.logger_token, "payload-logger"),
        ):
            if not token.exists():
                registry.unlink(missing_ok=True)  # a registry whose token was lost is useless
                add_device(registry, token, name)
        if not made.triton_key.exists():
            fd = os.open(made.triton_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
        return made

    def read_triton_key(self) -> str:
        return self.triton_key.read_text(encoding="utf-8").strip()
