"""The containers tier: every image built by scripts/images.sh, run by a real Docker engine exactly
as the chart runs it — uid 10001, read-only root filesystem, every capability dropped, no privilege
escalation, Docker's default seccomp profile, a writable /tmp (the chart's emptyDir) and read-only
mounts of models, tokens and settings. Host networking: the containers reach this machine's
PostgreSQL and Redis on 127.0.0.1, and each other on free ports.

A missing image is a failure that says to run `bash scripts/images.sh` (scripts/test.sh does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from eyeops.settings import repo_root

DOCKER = os.environ.get("DOCKER", "docker")  # the client scripts/images.sh used
HARDENED = [
    "--network",
    "host",
    "--read-only",
    "--user",
    "10001:10001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--tmpfs",
    "/tmp:rw,exec,nosuid,size=1g,mode=1777",
]
REPORT = repo_root() / "build" / "images" / "smoke.json"


def image_tag(name: str) -> str:
    import yaml

    chart = yaml.safe_load((repo_root() / "charts" / "eyeops" / "Chart.yaml").read_text())
    return f"eyeops/{name}:{chart['appVersion']}"


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=check)


def shared_dir(path: Path) -> Path:
    """A host folder the container's uid 10001 may write (a PVC or emptyDir on a cluster)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@dataclass
class Container:
    name: str
    image: str
    started: float
    ready_s: float | None = None

    def logs(self) -> str:
        done = docker("logs", "--tail", "80", self.name, check=False)
        return (done.stdout + done.stderr)[-6000:]

    def running(self) -> bool:
        done = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return done.stdout.strip() == "true"

    def wait_ready(self, url: str, timeout_s: float = 240, headers: dict[str, str] | None = None) -> float:
        """Seconds from `docker run` to the first 200 from `url`; the container's log on failure."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                pytest.fail(f"{self.image} exited before it was ready:\n{self.logs()}")
            try:
                if httpx.get(url, headers=headers or {}, timeout=3).status_code == 200:
                    self.ready_s = time.monotonic() - self.started
                    return self.ready_s
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"{self.image} not ready at {url} after {timeout_s:.0f} s:\n{self.logs()}")


@dataclass
class Engine:
    """Starts hardened containers and removes them at the end of the session."""

    prefix: str = field(default_factory=lambda: f"eyeops-smoke-{uuid.uuid4().hex[:6]}")
    containers: list[Container] = field(default_factory=list)
    cold_starts: dict[str, float] = field(default_factory=dict)

    def run(
        self,
        image: str,
        args: list[str],
        *,
        name: str,
        mounts: list[tuple[Path, str, bool]] = (),  # type: ignore[assignment]
        env: dict[str, str] | None = None,
        entrypoint: str | None = None,
        detach: bool = True,
        timeout: float = 600,
    ) -> Container | subprocess.CompletedProcess[str]:
        tag = image_tag(image)
        argv = ["run", "--name", f"{self.prefix}-{name}", *HARDENED]
        if detach:
            argv.append("-d")
        else:
            argv.append("--rm")
        for host, inside, read_only in mounts:
            argv += ["-v", f"{host}:{inside}:{'ro' if read_only else 'rw'}"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        argv += [tag, *args]
        started = time.monotonic()
        if not detach:
            done = docker(*argv, timeout=timeout, check=False)
            if done.returncode != 0:
                output = done.stdout[-3000:] + done.stderr[-3000:]
                pytest.fail(f"{tag} {' '.join(args[:3])} failed ({done.returncode}):\n{output}")
            return done
        docker(*argv)
        container = Container(f"{self.prefix}-{name}", tag, started)
        self.containers.append(container)
        return container

    def started(self, image: str, args: list[str], ready_url: str, *, name: str, **kw: Any) -> Container:
        container = self.run(image, args, name=name, **kw)
        assert isinstance(container, Container)
        self.cold_starts[name] = round(container.wait_ready(ready_url), 1)
        return container

    def remove_all(self) -> None:
        for container in self.containers:
            docker("rm", "-f", container.name, check=False)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    if shutil.which(DOCKER) is None:
        pytest.fail(
            "no docker client: run `bash scripts/images.sh` (it installs docker.io and starts dockerd)"
        )
    if docker("info", check=False).returncode != 0:
        pytest.fail("no Docker daemon answers: run `bash scripts/images.sh` (it starts dockerd)")
    missing = [
        image_tag(n)
        for n in ("ocr-transformer", "lens", "console", "pipelines", "gateway", "triton", "detectors")
        if docker("image", "inspect", image_tag(n), check=False).returncode != 0
    ]
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)}; run `bash scripts/images.sh`")
    found = Engine()
    try:
        yield found
    finally:
        found.remove_all()
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        old.update({"cold_start_to_ready_s": {**old.get("cold_start_to_ready_s", {}), **found.cold_starts}})
        REPORT.write_text(json.dumps(old, indent=1) + "\n")
        print(f"\ncold start to ready (s): {json.dumps(found.cold_starts)}")


def free_ports(n: int) -> list[int]:
    from eyeops.stack.process import free_port

    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def world_readable(path: Path) -> Path:
    """Files the container's uid reads (a mounted Secret or ConfigMap is readable by its fsGroup)."""
    for root, dirs, files in os.walk(path):
        for d in dirs:
            Path(root, d).chmod(0o755)
        for f in files:
            Path(root, f).chmod(0o644)
    path.chmod(0o755)
    return path
