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
from typing import Protocol

from eyeops.errors import EyeopsError, InvalidRequest

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_TOKEN_CHARS = 512
# The header Triton's --http-restricted-api / --grpc-restricted-protocol checks for its key; the OCR
# transformer sends it (eyeops.stack.triton and the chart start Triton with the same name).
TRITON_KEY_HEADER = "x-eyeops-triton-key"
# Over gRPC, Triton reads a restricted protocol's key from metadata under this prefix (measured on
# 2.51: without it, "This protocol is restricted, expecting header 'triton-grpc-protocol-...'").
TRITON_GRPC_KEY_HEADER = "triton-grpc-protocol-" + TRITON_KEY_HEADER
_LINE = re.compile(r"^(?P<device>\S+)\s+sha256:(?P<digest>[0-9a-f]{64})$")


class Authenticates(Protocol):
    """Who a request's Authorization header belongs to, or Unauthorized."""

    def authenticate(self, authorization: str | None) -> str: ...


class Unauthorized(EyeopsError):
    """Missing or wrong bearer token. HTTP 401."""

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

    def __init__(self, hashes: Mapping[str, str], what: str = "device") -> None:
        """`what` names whose tokens these are in refusals: device, client, service."""
        self._by_device = dict(hashes)
        self.what = what

    @classmethod
    def parse(cls, lines: Iterable[str], source: str = "<tokens>", what: str = "device") -> TokenRegistry:
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
                raise EyeopsError(f"{source}:{number}: {what} {device!r} is listed twice")
            hashes[device] = "sha256:" + match["digest"]
        return cls(hashes, what)

    @classmethod
    def from_file(cls, path: Path, what: str = "device") -> TokenRegistry:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise EyeopsError(f"cannot read the {what} token registry {path}: {exc.strerror}") from exc
        return cls.parse(text.splitlines(), str(path), what)

    def __len__(self) -> int:
        return len(self._by_device)

    def authenticate(self, authorization: str | None) -> str:
        """The name (device id, client, service) a ``Bearer`` header belongs to, or Unauthorized."""
        if not authorization:
            raise Unauthorized(f"missing bearer token; send 'Authorization: Bearer <{self.what} token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized(f"expected 'Authorization: Bearer <{self.what} token>'")
        presented = hash_token(token.strip())
        found: str | None = None
        for device, digest in self._by_device.items():
            # Compare against every entry so timing does not reveal where a match was.
            if hmac.compare_digest(presented, digest):
                found = device
        if found is None:
            raise Unauthorized(f"unknown {self.what} token")
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
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise EyeopsError(f"cannot read token file {path}: {exc.strerror}") from exc
    if not token:
        raise EyeopsError(f"token file {path} is empty")
    return token


class Forbidden(EyeopsError):
    """A valid token used for another device's requests. HTTP 403."""

    status_code = 403


def bearer(token_file: Path | None) -> dict[str, str]:
    """The Authorization header that presents the token in `token_file` (none without a file)."""
    if token_file is None:
        return {}
    return {"authorization": "Bearer " + read_token_file(token_file)}


def local_bearer(token_file: Path | None, local_name: str) -> dict[str, str]:
    """A CLI's Authorization header: the token in `token_file` when given, else the local stack's
    `<data folder>/credentials/<local_name>` when `eyeops up` made one, else none."""
    if token_file is not None:
        return bearer(token_file)
    from eyeops.settings import Settings

    default = Settings().data_dir / "credentials" / local_name
    return bearer(default) if default.exists() else {}


class JwtVerifier:
    """Bearer JWTs from the cluster's identity provider (OIDC): the signature against the provider's
    JSON Web Key Set (a file mounted from a ConfigMap, so no request waits on the network), the
    issuer, the audience and the expiry. The caller is the token's `sub`."""

    ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")

    def __init__(self, jwks: Mapping[str, object], issuer: str, audience: str, leeway_s: int = 30) -> None:
        import jwt

        try:
            self._keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(dict(jwks)).keys}
        except jwt.exceptions.PyJWTError as exc:
            raise EyeopsError(f"the JSON Web Key Set cannot be read: {exc}") from exc
        self.issuer, self.audience, self.leeway_s = issuer, audience, leeway_s

    @classmethod
    def from_file(cls, path: Path, issuer: str, audience: str) -> JwtVerifier:
        import json

        try:
            return cls(json.loads(path.read_text(encoding="utf-8")), issuer, audience)
        except (OSError, ValueError) as exc:
            raise EyeopsError(f"cannot read the JSON Web Key Set {path}: {exc}") from exc

    def subject(self, token: str) -> str:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            key = (
                self._keys.get(header.get("kid")) if len(self._keys) > 1 else next(iter(self._keys.values()))
            )
            if key is None:
                raise Unauthorized("token signed with an unknown key")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(self.ALGORITHMS),
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.exceptions.PyJWTError as exc:
            raise Unauthorized(f"token refused: {type(exc).__name__}") from exc
        return "jwt:" + str(claims["sub"])[:128]


class Authenticator:
    """Hashed tokens of a registry, and, when configured, JWTs of the identity provider."""

    def __init__(self, registry: TokenRegistry, jwt: JwtVerifier | None = None) -> None:
        self.registry = registry
        self.jwt = jwt
        self.what = registry.what

    def __len__(self) -> int:
        return len(self.registry)

    def authenticate(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if self.jwt is not None and scheme.lower() == "bearer" and token.count(".") == 2:
            return self.jwt.subject(token)
        return self.registry.authenticate(authorization)
