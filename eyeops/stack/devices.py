"""Simulated exam devices for the demo and the tests: export folders, tokens, gateway processes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from eyeops.auth import add_device
from eyeops.gateway.outbox import Outbox
from eyeops.stack.process import ManagedProcess, free_port


@dataclass(frozen=True)
class SimulatedDevice:
    device_id: str
    device_kind: str
    export_dir: Path
    token_file: Path
    state_dir: Path
    metrics_port: int

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.db"

    def drop(self, name: str, image: bytes) -> Path:
        """Write an exam file the way careful device software does: a partial name, then a rename."""
        target = self.export_dir / name
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(image)
        partial.replace(target)
        return target

    def counts(self) -> dict[str, int]:
        if not self.outbox_path.exists():
            return {}
        outbox = Outbox(self.outbox_path)
        try:
            return outbox.counts()
        finally:
            outbox.close()


def provision_devices(root: Path, kinds: list[str], per_kind: int = 1) -> tuple[Path, list[SimulatedDevice]]:
    """One export folder, token and state folder per device; returns the service's token registry."""
    registry = root / "device-tokens.txt"
    devices = []
    for kind in kinds:
        for n in range(1, per_kind + 1):
            device_id = f"{kind.replace('_', '-')}-{n:02d}"
            device = SimulatedDevice(
                device_id,
                kind,
                root / "exports" / device_id,
                root / "tokens" / f"{device_id}.token",
                root / "gateways" / device_id,
                free_port(),
            )
            device.export_dir.mkdir(parents=True, exist_ok=True)
            if not device.token_file.exists():
                add_device(registry, device.token_file, device_id)
            devices.append(device)
    return registry, devices


def gateway_process(
    device: SimulatedDevice, endpoint: str, log_dir: Path, *extra: str, protocol: str = "v2"
) -> ManagedProcess:
    argv = [
        sys.executable,
        "-m",
        "eyeops.cli",
        "gateway",
        "watch",
        str(device.export_dir),
        "--device-kind",
        device.device_kind,
        "--device-id",
        device.device_id,
        "--endpoint",
        endpoint,
        "--token-file",
        str(device.token_file),
        "--state-dir",
        str(device.state_dir),
        "--metrics-port",
        str(device.metrics_port),
        "--protocol",
        protocol,
        *extra,
    ]
    return ManagedProcess(
        f"gateway-{device.device_id}",
        argv,
        f"http://127.0.0.1:{device.metrics_port}/metrics",
        log_dir / f"gateway-{device.device_id}.log",
    )
