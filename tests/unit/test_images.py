"""The Dockerfiles, checked without a Docker engine: every image the chart and the pipelines name
is built by one of them, runs as a non-root user from a pinned base, and starts an entrypoint that
exists in this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from eyeops.settings import repo_root

ROOT = repo_root()
DOCKERFILES = {
    "eyeops/ocr-transformer": (ROOT / "Dockerfile", "ocr-transformer"),
    "eyeops/lens": (ROOT / "Dockerfile", "lens"),
    "eyeops/console": (ROOT / "Dockerfile", "console"),
    "eyeops/pipelines": (ROOT / "Dockerfile", "pipelines"),
    "eyeops/gateway": (ROOT / "Dockerfile", "gateway"),
    "eyeops/detectors": (ROOT / "detectors" / "Dockerfile", None),
    "eyeops/triton": (ROOT / "inference" / "triton" / "Dockerfile", None),
}


def stages(path: Path) -> dict[str | None, list[str]]:
    """Instructions of each stage, by stage name (the last, unnamed stage under None)."""
    found: dict[str | None, list[str]] = {}
    current: list[str] = []
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
            assert match
            current = [line]
            found[match.group(1)] = current
        else:
            current.append(line)
    return found


def target(path: Path, name: str | None) -> list[str]:
    """A target's instructions, following `FROM <stage>` back to its base."""
    all_stages = stages(path)
    own = all_stages[name] if name else list(all_stages.values())[-1]
    base = own[0].split()[1]
    return (target(path, base) if base in all_stages else [own[0]]) + own[1:]


def images_named() -> set[str]:
    values = yaml.safe_load((ROOT / "charts" / "eyeops" / "values.yaml").read_text())
    names = {values["monitor"]["image"]["repository"]}
    names |= {values["ocr"][c]["image"]["repository"] for c in ("transformer", "triton")}
    names |= {values["lens"][c]["image"]["repository"] for c in ("transformer", "predictor")}
    from kfp_pipelines.common import DETECTORS_IMAGE, PIPELINE_IMAGE

    return names | {PIPELINE_IMAGE.split(":")[0], DETECTORS_IMAGE.split(":")[0]}


def test_every_image_named_has_a_dockerfile() -> None:
    assert images_named() <= set(DOCKERFILES), images_named() - set(DOCKERFILES)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_runs_non_root_from_a_pinned_base_and_its_entrypoint_exists(image: str) -> None:
    path, name = DOCKERFILES[image]
    instructions = target(path, name)
    text = path.read_text()
    pinned = re.search(r"ARG BASE_IMAGE=python:(\d+\.\d+\.\d+)-slim-\w+", text)
    assert pinned and "latest" not in text, f"{path}: the base image must be pinned"
    users = [i.split()[1] for i in instructions if i.upper().startswith("USER ")]
    assert users and users[-1] == "10001", f"{image} ends as user {users[-1:] or 'root'}"
    entrypoint = next(i for i in reversed(instructions) if i.upper().startswith("ENTRYPOINT"))
    argv = yaml.safe_load(entrypoint.split(None, 1)[1])
    if argv[:2] == ["python", "-m"]:
        module = argv[2].replace(".", "/")
        candidates = [ROOT / module, ROOT / "detectors" / module]
        assert any((c / "__main__.py").is_file() for c in candidates), argv
    elif argv[0] != "python":
        assert argv[0] == "tritonserver" and any("backend-directory" in a for a in argv), argv


@pytest.mark.parametrize(
    ("dockerfile", "env"),
    [
        ("Dockerfile", "main"),
        ("detectors/Dockerfile", "detectors"),
        ("inference/triton/Dockerfile", "triton"),
    ],
)
def test_images_install_from_their_lock(dockerfile: str, env: str) -> None:
    """Each image installs offline from its wheelhouse, which scripts/images.sh builds from the lock
    and ships with the lock as constraints.txt (tests/containers checks the versions inside the
    built images; what each lock holds, and that it matches pyproject, is tests/unit/test_locks.py's)."""
    text = (ROOT / dockerfile).read_text()
    assert f"COPY build/wheelhouse/{env} /wheels" in text
    assert "PIP_NO_INDEX=1" in text and "-c /wheels/constraints.txt" in text
    script = (ROOT / "scripts" / "images.sh").read_text()
    assert f"wheelhouse {env} images/constraints-{env}.txt" in script
    assert 'cp "$lock" "$dir/constraints.txt"' in script
