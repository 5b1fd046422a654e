"""Who may use the review console, and how a browser stays signed in.

Locally, a users file: one line per person, `<name> <roles> scrypt$<n>$<r>$<p>$<salt>$<hash>`
(roles comma-separated: reviewer, device_admin); `eyeops console users add` writes it, passwords
are never stored. On a cluster, the ingress's OIDC proxy (e.g. oauth2-proxy) signs people in and
forwards who they are; the console maps their groups to roles (eyeops.console.app).

A session is a signed cookie (HMAC-SHA256 over user, roles, expiry, the session's CSRF token and
a stamp of the person's password hash); nothing is kept on the server, so any replica can read it.
It is revoked without server state: the users file is read again when it changes, and a session
whose person was removed, whose password changed (the stamp) or whose role was taken away counts
for nothing more on the next request (issue 28, item 5).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from eyeops.errors import EyeopsError

ROLES = ("reviewer", "device_admin")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 10


class UsersFileError(EyeopsError):
    """A users file that cannot be read or an entry that cannot be written; says which line."""

    status_code = 400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(digest))
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


@dataclass(frozen=True)
class User:
    name: str
    roles: frozenset[str]
    password_hash: str = ""


def _check_roles(roles: Iterable[str], where: str) -> frozenset[str]:
    out = frozenset(r.strip() for r in roles if r.strip())
    unknown = out - set(ROLES)
    if not out or unknown:
        raise UsersFileError(f"{where}: roles must be among {', '.join(ROLES)}")
    return out


def load_users(path: Path) -> dict[str, User]:
    """The users file; an unreadable or malformed line is an error that names it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsersFileError(
            f"users file {path}: {exc.strerror or exc}; create it with `eyeops console users add`"
        ) from exc
    users: dict[str, User] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or not NAME.fullmatch(parts[0]) or not parts[2].startswith("scrypt$"):
            raise UsersFileError(f"{path}:{number}: expected '<name> <roles> scrypt$...'")
        users[parts[0]] = User(parts[0], _check_roles(parts[1].split(","), f"{path}:{number}"), parts[2])
    return users


class UsersFile(Mapping[str, User]):
    """The users file, read again whenever it changes (size, mtime or inode): removing a person or a
    role with `eyeops console users` takes effect on their next request, on every replica."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}
        self._current()  # a missing or malformed file is refused at start

    def _current(self) -> dict[str, User]:
        try:
            st = self.path.stat()
            seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            seen = None
        with self._lock:
            if seen is None or seen != self._seen:
                self._users, self._seen = load_users(self.path), seen  # raises if now unreadable
            return self._users

    def __getitem__(self, name: str) -> User:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


def remove_user(path: Path, name: str) -> bool:
    """Remove one person from the users file; their sessions end on their next request."""
    users = load_users(path)
    if users.pop(name, None) is None:
        return False
    _write_users(path, users)
    return True


def password_stamp(user: User) -> str:
    """What a session carries of the password it was opened with: a new password ends it."""
    return _b64(hashlib.sha256(user.password_hash.encode()).digest()[:12])


class LoginThrottle:
    """Failed sign-ins per user name and per client address in a sliding window: beyond the limit
    the login answers 429 with Retry-After and checks no password (guessing costs the guesser
    time, not the server scrypt work). Per process: each replica counts its own."""

    def __init__(
        self,
        per_user: int = 5,
        per_address: int = 20,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window_s, self.clock = window_s, clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def wait_s(self, user: str, address: str) -> float:
        """Seconds until a sign-in for `user` from `address` is checked again; 0: now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in (("user", user.lower()), ("address", address)):
                times = self._recent(key, now)
                if len(times) >= self.limits[key[0]]:
                    wait = max(wait, times[0] + self.window_s - now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of names
                self._failures = {k: v for k, v in self._failures.items() if v}
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (("user", user.lower()), ("address", address)):
                self._recent(key, now).append(now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user.lower()), None)


def add_user(path: Path, name: str, roles: Iterable[str], password: str) -> User:
    """Add or replace one person in the users file (written atomically, owner-only)."""
    if not NAME.fullmatch(name):
        raise UsersFileError("a user name is 1-64 letters, digits or . _ @ -")
    checked = _check_roles(roles, "roles")
    if len(password) < MIN_PASSWORD:
        raise UsersFileError(f"a password needs at least {MIN_PASSWORD} characters")
    users = load_users(path) if path.exists() else {}
    users[name] = User(name, checked, hash_password(password))
    _write_users(path, users)
    return users[name]


def _write_users(path: Path, users: Mapping[str, User]) -> None:
    """The whole users file, written atomically, owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600)) as handle:
        handle.write(
            "# eyeops console users: <name> <roles> <scrypt hash>; edit with `eyeops console users add`\n"
        )
        for user in users.values():
            handle.write(f"{user.name} {','.join(sorted(user.roles))} {user.password_hash}\n")
    os.replace(partial, path)


@dataclass(frozen=True)
class Session:
    user: str
    roles: frozenset[str]
    expires: float
    csrf: str
    stamp: str = ""  # password_stamp of the person when it was opened (local sign-in)


class SessionExpired(Exception):
    """A well-signed session past its expiry: the person signs in again, their typed values kept
    (only for a form posted with this session's CSRF token)."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.user)
        self.session = session


class Sessions:
    """Signs and reads session cookies with `secret` (32+ random bytes, shared by replicas)."""

    def __init__(
        self, secret: bytes, ttl_s: float = 8 * 3600, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 32:
            raise UsersFileError("the session secret needs at least 32 bytes")
        self.secret = secret
        self.ttl_s = ttl_s
        self.clock = clock

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.secret, payload, hashlib.sha256).digest())

    def issue(self, user: str, roles: Iterable[str], stamp: str = "") -> tuple[str, Session]:
        session = Session(user, frozenset(roles), self.clock() + self.ttl_s, secrets.token_urlsafe(24), stamp)
        body = json.dumps(
            {
                "u": session.user,
                "r": sorted(session.roles),
                "e": session.expires,
                "c": session.csrf,
                "s": session.stamp,
            },
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{self._sign(body)}", session

    def _verified(self, value: str | None) -> bytes | None:
        """The body of a `<body>.<signature>` value this secret signed; None when absent or forged."""
        if not value or "." not in value:
            return None
        body_text, signature = value.rsplit(".", 1)
        try:
            body = _unb64(body_text)
        except ValueError:
            return None
        # bytes: a forged cookie may hold any text, and compare_digest refuses non-ASCII str
        good = hmac.compare_digest(signature.encode("utf-8", "replace"), self._sign(body).encode())
        return body if good else None

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds; None when absent or forged; SessionExpired when too old."""
        body = self._verified(cookie)
        if body is None:
            return None
        try:
            data = json.loads(body)
            session = Session(
                str(data["u"]), frozenset(data["r"]), float(data["e"]), str(data["c"]), str(data.get("s", ""))
            )
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < self.clock():
            raise SessionExpired(session)
        return session

    def _pending_key(self) -> bytes:
        return hmac.new(self.secret, b"eyeops console: values kept across a sign-in", hashlib.sha256).digest()

    def seal(self, data: dict[str, object]) -> str:
        """A small value encrypted and authenticated (AES-GCM, a key derived from the secret): the
        typed values kept across a sign-in are readings, patient data, and the browser that holds
        them must not be able to read or change them."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        body = json.dumps(data, separators=(",", ":")).encode()
        return _b64(nonce + AESGCM(self._pending_key()).encrypt(nonce, body, b"pending"))

    def unseal(self, value: str | None) -> dict[str, object] | None:
        """What `seal` sealed; None when absent, forged, or sealed under another secret."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not value:
            return None
        try:
            raw = _unb64(value)
            body = AESGCM(self._pending_key()).decrypt(raw[:12], raw[12:], b"pending")
            data = json.loads(body)
        except (ValueError, InvalidTag):
            return None
        return data if isinstance(data, dict) else None


def read_secret(path: Path) -> bytes:
    """The session secret file; made (owner-only, 48 random bytes) when it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(
            path, "w", encoding="utf-8", opener=lambda p, f: os.open(p, f | os.O_EXCL, 0o600)
        ) as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text(encoding="utf-8").strip().encode()
