"""Gateway configuration: a YAML file, overridden by EYEOPS_GATEWAY_* variables, overridden by flags."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eyeops.auth import check_device_id
from eyeops.errors import EyeopsError, UnknownDeviceKind
from eyeops.gateway.validate import EXTENSIONS, Limits
from eyeops.settings import Settings

ENV_PREFIX = "EYEOPS_GATEWAY_"


class GatewaySetupError(EyeopsError):
    """A gateway configuration that is incomplete, or would run without ever delivering an exam."""


class GatewayConfig(BaseModel):
    """One gateway serves one device. Paths default under the eyeops data folder."""

    model_config = ConfigDict(extra="forbid")

    watch_dir: Path
    device_kind: str
    device_id: str
    endpoint: str
    token_file: Path | None = None
    protocol: Literal["v1", "v2"] = "v2"
    model: str = "ocr"
    state_dir: Path | None = Field(default=None, description="outbox and quarantine (default: data dir)")
    quarantine_dir: Path | None = None
    include: list[str] = Field(default_factory=lambda: sorted(f"*{ext}" for ext in EXTENSIONS))
    filename_pattern: str | None = Field(
        default=None, description="regex with named groups patient_id, laterality, exam_date"
    )
    concurrency: int = Field(default=4, ge=1, le=64)
    rescan_interval_s: float = Field(default=10.0, gt=0)
    # A file no close event announced is taken only after this long unchanged; an invalid file is
    # quarantined only after this long unchanged (it may still be growing).
    settle_s: float = Field(default=30.0, ge=0)
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    max_server_errors: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_image_bytes: int | None = None
    max_image_pixels: int | None = None
    metrics_port: int | None = None
    # The service may know device kinds this gateway's layouts do not (a newer release); it then
    # answers 400 with its known kinds, so sending anyway is a choice, never a default.
    allow_unknown_kind: bool = False

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        return check_device_id(value)

    @field_validator("filename_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    def resolved_state_dir(self) -> Path:
        return self.state_dir or default_state_dir(self.device_id)

    def outbox_path(self) -> Path:
        return self.resolved_state_dir() / "outbox.db"

    def resolved_quarantine_dir(self) -> Path:
        return self.quarantine_dir or self.resolved_state_dir() / "quarantine"

    def name_pattern(self) -> re.Pattern[str] | None:
        return re.compile(self.filename_pattern) if self.filename_pattern else None

    def limits(self) -> Limits:
        settings = Settings()
        return Limits(
            self.max_image_bytes or settings.max_image_bytes,
            self.max_image_pixels or settings.max_image_pixels,
        )


def default_state_dir(device_id: str) -> Path:
    """Where a gateway keeps its outbox and quarantine unless told otherwise."""
    return Settings().data_dir / "gateway" / device_id


def check_watch_setup(config: GatewayConfig, known_kinds: Collection[str] | None = None) -> None:
    """Refuse, before anything is created, a gateway that would run but never deliver: a watch folder
    that does not exist (a typo would otherwise be watched, empty, forever), a device kind no layout
    describes, a token file that is not there. `known_kinds` defaults to the shipped layouts."""
    folder = config.watch_dir
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise GatewaySetupError(
            f"watch folder {folder} {what}; give the device's export folder (the gateway never creates it)"
        )
    if not config.allow_unknown_kind:
        if known_kinds is None:
            from eyeops.devices import load_layouts

            known_kinds = load_layouts().kinds()
        if config.device_kind not in known_kinds:
            raise UnknownDeviceKind(
                f"unknown device kind {config.device_kind!r}; known kinds: {', '.join(sorted(known_kinds))}"
                " (--allow-unknown-kind sends it anyway, for a service that knows more kinds)"
            )
    if config.token_file is not None and not config.token_file.is_file():
        raise GatewaySetupError(
            f"token file {config.token_file} does not exist; create it with `eyeops gateway token"
            f" --device-id {config.device_id} --registry <the service's token file>"
            f" --token-file {config.token_file}`"
        )


def describe_config_problems(exc: ValidationError, option_names: Mapping[str, str]) -> str:
    """One line naming each bad or missing option as the user can give it (a flag, a key of the
    config file, an EYEOPS_GATEWAY_* variable), never echoing the values."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        key = str(error["loc"][0]) if error["loc"] else ""
        flag = option_names.get(key)
        where = f"{flag} (or {key}: in --config, or {ENV_PREFIX}{key.upper()})" if flag else key
        if error["type"] == "missing":
            problems.append(f"missing {where}")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown option {key!r} (in --config or {ENV_PREFIX}*)")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _env_value(raw: str) -> Any:
    return json.loads(raw) if raw.startswith("[") else raw


def load_gateway_config(
    config_file: Path | None, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Defaults < config file < environment < flags (None means a flag was not given)."""
    data: dict[str, Any] = {}
    if config_file is not None:
        loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of gateway options")
        data.update(loaded)
    env = os.environ if environ is None else environ
    data.update(
        {k[len(ENV_PREFIX) :].lower(): _env_value(v) for k, v in env.items() if k.startswith(ENV_PREFIX)}
    )
    data.update({k: v for k, v in overrides.items() if v is not None})
    return GatewayConfig.model_validate(data)
