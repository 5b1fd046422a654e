"""Device bearer tokens. The service keeps only SHA-256 hashes; the gateway keeps its own token.

Tokens are 256-bit random strings, so a single unsalted SHA-256 is enough: there is nothing to
brute-force that a slow password hash would protect. The registry file (mounted from a Kubernetes
Secret on a cluster) holds one line per device: ``<device_id> sha256:<hex>``; ``#`` starts a comment.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from eyeops.errors import EyeopsError, InvalidRequest

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LINE = re.compile(r"^(?P<device>\S+)\s+sha256:(?P<digest>[0-9a-f]{64})$")


class Unauthorized(EyeopsError):
    """Missing or wrong device token. HTTP 401."""

    status_code = 401


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.match(device_id):
        raise InvalidRequest(
            f"device id {device_id!r} is not allowed; use letters, digits, '.', '_' or '-' (1-128 chars)"
        )
    return device_id


class TokenRegistry:
    """Maps a presented token to the device it belongs to, comparing hashes in constant time."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._by_device = dict(hashes)

    @classmethod
    def parse(cls, lines: Iterable[str], source: str = "<tokens>") -> TokenRegistry:
        hashes: dict[str, str] = {}
        for number, raw in enumerate(lines, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = _LINE.match(line)
            if match is None:
                raise EyeopsError(
                    f"{source}:{number}: expected '<device_id> sha256:<64 hex digits>'"
                    " (create entries with `eyeops gateway token`)"
                )
            device = check_device_id(match["device"])
            if device in hashes:
                raise EyeopsError(f"{source}:{number}: device {device!r} is listed twice")
            hashes[device] = "sha256:" + match["digest"]
        return cls(hashes)

    @classmethod
    def from_file(cls, path: Path) -> TokenRegistry:
        return cls.parse(path.read_text(encoding="utf-8").splitlines(), str(path))

    def __len__(self) -> int:
        return len(self._by_device)

    def authenticate(self, authorization: str | None) -> str:
        """The device id a ``Bearer`` header belongs to, or Unauthorized."""
        if not authorization:
            raise Unauthorized("missing bearer token; send 'Authorization: Bearer <device token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <device token>'")
        presented = hash_token(token.strip())
        found: str | None = None
        for device, digest in self._by_device.items():
            # Compare against every entry so timing does not reveal where a match was.
            if hmac.compare_digest(presented, digest):
                found = device
        if found is None:
            raise Unauthorized("unknown device token")
        return found


def add_device(registry_file: Path, token_file: Path, device_id: str) -> None:
    """Create a token for `device_id`: the token goes to `token_file` (mode 0600) for the gateway, its
    hash is appended to `registry_file` for the service. Refuses to replace an existing entry."""
    check_device_id(device_id)
    existing = TokenRegistry.from_file(registry_file) if registry_file.exists() else TokenRegistry({})
    if device_id in existing._by_device:
        raise EyeopsError(f"{registry_file} already has device {device_id!r}; remove its line to rotate")
    token = new_token()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    registry_file.parent.mkdir(parents=True, exist_ok=True)
    with registry_file.open("a", encoding="utf-8") as out:
        out.write(f"{device_id} {hash_token(token)}\n")


def read_token_file(path: Path) -> str:
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise EyeopsError(f"token file {path} is empty")
    return token


class Forbidden(EyeopsError):
    """A valid token used for another device's requests. HTTP 403."""

    status_code = 403
