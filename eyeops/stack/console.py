"""The review console on one machine: a first person who may sign in (both roles; the password in
a file under the credentials folder, made once), and the console's process beside the stack."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from eyeops.stack.process import ManagedProcess

FIRST_USER = "clinic"


@dataclass(frozen=True)
class ConsoleLogin:
    users: Path
    password: Path
    secret: Path

    @classmethod
    def provision(cls, root: Path) -> ConsoleLogin:
        """Make what is missing under `root` (the stack's credentials folder); keep what is there."""
        from eyeops.console.users import add_user

        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        made = cls(
            root / "console-users.txt", root / f"console-{FIRST_USER}.password", root / "console-session.key"
        )
        if not made.password.exists():
            password = secrets.token_urlsafe(12)
            add_user(made.users, FIRST_USER, ["reviewer", "device_admin"], password)
            fd = os.open(made.password, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(password + "\n")
        return made


def console_process(
    login: ConsoleLogin,
    port: int,
    database_url: str,
    log_dir: Path,
    triton_url: str | None = None,
    triton_key: Path | None = None,
    monitor_url: str | None = None,
    monitor_token: Path | None = None,
    finetune_registry: Path | None = None,
) -> ManagedProcess:
    argv = [
        str(Path(sys.executable).parent / "eyeops"), "console", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--database-url", database_url, "--users-file", str(login.users),
        "--session-secret-file", str(login.secret),
    ]  # fmt: skip
    if triton_url:
        argv += ["--triton-url", triton_url]
    if triton_key is not None:
        argv += ["--triton-key-file", str(triton_key)]
    if finetune_registry is not None:  # the Devices page starts `eyeops devices finetune`
        argv += ["--finetune-registry", str(finetune_registry)]
    if monitor_url:
        argv += ["--monitor-url", monitor_url]
    if monitor_token is not None:
        argv += ["--monitor-token-file", str(monitor_token)]
    return ManagedProcess("console", argv, f"http://127.0.0.1:{port}/readyz", log_dir / "console.log")
