"""A model registry on a folder (locally) or a mounted volume (a PVC on a cluster).

Layout: `<root>/<model>/<version>/` holds the artifact exactly as KServe's `storageUri` loads it,
plus `registry.json` (metadata and metrics); `<root>/<model>/champion.json` names the serving
version and keeps the promotion history, so a rollback is one step.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eyeops.errors import EyeopsError

VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
META = "registry.json"


@dataclass
class GateDecision:
    """A promotion gate's verdict; `reasons` say why, in words a person reads on the run page."""

    promote: bool
    reasons: list[str] = field(default_factory=list)


class RegistryError(EyeopsError):
    """A registry operation that cannot be done (duplicate version, unknown version, bad name)."""


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: str
    path: Path
    metadata: dict[str, Any]

    uri_prefix: str = ""

    @property
    def storage_uri(self) -> str:
        """The form KServe's storageUri takes: `<uri_prefix>/<model>/<version>` where the registry
        root is also reachable as a PVC or bucket (`pvc://models`, `s3://bucket/registry`),
        otherwise the folder's file URI."""
        if self.uri_prefix:
            return f"{self.uri_prefix.rstrip('/')}/{self.model}/{self.version}"
        return self.path.resolve().as_uri()

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.metadata.get("metrics", {}))


class ModelRegistry:
    def __init__(self, root: Path, uri_prefix: str = "") -> None:
        self.root = root
        self.uri_prefix = uri_prefix

    def _model_dir(self, model: str) -> Path:
        if not VERSION.match(model):
            raise RegistryError(f"model name {model!r} is not allowed")
        return self.root / model

    def register(
        self, model: str, version: str, artifact: Path, metrics: dict[str, Any], **metadata: Any
    ) -> ModelVersion:
        """Copy `artifact` (a folder) in as `version`; refuses a version that exists."""
        if not VERSION.match(version):
            raise RegistryError(f"version {version!r} is not allowed; use letters, digits, '.', '_' or '-'")
        target = self._model_dir(model) / version
        if target.exists():
            raise RegistryError(
                f"{model} {version} is already registered; versions are immutable, pick a new one"
            )
        if not artifact.is_dir():
            raise RegistryError(f"{artifact} is not a model folder")
        staging = target.with_name(f".{version}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(artifact, staging)
        record = {
            "model": model,
            "version": version,
            "registered_at": dt.datetime.now(dt.UTC).isoformat(),
            "metrics": metrics,
            **metadata,
        }
        (staging / META).write_text(json.dumps(record, indent=2, default=str))
        staging.rename(target)  # a version appears whole or not at all
        return ModelVersion(model, version, target, record, self.uri_prefix)

    def get(self, model: str, version: str) -> ModelVersion:
        path = self._model_dir(model) / version
        if not (path / META).exists():
            known = ", ".join(self.versions(model)) or "none registered yet"
            raise RegistryError(f"{model} has no version {version!r}; known: {known}")
        return ModelVersion(model, version, path, json.loads((path / META).read_text()), self.uri_prefix)

    def versions(self, model: str) -> list[str]:
        folder = self._model_dir(model)
        if not folder.exists():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and (p / META).exists()]
        return [
            p.name for p in sorted(found, key=lambda p: json.loads((p / META).read_text())["registered_at"])
        ]

    def _pointer(self, model: str) -> dict[str, Any]:
        path = self._model_dir(model) / "champion.json"
        return json.loads(path.read_text()) if path.exists() else {"champion": None, "history": []}

    def champion(self, model: str) -> ModelVersion | None:
        current = self._pointer(model)["champion"]
        return None if current is None else self.get(model, current)

    def promote(self, model: str, version: str, note: str, kind: str = "promote") -> ModelVersion:
        chosen = self.get(model, version)
        pointer = self._pointer(model)
        pointer["history"].append(
            {
                "champion": version,
                "previous": pointer["champion"],
                "at": dt.datetime.now(dt.UTC).isoformat(),
                "note": note,
                "kind": kind,
            }
        )
        pointer["champion"] = version
        tmp = self._model_dir(model) / ".champion.json.tmp"
        tmp.write_text(json.dumps(pointer, indent=2))
        tmp.replace(self._model_dir(model) / "champion.json")
        return chosen

    def lineage(self, model: str) -> list[str]:
        """The champions that stand, oldest first: each promotion adds one, each rollback removes the
        newest, so rolling back again goes further back (never toggles between two versions)."""
        stack: list[str] = []
        for entry in self._pointer(model)["history"]:
            if entry.get("kind") == "rollback" or (
                "kind" not in entry and str(entry.get("note", "")).startswith("rollback")
            ):
                if stack:
                    stack.pop()
            else:
                stack.append(entry["champion"])
        return stack

    def rollback(self, model: str, note: str = "rollback") -> ModelVersion:
        """Make the champion before the current one the champion again."""
        stack = self.lineage(model)
        if len(stack) < 2:
            raise RegistryError(f"{model} has no earlier champion to roll back to")
        return self.promote(model, stack[-2], note, kind="rollback")

    def history(self, model: str) -> list[dict[str, Any]]:
        return list(self._pointer(model)["history"])
