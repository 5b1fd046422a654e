"""What every page of the review console shares: its configuration, who is asking (a signed
session cookie, or the sign-in proxy's headers), CSRF-checked forms within their size, and pages
rendered with the headers every response carries. The routes live in eyeops.console.app (sign-in),
.review (the queue and an exam), .device_pages (onboarding and fine-tunes) and .operations."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from prometheus_client import Counter as PromCounter

from eyeops.console.users import LoginThrottle, Session, SessionExpired, Sessions, User, password_stamp
from eyeops.devices.finetune_jobs import FinetuneJobs
from eyeops.devices.layout import LayoutRegistry

SESSION_COOKIE = "eyeops_session"
PENDING_COOKIE = "eyeops_pending"  # typed values kept across a sign-in
LOGIN_CSRF_COOKIE = "eyeops_login"
REVIEWER, DEVICE_ADMIN = "reviewer", "device_admin"
MAX_UPLOAD_BYTES = 20 << 20
MAX_FORM_BYTES = 256 << 10  # a review form: every field's value, a reason, a CSRF token
MAX_LOGIN_FORM_BYTES = 16 << 10
CSP = (  # scripts only from this site (static/console.js), forms only to it, never framed
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self';"
    " form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class ConsoleConfig:
    sessions: Sessions
    users: Mapping[str, User] = field(default_factory=dict)  # local sign-in (UsersFile: read on change)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)  # failed sign-ins
    forwarded_user_header: str | None = None  # e.g. X-Forwarded-User, set by oauth2-proxy
    forwarded_groups_header: str = "X-Forwarded-Groups"
    # Behind the proxy only the proxy may assert an identity: it proves itself with this secret in
    # `proxy_secret_header` (oauth2-proxy: injectRequestHeaders with a static value). Required
    # with forwarded_user_header; any other caller reaching the port is refused (issue 28, item 1).
    proxy_secret: bytes | None = None
    proxy_secret_header: str = "X-Eyeops-Proxy-Secret"
    metrics_on_main_port: bool = True  # False: /metrics is served apart (metrics_app, its own port)
    group_roles: dict[str, str] = field(default_factory=dict)  # OIDC group → role
    secure_cookies: bool = False
    crops_dir: Path | None = None  # the labelled crop set, for ocr-training
    layouts_dir: Path | None = None  # where onboarded devices are written
    finetunes: FinetuneJobs | None = None  # device fine-tunes started from the Devices page
    monitor_url: str | None = None
    monitor_token: str | None = None
    review_max_wait_s: float = 4 * 3600  # EyeopsReviewBacklogStale fires when an exam waits longer
    second_look_share: float = 0.0  # releases another reviewer checks blind (reviewer agreement)
    title: str = "eyeops review"


class SignIn(Exception):
    def __init__(
        self,
        next_path: str,
        pending: dict[str, object] | None = None,
        expired: bool = False,
        expired_session: Session | None = None,
    ) -> None:
        super().__init__(next_path)
        self.next_path, self.pending, self.expired = next_path, pending, expired
        self.expired_session = expired_session  # the genuine session that expired, if one did


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def same_token(sent: str, expected: str) -> bool:
    """Constant-time equality of a token a client sent (any text: compare_digest refuses non-ASCII
    str, which was a 500) and the one expected."""
    return hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def safe_next(path: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //): never an open redirect."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/queue"
    return path


def age_text(since: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0.0, (now - since).total_seconds())
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


class Web:
    """The shared part of every route: built once by create_app, handed to each group of routes."""

    def __init__(
        self,
        config: ConsoleConfig,
        env: Environment,
        refusals: PromCounter,
        layouts: Callable[[], LayoutRegistry],
    ) -> None:
        self.config, self.env, self.refusals = config, env, refusals
        self._layouts = layouts
        self.registry = layouts()  # the device kinds; read again after a device is onboarded here
        self.proxy_proof = hashlib.sha256(config.proxy_secret or b"").digest()

    def reload_layouts(self) -> None:
        self.registry = self._layouts()

    def identity(self, request: Request) -> Session:
        if self.config.forwarded_user_header:
            proof = request.headers.get(self.config.proxy_secret_header, "").encode("utf-8", "replace")
            if not hmac.compare_digest(hashlib.sha256(proof).digest(), self.proxy_proof):
                self.refusals.labels("proxy").inc()
                raise Refused(401, "only the clinic's sign-in proxy may say who you are; sign in through it")
            user = request.headers.get(self.config.forwarded_user_header, "").strip()
            if not user:
                raise Refused(401, "the sign-in proxy sent no user; sign in through the clinic's login")
            groups = {
                g.strip() for g in request.headers.get(self.config.forwarded_groups_header, "").split(",")
            }
            roles = frozenset(self.config.group_roles[g] for g in groups if g in self.config.group_roles)
            csrf = hmac.new(self.config.sessions.secret, f"csrf:{user}".encode(), hashlib.sha256).hexdigest()
            return Session(user, roles, float("inf"), csrf)
        try:
            session = self.config.sessions.read(request.cookies.get(SESSION_COOKIE))
        except SessionExpired as exc:
            raise SignIn(request.url.path, expired=True, expired_session=exc.session) from None
        if session is None:
            raise SignIn(request.url.path)
        # Revoked without server state: a person removed from the users file, or whose password
        # changed since, signs in again; a role taken away is gone on the next request.
        person = self.config.users.get(session.user)
        if person is None or not same_token(session.stamp, password_stamp(person)):
            self.refusals.labels("revoked").inc()
            raise SignIn(request.url.path)
        if not session.roles <= person.roles:
            session = Session(
                session.user, session.roles & person.roles, session.expires, session.csrf, session.stamp
            )
        return session

    def require(self, request: Request, role: str) -> Session:
        session = self.identity(request)
        if role not in session.roles:
            self.refusals.labels("role").inc()
            raise Refused(403, f"this page needs the {role} role; ask an administrator")
        return session

    def check_length(self, request: Request, limit: int, message: str) -> None:
        """A 413 before a byte is read when the body declares more than `limit` bytes, or no length."""
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > limit:
            self.refusals.labels("too_large").inc()
            raise Refused(413, message)

    async def small_form(self, request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
        """A posted form's text fields, within `limit` bytes (check_length)."""
        self.check_length(
            request, limit, f"a form here is at most {limit >> 10} KiB, sent with its Content-Length"
        )
        return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}

    async def form_of(self, request: Request, role: str | None) -> tuple[Session, dict[str, str]]:
        """The posted form of a signed-in person with `role` (None: any), its CSRF token checked.
        The caller is known before the body is read: without a session nothing is read. A session
        that expired keeps what they typed (sealed cookie) and sends them to sign in."""
        try:
            session = self.require(request, role) if role else self.identity(request)
        except SignIn as exc:
            # Values are kept only from a form its own (expired) session posted: a POST without
            # one, or from another site, must not plant "values you typed" for a reviewer.
            was = exc.expired_session
            pending: dict[str, object] | None = None
            form = await self.small_form(request) if was is not None and request.method == "POST" else {}
            if was is not None and same_token(form.get("csrf", ""), was.csrf):
                values = {k: v for k, v in form.items() if k.startswith("value__") or k == "reason"}
                pending = {"path": request.url.path, "values": values, "user": was.user}
            raise SignIn(
                exc.next_path.rsplit("/", 1)[0] if request.method == "POST" else exc.next_path,
                pending,
                exc.expired,
            ) from None
        form = await self.small_form(request)
        if not same_token(form.get("csrf", ""), session.csrf):
            self.refusals.labels("csrf").inc()
            raise Refused(403, "this form is stale or came from another site; reload the page and try again")
        return session, form

    def page(
        self, template: str, request: Request, session: Session | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        body = self.env.get_template(template).render(
            session=session,
            title=self.config.title,
            path=request.url.path,
            is_reviewer=bool(session and REVIEWER in session.roles),
            is_admin=bool(session and DEVICE_ADMIN in session.roles),
            local_login=self.config.forwarded_user_header is None,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = CSP
        return response

    def cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies,
            path="/",
        )
