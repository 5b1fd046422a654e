"""Files that ship inside the installed package, found with importlib.resources.

Every file a service or pipeline step reads at run time (the Triton model repository and its
checkpoint, the Feast repository template, the compiled pipelines, the device layouts, the
migrations) is package data: these functions find it in the wheel's install exactly as in a source
checkout. Data that eyeops writes goes under `Settings.data_dir`, never here.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from eyeops.errors import EyeopsError

TRITON_MODEL_NAME = "trocr"
TRITON_SECOND_MODEL_NAME = "ppocr"  # the second recogniser, in the same repository


class PackageDataMissing(EyeopsError):
    """A file the wheel should carry is not there: a broken install, or a zip import."""


def _packaged(package: str, *parts: str) -> Path:
    resource = files(package).joinpath(*parts)
    # Triton, Feast and the KFP client need real folders, so eyeops is installed unzipped (as pip does).
    if not isinstance(resource, Path):
        raise PackageDataMissing(
            f"{package} is not installed as plain files ({resource!r}); install with pip"
        )
    if not resource.exists():
        raise PackageDataMissing(f"{resource} is missing from the installed {package}; reinstall eyeops")
    return resource


def triton_model_repository() -> Path:
    """The Triton model repository shipped with eyeops (holds `trocr/`), the folder tritonserver's
    `--model-repository` points at."""
    return _packaged("inference", "triton")


def triton_model_template() -> Path:
    """The shipped `trocr` model folder: `config.pbtxt`, `1/model.py`, `1/checkpoint/`."""
    return _packaged("inference", "triton", TRITON_MODEL_NAME)


def triton_requirements() -> Path:
    """What the Triton Python-backend model's environment installs (numpy<2, torch, transformers)."""
    return _packaged("inference", "triton", "requirements.txt")


def trocr_checkpoint() -> Path:
    """The shipped recogniser checkpoint (the champion of a first pipeline run)."""
    return _packaged("inference", "triton", TRITON_MODEL_NAME, "1", "checkpoint")


def feature_repo_template() -> Path:
    """The Feast repository: `eyeops_features.py` and the local and cluster `feature_store*.yaml`."""
    return _packaged("eyeops.features", "feature_repo")


def compiled_pipelines() -> Path:
    """The compiled Kubeflow pipelines (`<name>.yaml`) that `eyeops pipelines schedule` submits."""
    return _packaged("kfp_pipelines", "compiled")


def device_layouts() -> Path:
    """The folder of device layouts, one YAML file per device kind."""
    return _packaged("eyeops.devices", "layouts")


def migrations() -> Path:
    """The results database's Alembic migrations (env.py, versions/)."""
    return _packaged("eyeops.db", "migrations")
