"""eyeops as it is installed, never as a checkout: the wheel carries every file the services read;
installed in a fresh venv outside the checkout, its entrypoints (tritonserver on the shipped model
repository, the OCR transformer, the gateway, the lens predictor and transformer, the pipeline
compiler) run from it and write their data under ./var of the working folder, never into the
package; and `eyeops[gateway]` alone installs a gateway without any serving library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from eyeops.extras import SERVER_MODULES
from eyeops.pipelines.cli import NAMES, pipeline_body
from eyeops.settings import repo_root
from tests.helpers import dicom_bytes

ROOT = repo_root()
PACKAGES = ("eyeops", "inference", "kfp_pipelines")
MAIN_SITE = Path(sysconfig.get_paths()["purelib"])  # the main environment's site-packages (.venv)
PYTHON_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
# The gateway extra's wheels, kept between runs (.cache/ is git-ignored) so CI resolves them once.
WHEELHOUSE = ROOT / ".cache" / "gateway-wheelhouse"
NOT_IN_GATEWAY = ("torch", "transformers", "kserve", "feast", "kfp", "lightgbm", "cv2", "sqlalchemy")


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


def outside_env(**extra: str) -> dict[str, str]:
    """The test's environment minus whatever could point a child back at the checkout or its settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EYEOPS_")}
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(key, None)
    return {**env, **extra}


def package_files(site: Path) -> dict[str, int]:
    """Every file and folder of the installed packages with its modification time."""
    return {
        str(p.relative_to(site)): p.stat().st_mtime_ns for name in PACKAGES for p in (site / name).rglob("*")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a clean copy of the sources (a checkout's build/ may hold stale files)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         src, "-w", tmp / "dist"],
        cwd=tmp,
    )  # fmt: skip
    (built,) = (tmp / "dist").glob("eyeops-*.whl")
    return built


@dataclass(frozen=True)
class Installed:
    venv: Path
    site: Path
    work: Path
    files: dict[str, int]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def eyeops(self) -> Path:
        return self.venv / "bin" / "eyeops"


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv outside the checkout with the wheel installed; the main environment's libraries
    are visible through a .pth file (2.6 GB are not installed again). The wheel goes in first, so pip
    never sees the checkout's editable eyeops through that .pth."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps",
         "--no-index", wheel],
        cwd=root,
    )  # fmt: skip
    site = venv / "lib" / PYTHON_DIR / "site-packages"
    (site / "eyeops_main_env.pth").write_text(f"{MAIN_SITE}\n")
    work = root / "work"
    work.mkdir()
    return Installed(venv, site, work, package_files(site))


def test_the_wheel_carries_every_file_the_services_read(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    checkpoint = ROOT / "inference" / "triton" / "trocr" / "1" / "checkpoint"
    expected = {
        "inference/triton/trocr/config.pbtxt",
        "inference/triton/trocr/1/model.py",
        "inference/triton/requirements.txt",
        *(f"inference/triton/trocr/1/checkpoint/{p.name}" for p in checkpoint.iterdir()),
        *(f"eyeops/devices/layouts/{p.name}" for p in (ROOT / "eyeops/devices/layouts").glob("*.yaml")),
        "eyeops/db/migrations/env.py",
        "eyeops/db/migrations/script.py.mako",
        *(
            f"eyeops/db/migrations/versions/{p.name}"
            for p in (ROOT / "eyeops/db/migrations/versions").glob("*.py")
        ),
        "eyeops/features/feature_repo/eyeops_features.py",
        "eyeops/features/feature_repo/feature_store.yaml",
        "eyeops/features/feature_repo/feature_store.cluster.yaml",
        *(f"kfp_pipelines/compiled/{name}.yaml" for name in NAMES),
    }
    assert len(expected) > 20
    assert expected <= names, sorted(expected - names)
    assert "model.safetensors" in {Path(n).name for n in names}


def test_services_run_from_the_installed_package_and_write_under_var(installed: Installed) -> None:
    driver = installed.work.parent / "installed_services.py"
    shutil.copy2(Path(__file__).with_name("installed_services.py"), driver)
    env = outside_env(
        # dev-machine tools stay configurable: the checkout's tritonserver and the model's environment
        EYEOPS_TRITON_HOME=str(ROOT / ".triton"),
        EYEOPS_TRITON_PYTHON_ENV=str(ROOT / ".venv-triton"),
    )
    started = time.monotonic()
    done = run([installed.python, "-I", driver], cwd=installed.work, env=env, timeout=600)
    print(f"services from the installed package: {time.monotonic() - started:.0f} s")
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # the installed package was imported, never the checkout
    for name, file in report["modules"].items():
        assert Path(file).is_relative_to(installed.site), (name, file)
    assert str(ROOT) not in report["sys_path"] and "" not in report["sys_path"]
    assert Path(report["triton_repository"]) == installed.site / "inference" / "triton"

    var = installed.work / "var"
    assert report["data_dir"] == str(var)
    ocr = report["ocr"]
    assert ocr["database_url"] == f"sqlite:///{var / 'results.db'}"
    assert ocr["exams"] == 1 and ocr["device_id"] == "iolm-1" and ocr["status"] in ("accepted", "review")
    assert set(ocr["fields"]) == set(ocr["truth"])
    right = sum(ocr["fields"][name] == text for name, text in ocr["truth"].items())
    assert right >= len(ocr["truth"]) - 1, (ocr["fields"], ocr["truth"])
    assert f"outbox {var / 'gateway' / 'iolm-1' / 'outbox.db'}" in ocr["gateway_log"], ocr["gateway_log"]

    lens = report["lens"]
    assert lens["status_code"] == 200, lens["text"]
    answer = lens["answer"]
    assert answer["eye_id"] == lens["eye_id"] and answer["model_version"] == "installed-1"
    assert answer["recommended_size_mm"] in [s["size_mm"] for s in answer["sizes"] if s["supported"]]

    for written in (
        "results.db",
        "gateway/iolm-1/outbox.db",
        "log/triton.log",
        "log/ocr-transformer.log",
        "log/lens-predictor.log",
        "lens/model/manifest.json",
        "lens/feature_repo/data/registry.db",
    ):
        assert (var / written).exists(), written
    assert package_files(installed.site) == installed.files, (
        "something was written into the installed package"
    )


def test_pipelines_compile_from_the_installed_package(installed: Installed, tmp_path: Path) -> None:
    env = outside_env()
    out = tmp_path / "compiled"
    run([installed.eyeops, "pipelines", "compile", "--out", out], cwd=installed.work, env=env)
    shipped = installed.site / "kfp_pipelines" / "compiled"
    for name in NAMES:
        fresh = (out / f"{name}.yaml").read_text()
        assert pipeline_body(fresh) == pipeline_body((shipped / f"{name}.yaml").read_text()), name
    # without --out an installed eyeops refuses rather than write into site-packages
    refused = subprocess.run(
        [installed.eyeops, "pipelines", "compile"],
        cwd=installed.work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "--out is required outside a source checkout" in refused.stderr
    assert package_files(installed.site) == installed.files


def gateway_wheelhouse(wheel: Path, cwd: Path) -> Path:
    """The gateway extra's wheels under .cache/, downloaded from the index only when missing."""
    constraints = ROOT / "images" / "constraints-main.txt"
    if not (WHEELHOUSE / "complete").exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        run(
            [sys.executable, "-m", "pip", "download", "-q", "-c", constraints, "-d", WHEELHOUSE,
             f"{wheel}[gateway]"],
            cwd=cwd,
            timeout=600,
        )  # fmt: skip
        (WHEELHOUSE / wheel.name).unlink(missing_ok=True)  # the wheel under test is always the fresh one
        (WHEELHOUSE / "complete").write_text("")
    return WHEELHOUSE


def test_the_slim_gateway_installs_without_any_serving_library(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "gateway-venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python, eyeops = venv / "bin" / "python", venv / "bin" / "eyeops"
    started = time.monotonic()
    wheels = gateway_wheelhouse(wheel, tmp_path)
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index",
         "--find-links", wheels, "-c", ROOT / "images" / "constraints-main.txt", f"{wheel}[gateway]"],
        cwd=tmp_path,
        env=outside_env(),
        timeout=600,
    )  # fmt: skip
    installed_s = time.monotonic() - started
    size_mb = int(subprocess.run(["du", "-sm", venv], capture_output=True, text=True).stdout.split()[0])
    print(f"eyeops[gateway]: {size_mb} MB installed (du -sm), in {installed_s:.0f} s")

    code = (
        "import importlib.util, json\n"
        f"modules = {sorted(SERVER_MODULES)!r}\n"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in modules}))\n"
    )
    found = json.loads(run([python, "-I", "-c", code], cwd=tmp_path).stdout)
    assert not any(found[m] for m in NOT_IN_GATEWAY), found
    assert not any(found.values()), found
    assert size_mb < 200

    env = outside_env()
    assert "watch" in run([eyeops, "gateway", "--help"], cwd=tmp_path, env=env).stdout
    assert "--endpoint" in run([eyeops, "gateway", "watch", "--help"], cwd=tmp_path, env=env).stdout
    registry, token = tmp_path / "device-tokens.txt", tmp_path / "iolm-9.token"
    made = run(
        [eyeops, "gateway", "token", "--device-id", "iolm-9", "--registry", registry, "--token-file", token],
        cwd=tmp_path,
        env=env,
    )
    assert "iolm-9" in made.stdout
    assert token.read_text().strip() and registry.read_text().split()[0] == "iolm-9"

    # DICOM → PNG with Pillow, pydicom and numpy only
    dicom = tmp_path / "exam.dcm"
    import numpy as np

    dicom.write_bytes(dicom_bytes(np.full((64, 96), 200, np.uint8)))
    check = (
        "import sys\n"
        "from pathlib import Path\n"
        "from eyeops.gateway.validate import Limits, validate_exam_file\n"
        "exam = validate_exam_file('exam.dcm', Path('exam.dcm').read_bytes(), Limits(10**7, 10**7))\n"
        "print(exam.image[:8] == b'\\x89PNG\\r\\n\\x1a\\n', sorted(sys.modules).count('cv2'))\n"
    )
    assert run([python, "-I", "-c", check], cwd=tmp_path).stdout.split() == ["True", "0"]

    # a server command says which extra it needs, in one line
    up = subprocess.run(
        [eyeops, "ocr", "eval", "--offline"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert up.returncode == 2, up.stderr
    assert "needs the server extra: pip install 'eyeops[server]'" in up.stderr, up.stderr
