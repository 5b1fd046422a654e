"""A real `eyeops console serve` for the integration tests: started as a process, ready on
/readyz, stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from eyeops.stack.process import free_port


@contextmanager
def console_server(database_url: str, users: Path, root: Path, *flags: str) -> Iterator[str]:
    """The console's base URL; its log is root/console.log, its data folder root/var."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "eyeops"), "console", "serve", "--database-url", database_url,
        "--port", str(port), "--users-file", str(users), "--session-secret-file", str(root / "session.key"),
        *flags,
    ]  # fmt: skip
    env = {**os.environ, "EYEOPS_DATA_DIR": str(root / "var")}
    with (root / "console.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, (root / "console.log").read_text()
                assert time.monotonic() < deadline, "the console did not come up in 60 s"
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            process.wait(10)
