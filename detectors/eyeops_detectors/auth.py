"""Bearer tokens for the monitor's own routes, in the registry format eyeops writes
(`eyeops gateway token`: one `<name> sha256:<hex>` line per caller). This environment cannot import
eyeops (alibi-detect pins numpy<2), so the check is restated here; tests/unit/test_auth.py and
detectors/tests/test_monitor.py read the same registry file with both."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

_LINE = re.compile(r"^(?P<name>\S+)\s+sha256:(?P<digest>[0-9a-f]{64})$")


class TokenCheck:
    def __init__(self, digests: dict[str, str]) -> None:
        self._digests = digests

    @classmethod
    def from_file(cls, path: Path) -> TokenCheck:
        digests: dict[str, str] = {}
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = _LINE.match(line)
            if match is None:
                raise SystemExit(f"{path}:{number}: expected '<name> sha256:<64 hex digits>'")
            digests[match["name"]] = match["digest"]
        return cls(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def who(self, authorization: str | None) -> str | None:
        """The caller a `Bearer <token>` header belongs to, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
            return None
        presented = hashlib.sha256(token.strip().encode("utf-8")).hexdigest()
        found = None
        for name, digest in self._digests.items():
            if hmac.compare_digest(presented, digest):
                found = name
        return found
