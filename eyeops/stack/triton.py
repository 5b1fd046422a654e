"""Run the real `tritonserver` binary (taken from the nvidia-pytriton wheel) on a model repository."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from eyeops.auth import TRITON_KEY_HEADER
from eyeops.errors import EyeopsError
from eyeops.settings import Settings, repo_root
from eyeops.stack.process import ManagedProcess

log = logging.getLogger("eyeops.stack")
ARGV_SECRET = "@EYEOPS_ARGV_SECRET@"  # replaced in the arguments tritonserver parses (argv_secret.c)


class TritonMissing(EyeopsError):
    """The tritonserver binary or the model's Python environment is missing; says how to set up."""


def triton_paths(home: Path) -> tuple[Path, Path]:
    """(binary, backend folder) inside the extracted wheel; raise with the set-up command if absent."""
    binary = home / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    backends = home / "pytriton" / "tritonserver" / "backends"
    stub = backends / "python" / "triton_python_backend_stub"
    if not binary.is_file() or not stub.is_file():
        raise TritonMissing(
            f"tritonserver not found under {home}; set EYEOPS_TRITON_HOME, or run bash scripts/setup.sh"
            " in a source checkout"
        )
    return binary, backends


def model_site_packages(python_env: Path) -> Path:
    """site-packages of the Triton model's environment (.venv-triton: numpy<2, torch, transformers)."""
    found = sorted((python_env / "lib").glob("python3.*/site-packages"))
    if not found:
        raise TritonMissing(
            f"no Python environment for the Triton model at {python_env}; set EYEOPS_TRITON_PYTHON_ENV,"
            " or run bash scripts/setup.sh in a source checkout"
        )
    return found[0]


def triton_environment(python_env: Path) -> dict[str, str]:
    """Environment for the Python-backend stub: the interpreter's home and libpython, and the model
    environment's packages, then the folder eyeops is imported from (the stub ignores PYTHONPATH;
    model.py reads EYEOPS_SITE_PACKAGES). The model environment comes first: when eyeops is
    installed, its folder is a site-packages holding numpy 2, which Triton's stub cannot use."""
    env = dict(os.environ)
    env["PYTHONHOME"] = sys.base_prefix
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["EYEOPS_SITE_PACKAGES"] = os.pathsep.join([str(model_site_packages(python_env)), str(repo_root())])
    return env


# Every API but health needs the key (Triton checks the header itself): inference, metadata, and
# the admin APIs that could load, unload or reconfigure the model.
RESTRICTED_APIS = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"


def restricted_api_args(key: str) -> list[str]:
    """tritonserver options that refuse every API but health without `TRITON_KEY_HEADER: key`."""
    return [
        f"--http-restricted-api={RESTRICTED_APIS}:{TRITON_KEY_HEADER}={key}",
        f"--grpc-restricted-protocol={RESTRICTED_APIS}:{TRITON_KEY_HEADER}={key}",
    ]


def argv_secret_library(build_dir: Path) -> Path | None:
    """The preload library that keeps Triton's key off its command line (argv_secret.c), built once
    per source with the machine's C compiler into `build_dir`; None where there is none."""
    from importlib.resources import files

    source = files("eyeops.stack").joinpath("argv_secret.c").read_bytes()
    built = build_dir / f"argv-secret-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if built.is_file():
        return built
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
        (Path(tmp) / "argv_secret.c").write_bytes(source)
        out = Path(tmp) / "argv_secret.so"
        done = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(Path(tmp) / "argv_secret.c"), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log.warning("could not build %s: %s", built.name, done.stderr.strip()[-300:])
            return None
        out.replace(built)
    return built


def _key_off_the_command_line(key: str, where: Path, build_dir: Path, env: dict[str, str]) -> str:
    """What stands for `key` in tritonserver's arguments: a placeholder the preload library fills
    from a 0600 file (any local user reads a process's arguments with ps, not its environment or
    that file); the key itself where no C compiler could build the library, with a warning."""
    library = argv_secret_library(build_dir)
    if library is None:
        log.warning(
            "no C compiler to build the library that keeps Triton's key off its command line: local"
            " users can read the key with ps. Install one (cc) and start again"
        )
        return key
    secret = where / "triton-argv.key"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    os.chmod(secret, 0o600)  # an older file keeps its mode through O_CREAT
    env["EYEOPS_ARGV_SECRET_FILE"] = str(secret)
    env["LD_PRELOAD"] = str(library)
    return ARGV_SECRET


def triton_process(
    settings: Settings,
    http_port: int,
    log_path: Path,
    repository: Path | None = None,
    key: str | None = None,
    host: str = "127.0.0.1",
) -> ManagedProcess:
    """`key`: restrict every API but health to callers that send it; `host`: the address to bind."""
    binary, backends = triton_paths(settings.triton_home)
    env = triton_environment(settings.triton_python_env)
    if key:
        key = _key_off_the_command_line(key, log_path.parent, settings.data_dir / "bin", env)
    argv = [
        str(binary),
        f"--model-repository={repository or settings.triton_repository}",
        f"--backend-directory={backends}",
        f"--http-port={http_port}",
        f"--grpc-port={http_port + 1}",
        f"--metrics-port={http_port + 2}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--log-verbose=0",
        "--exit-timeout-secs=10",
        f"--http-address={host}",
        f"--grpc-address={host}",
        f"--metrics-address={host}",
        *(restricted_api_args(key) if key else []),
    ]
    ready = f"http://127.0.0.1:{http_port}/v2/models/{settings.ocr_model_name}/ready"
    return ManagedProcess("triton", argv, ready, log_path, env=env)
