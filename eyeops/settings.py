"""Typed settings, read from the environment (prefix EYEOPS_) when constructed, never at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def repo_root() -> Path:
    """The folder holding the `eyeops` package: the source checkout in development, site-packages
    when installed. Only for what belongs to a dev machine's checkout (the defaults of `.triton`,
    `.venv-triton`, `.venv-detectors`; charts/ and k8s/ for chartdocs and tests); files the package
    ships come from eyeops.resources, and data goes under Settings.data_dir."""
    return Path(__file__).resolve().parent.parent


def source_checkout() -> Path | None:
    """The source checkout eyeops runs from (pyproject.toml beside the package), or None when installed."""
    root = repo_root()
    return root if (root / "pyproject.toml").is_file() else None


def _triton_model_repository() -> Path:
    from eyeops.resources import triton_model_repository

    return triton_model_repository()


class Settings(BaseSettings):
    """Everything a process of eyeops can be configured with."""

    model_config = SettingsConfigDict(env_prefix="EYEOPS_", extra="forbid")

    # Everything eyeops writes (results database, logs, gateway outboxes, lens model, pipeline
    # outputs) goes here: ./var of the folder a command runs in, or EYEOPS_DATA_DIR.
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "var")
    database_url: str = ""
    # The model repository tritonserver serves: the one shipped in the package unless overridden.
    triton_repository: Path = Field(default_factory=_triton_model_repository)
    # Dev-machine tools that scripts/setup.sh builds beside a checkout; set these on any other machine.
    triton_home: Path = Field(default_factory=lambda: repo_root() / ".triton")
    triton_python_env: Path = Field(default_factory=lambda: repo_root() / ".venv-triton")
    detectors_python: Path = Field(default_factory=lambda: repo_root() / ".venv-detectors" / "bin" / "python")
    ocr_model_name: str = "trocr"
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # A field whose weakest token is less probable than this goes to review. 0.97 was chosen on a
    # calibration set (docs/measured/index.md): about 2 % of fields to review, silent errors ~0.0002.
    confidence_threshold: float = Field(default=0.97, gt=0.0, le=1.0)
    # A second recogniser (PP-OCRv4, another model family) must agree with accepted readings below
    # eyeops.ocr.pipeline.SECOND_OPINION_BELOW; false turns it off (more silent errors under shift).
    second_opinion: bool = True
    # Readings at or above this TrOCR confidence are accepted without the second recogniser (signed
    # fields excepted); unset: eyeops.ocr.arbitrate.SECOND_OPINION_BELOW. 1.01 reads every field
    # twice, and a confident reading the second contradicts goes to a person: fewer silent errors
    # under shift, for about four times the second recogniser's work (docs/recogniser.md).
    second_opinion_below: float | None = Field(default=None, ge=0.5, le=1.01)
    # Learning from traffic (eyeops.ocr.traffic): keep the crops of an accepted exam's fields that
    # both recognisers read alike, with the exam, for `eyeops ocr harvest`; false keeps none. They
    # are patient data, purged after `traffic_crop_retention_days` by every harvest.
    learn_from_traffic: bool = True
    traffic_crop_retention_days: int = Field(default=30, ge=1)
    # Hashed device tokens (`eyeops gateway token`); unset means the OCR service does not authenticate.
    device_tokens_file: Path | None = None
    http_port_triton: int = 8000
    http_port_ocr: int = 8080

    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file under data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'results.db'}"
