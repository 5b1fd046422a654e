"""The review console: server-rendered pages over the results database (eyeops.review) for clinic
staff. Reviewers work the queue; device admins onboard a device from a sample export.

Sign-in: locally a users file (eyeops.console.users) and a signed session cookie; on a cluster the
ingress's OIDC proxy, with the person and their groups taken from forwarded headers (the
NetworkPolicy admits only the proxy). Every form carries a CSRF token; cookies are HttpOnly and
SameSite=Strict. URLs name exams by id (the image's hash), never a patient. A session that expired
while someone typed sends them to sign in and brings their values back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import tempfile
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from eyeops.asgi import BodyLimitMiddleware, html_error
from eyeops.console.users import (
    LoginThrottle,
    Session,
    SessionExpired,
    Sessions,
    User,
    hash_password,
    password_stamp,
    verify_password,
)
from eyeops.db.schema import Exam
from eyeops.devices.finetune_jobs import FinetuneJobs
from eyeops.devices.layout import DeviceLayout, FieldSpec, LayoutRegistry
from eyeops.errors import EyeopsError
from eyeops.fields import FieldReading
from eyeops.review.images import ExamView, png, view_exam
from eyeops.review.reread import Recognizer, reread
from eyeops.review.store import Conflict, ExamForReview, NotReviewable, ReviewStore, labels_for
from eyeops.review.validate import review_values
from eyeops.settings import Settings

log = logging.getLogger("eyeops.console")

SESSION_COOKIE = "eyeops_session"
PENDING_COOKIE = "eyeops_pending"  # typed values kept across a sign-in
LOGIN_CSRF_COOKIE = "eyeops_login"
REVIEWER, DEVICE_ADMIN = "reviewer", "device_admin"
VIEW_CACHE = 16  # exams whose aligned image and crops stay in memory
MAX_QUEUE_AGE_H = 24 * 366 * 10  # the queue filter's "older than": ten years of hours
MAX_UPLOAD_BYTES = 20 << 20
MAX_FORM_BYTES = 256 << 10  # a review form: every field's value, a reason, a CSRF token
MAX_LOGIN_FORM_BYTES = 16 << 10
CSP = (  # scripts only from this site (static/console.js), forms only to it, never framed
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self';"
    " form-action 'self'; frame-ancestors 'none'"
)
FIELD_TYPES: dict[str, dict[str, Any]] = {
    # what a device admin picks for a box; each becomes a FieldSpec
    "number": {"kind": "number"},
    "signed number": {"kind": "number", "show_plus": True},
    "date (dd.mm.yyyy)": {"kind": "date", "pattern": r"\d{2}\.\d{2}\.\d{4}", "date_format": "%d.%m.%Y"},
    "date (dd/mm/yyyy)": {"kind": "date", "pattern": r"\d{2}/\d{2}/\d{4}", "date_format": "%d/%m/%Y"},
    "date (yyyy-mm-dd)": {"kind": "date", "pattern": r"\d{4}-\d{2}-\d{2}", "date_format": "%Y-%m-%d"},
    "patient id": {"kind": "text", "pattern": r"P\d{7}"},
    "laterality": {"kind": "text", "pattern": r"OD|OS"},
}


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


def _same(sent: str, expected: str) -> bool:
    """Constant-time equality of a token a client sent (any text: compare_digest refuses non-ASCII
    str, which was a 500) and the one expected."""
    return hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _safe_next(path: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //): never an open redirect."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/queue"
    return path


def _age(since: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0.0, (now - since).total_seconds())
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


class ReviewMetrics(Collector):
    """Review backlog and its age, and fields confirmed or corrected, read from the database at
    each scrape (so every replica reports the same, and a restart loses nothing)."""

    def __init__(self, store: ReviewStore, max_wait_s: float) -> None:
        self.store = store
        self.max_wait_s = max_wait_s

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        now = dt.datetime.now(dt.UTC)
        backlog = GaugeMetricFamily(
            "eyeops_review_backlog_exams", "Exams waiting for review", labels=["device_kind"]
        )
        oldest = GaugeMetricFamily(
            "eyeops_review_oldest_age_seconds",
            "How long the oldest waiting exam has waited",
            labels=["device_kind"],
        )
        limit = GaugeMetricFamily(
            "eyeops_review_max_wait_seconds", "The longest an exam should wait for review (an alert beyond)"
        )
        limit.add_metric([], self.max_wait_s)
        yield limit
        try:
            rows = self.store.backlog()
            fields = self.store.corrections()
            looks = self.store.second_looks()
        except EyeopsError:
            return
        for row in rows:
            backlog.add_metric([row.device_kind], row.exams)
            oldest.add_metric([row.device_kind], max(0.0, (now - row.oldest).total_seconds()))
        reviewed = CounterMetricFamily(
            "eyeops_review_fields",
            "Fields a reviewer confirmed or corrected",
            labels=["device_kind", "field", "action"],
        )
        for kind, name, action, count in fields:
            reviewed.add_metric([kind, name, action], count)
        agreement = CounterMetricFamily(
            "eyeops_review_second_look_fields",
            "Fields of sampled releases a second reviewer checked blind, by agree or disagree",
            labels=["device_kind", "field", "outcome"],
        )
        for kind, name, outcome, count in looks:
            agreement.add_metric([kind, name, outcome], count)
        yield backlog
        yield oldest
        yield reviewed
        yield agreement


def create_app(
    store: ReviewStore,
    layouts: Callable[[], LayoutRegistry],
    config: ConsoleConfig,
    settings: Settings | None = None,
    recognizer: Recognizer | None = None,
) -> FastAPI:
    """`layouts`: the device kinds (called again after a device is onboarded here)."""
    settings = settings or Settings()
    if config.forwarded_user_header and not config.proxy_secret:
        raise ValueError(
            "behind a sign-in proxy the console needs the secret the proxy proves itself with"
            " (proxy_secret): without it any caller reaching its port could name any user"
        )
    app = FastAPI(title=config.title, docs_url=None, redoc_url=None, openapi_url=None)
    # A ceiling for every route, the largest any route allows (a device sample and its form); each
    # route's own, smaller limit is checked before it reads (check_length).
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_UPLOAD_BYTES + MAX_FORM_BYTES, respond=html_error)
    env = Environment(loader=PackageLoader("eyeops.console", "templates"), autoescape=select_autoescape())
    env.filters["age"] = lambda since: _age(since, dt.datetime.now(dt.UTC))
    env.filters["clock"] = lambda unix: dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    registry = CollectorRegistry()
    registry.register(ReviewMetrics(store, config.review_max_wait_s))
    refusals = PromCounter(
        "eyeops_console_refused", "Console requests refused, by reason", ["reason"], registry=registry
    )
    views: OrderedDict[tuple[str, int], ExamView] = OrderedDict()
    views_lock = threading.Lock()
    export_running = threading.Lock()
    state: dict[str, LayoutRegistry] = {"layouts": layouts()}
    proxy_proof = hashlib.sha256(config.proxy_secret or b"").digest()
    # An unknown name is checked against this, so that it answers as slowly as a wrong password.
    no_such_user = hash_password(hashlib.sha256(config.sessions.secret).hexdigest())
    app.state.metrics_registry = registry  # metrics_app serves it on a port of its own

    # -- identity --------------------------------------------------------------------------------
    def identity(request: Request) -> Session:
        if config.forwarded_user_header:
            proof = request.headers.get(config.proxy_secret_header, "").encode("utf-8", "replace")
            if not hmac.compare_digest(hashlib.sha256(proof).digest(), proxy_proof):
                refusals.labels("proxy").inc()
                raise Refused(401, "only the clinic's sign-in proxy may say who you are; sign in through it")
            user = request.headers.get(config.forwarded_user_header, "").strip()
            if not user:
                raise Refused(401, "the sign-in proxy sent no user; sign in through the clinic's login")
            groups = {g.strip() for g in request.headers.get(config.forwarded_groups_header, "").split(",")}
            roles = frozenset(config.group_roles[g] for g in groups if g in config.group_roles)
            csrf = hmac.new(config.sessions.secret, f"csrf:{user}".encode(), hashlib.sha256).hexdigest()
            return Session(user, roles, float("inf"), csrf)
        try:
            session = config.sessions.read(request.cookies.get(SESSION_COOKIE))
        except SessionExpired as exc:
            raise SignIn(request.url.path, expired=True, expired_session=exc.session) from None
        if session is None:
            raise SignIn(request.url.path)
        # Revoked without server state: a person removed from the users file, or whose password
        # changed since, signs in again; a role taken away is gone on the next request.
        person = config.users.get(session.user)
        if person is None or not _same(session.stamp, password_stamp(person)):
            refusals.labels("revoked").inc()
            raise SignIn(request.url.path)
        if not session.roles <= person.roles:
            session = Session(
                session.user, session.roles & person.roles, session.expires, session.csrf, session.stamp
            )
        return session

    def require(request: Request, role: str) -> Session:
        session = identity(request)
        if role not in session.roles:
            refusals.labels("role").inc()
            raise Refused(403, f"this page needs the {role} role; ask an administrator")
        return session

    def check_length(request: Request, limit: int, message: str) -> None:
        """A 413 before a byte is read when the body declares more than `limit` bytes, or no length."""
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > limit:
            refusals.labels("too_large").inc()
            raise Refused(413, message)

    async def small_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
        """A posted form's text fields, within `limit` bytes (check_length)."""
        check_length(
            request, limit, f"a form here is at most {limit >> 10} KiB, sent with its Content-Length"
        )
        return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}

    async def form_of(request: Request, role: str | None) -> tuple[Session, dict[str, str]]:
        """The posted form of a signed-in person with `role` (None: any), its CSRF token checked.
        The caller is known before the body is read: without a session nothing is read. A session
        that expired keeps what they typed (sealed cookie) and sends them to sign in."""
        try:
            session = require(request, role) if role else identity(request)
        except SignIn as exc:
            # Values are kept only from a form its own (expired) session posted: a POST without
            # one, or from another site, must not plant "values you typed" for a reviewer.
            was = exc.expired_session
            pending: dict[str, object] | None = None
            form = await small_form(request) if was is not None and request.method == "POST" else {}
            if was is not None and _same(form.get("csrf", ""), was.csrf):
                values = {k: v for k, v in form.items() if k.startswith("value__") or k == "reason"}
                pending = {"path": request.url.path, "values": values, "user": was.user}
            raise SignIn(
                exc.next_path.rsplit("/", 1)[0] if request.method == "POST" else exc.next_path,
                pending,
                exc.expired,
            ) from None
        form = await small_form(request)
        if not _same(form.get("csrf", ""), session.csrf):
            refusals.labels("csrf").inc()
            raise Refused(403, "this form is stale or came from another site; reload the page and try again")
        return session, form

    def page(
        template: str, request: Request, session: Session | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        body = env.get_template(template).render(
            session=session,
            title=config.title,
            path=request.url.path,
            is_reviewer=bool(session and REVIEWER in session.roles),
            is_admin=bool(session and DEVICE_ADMIN in session.roles),
            local_login=config.forwarded_user_header is None,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = CSP
        return response

    def cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=config.secure_cookies,
            path="/",
        )

    @app.exception_handler(SignIn)
    async def to_login(request: Request, exc: SignIn) -> Response:
        target = _safe_next(exc.next_path)
        response = RedirectResponse(
            f"/login?next={target}{'&expired=1' if exc.expired else ''}", status_code=303
        )
        if exc.pending:
            cookie(response, PENDING_COOKIE, config.sessions.seal(exc.pending), max_age=3600)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        return page("message.html", request, None, status=exc.status, message=exc.message)

    @app.exception_handler(EyeopsError)
    async def eyeops_error(request: Request, exc: EyeopsError) -> HTMLResponse:
        status = exc.status_code if exc.status_code < 500 or exc.status_code == 503 else 500
        return page("message.html", request, None, status=status, message=exc.message)

    # -- open routes -----------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await asyncio.to_thread(store.results.ping)
        except EyeopsError as exc:
            return PlainTextResponse(exc.message, status_code=503)
        return PlainTextResponse("ready")

    if config.metrics_on_main_port:
        app.add_api_route("/metrics", _metrics_route(registry), methods=["GET"])

    @app.get("/static/console.js")
    async def script() -> Response:
        from importlib.resources import files

        body = files("eyeops.console").joinpath("static/console.js").read_text(encoding="utf-8")
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/queue", expired: int = 0) -> HTMLResponse:
        if config.forwarded_user_header:
            return RedirectResponse(_safe_next(next), status_code=303)  # type: ignore[return-value]
        token = (
            request.cookies.get(LOGIN_CSRF_COOKIE)
            or hmac.new(
                config.sessions.secret, str(dt.datetime.now().timestamp()).encode(), hashlib.sha256
            ).hexdigest()
        )
        response = page(
            "login.html",
            request,
            None,
            next=_safe_next(next),
            csrf=token,
            expired=bool(expired),
            pending=bool(request.cookies.get(PENDING_COOKIE)),
        )
        cookie(response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await small_form(request, MAX_LOGIN_FORM_BYTES)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        next_path = _safe_next(form.get("next"))
        if not expected or not _same(form.get("csrf", ""), expected):
            refusals.labels("csrf").inc()
            raise Refused(403, "the sign-in form is stale; open the sign-in page again")
        name = form.get("user", "")[:64]
        address = request.client.host if request.client else "unknown"
        wait = config.throttle.wait_s(name, address)
        if wait > 0:
            refusals.labels("throttled").inc()
            minutes = max(1, math.ceil(wait / 60))
            slow_down = page(
                "message.html",
                request,
                None,
                status=429,
                message=f"too many failed sign-ins: try again in {minutes} minute{'s' * (minutes > 1)}",
            )
            slow_down.headers["Retry-After"] = str(math.ceil(wait))
            return slow_down
        user = config.users.get(name)
        checked = await asyncio.to_thread(
            verify_password, form.get("password", ""), user.password_hash if user else no_such_user
        )
        if not checked or user is None:
            config.throttle.failed(name, address)
            refusals.labels("sign_in").inc()
            log.warning("failed sign-in")
            return page(
                "login.html",
                request,
                None,
                status=401,
                next=next_path,
                csrf=expected,
                error="unknown user or wrong password",
                expired=False,
                pending=False,
            )
        config.throttle.succeeded(user.name)
        value, _ = config.sessions.issue(user.name, user.roles, password_stamp(user))
        response = RedirectResponse(next_path, status_code=303)
        cookie(response, SESSION_COOKIE, value, max_age=int(config.sessions.ttl_s))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        log.info("%s signed in", user.name)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await form_of(request, None)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(PENDING_COOKIE, path="/")  # typed values do not outlive the sign-out
        return response

    @app.get("/")
    async def home(request: Request) -> Response:
        session = identity(request)
        return RedirectResponse("/queue" if REVIEWER in session.roles else "/devices", status_code=303)

    # -- the queue -------------------------------------------------------------------------------
    @app.get("/queue", response_class=HTMLResponse)
    async def queue(
        request: Request, kind: str = "", reason: str = "", older_than_h: str = ""
    ) -> HTMLResponse:
        session = require(request, REVIEWER)
        try:
            hours = float(older_than_h) if older_than_h.strip() else None
        except ValueError:
            raise Refused(400, "older than: send a number of hours, e.g. 4") from None
        if hours is not None and not 0 <= hours <= MAX_QUEUE_AGE_H:  # also NaN and infinity
            raise Refused(400, f"older than: send a number of hours from 0 to {MAX_QUEUE_AGE_H}, e.g. 4")
        if kind and kind not in state["layouts"]:
            raise Refused(400, "device kind: pick one from the list, or none for every kind")
        if len(reason) > 200 or not reason.isprintable():  # NUL and friends never reach the database
            raise Refused(400, "reason: pick one from the list, or none for every reason")
        older = dt.timedelta(hours=hours) if hours is not None else None
        entries = await asyncio.to_thread(store.queue, kind or None, reason or None, older)
        all_entries = await asyncio.to_thread(store.queue)
        reasons = sorted({r for e in all_entries for r in e.reasons})
        return page(
            "queue.html",
            request,
            session,
            entries=entries,
            kinds=state["layouts"].kinds(),
            reasons=reasons,
            kind=kind,
            reason=reason,
            older_than_h=older_than_h,
            total=len(all_entries),
        )

    # -- an exam ---------------------------------------------------------------------------------
    async def load_exam(exam_id: str) -> ExamForReview:
        if len(exam_id) != 64 or any(c not in "0123456789abcdef" for c in exam_id):
            raise Refused(404, "no such exam: exam ids are 64 hexadecimal digits; go back to the queue")
        exam = await asyncio.to_thread(store.exam, exam_id)
        if exam is None:
            raise Refused(404, "no such exam; go back to the queue")
        return exam

    async def view_of(exam: ExamForReview) -> tuple[DeviceLayout, ExamView | None]:
        layout = state["layouts"][exam.record.device_kind]
        if exam.image is None:
            return layout, None
        key = (exam.record.exam_id, exam.version)
        with views_lock:
            if key in views:
                views.move_to_end(key)
                return layout, views[key]
        view = await asyncio.to_thread(view_exam, exam.image, layout, settings, exam.corners)
        with views_lock:
            views[key] = view
            while len(views) > VIEW_CACHE:
                views.popitem(last=False)
        return layout, view

    def exam_page(
        request: Request,
        session: Session,
        exam: ExamForReview,
        layout: DeviceLayout,
        view: ExamView | None,
        status: int = 200,
        typed: dict[str, str] | None = None,
        problems: dict[str, str] | None = None,
        message: str | None = None,
        note: str | None = None,
    ) -> HTMLResponse:
        readings = {r.name: r for r in exam.record.fields}
        # A sampled release is checked blind: the second reviewer starts from what the OCR read and
        # sees neither the first reviewer's values nor the audit.
        blind = exam.second_look and session.user != exam.released_by
        rows = []
        for spec in layout.all_fields():
            reading = readings.get(spec.name)
            shown = _screen_text(spec, reading)
            start = reading.raw_text.strip() if blind and reading is not None else shown
            rows.append(
                {
                    "name": spec.name,
                    "unit": spec.unit or "",
                    "reading": reading,
                    "value": (typed or {}).get(spec.name, start),
                    "problem": (problems or {}).get(spec.name),
                    "current": shown,
                    "typed": (typed or {}).get(spec.name),
                    "has_crop": view is not None and spec.name in view.crops,
                }
            )
        now = dt.datetime.now(dt.UTC)
        return page(
            "exam.html",
            request,
            session,
            status=status,
            exam=exam,
            rows=rows,
            view=view,
            waiting_since=_age(exam.received_at, now),
            blind=blind,
            can_edit=exam.waiting and not (exam.second_look and not blind),
            message=message,
            note=note,
            reasons=[(f or "exam", r) for f, r in exam.open_items],
        )

    def take_pending(request: Request, exam_id: str, user: str) -> dict[str, str] | None:
        pending = config.sessions.unseal(request.cookies.get(PENDING_COOKIE))
        if not pending or not str(pending.get("path", "")).startswith(f"/exams/{exam_id}/"):
            return None
        if pending.get("user") != user:  # typed by someone else on this browser: not theirs to see
            return None
        values = pending.get("values")
        if not isinstance(values, dict):
            return None
        return {k.removeprefix("value__"): str(v) for k, v in values.items() if k.startswith("value__")}

    @app.get("/exams/{exam_id}", response_class=HTMLResponse)
    async def exam_get(request: Request, exam_id: str, done: str = "") -> HTMLResponse:
        session = require(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        typed = take_pending(request, exam_id, session.user)
        note = {
            "released": "released: the values go to the feature store and the crop set",
            "rejected": "rejected: the exam left the queue",
            "reread": "read again from the corners you marked; check every field and release",
            "agree": "second look saved: both reviewers agree",
            "disagree": "second look saved: the fields you read otherwise went back to review",
        }.get(done)
        if typed:
            note = "your session had expired: the values you typed are back; check them and save again"
        response = exam_page(request, session, exam, layout, view, typed=typed, note=note)
        if typed is not None:
            response.delete_cookie(PENDING_COOKIE, path="/")
        return response

    @app.get("/exams/{exam_id}/original.png")
    async def original_png(request: Request, exam_id: str) -> Response:
        require(request, REVIEWER)
        exam = await load_exam(exam_id)
        _, view = await view_of(exam)
        if view is None:
            raise Refused(404, "this exam's image was not kept")
        return Response(
            await asyncio.to_thread(view.original_png),
            media_type="image/png",
            headers={"Cache-Control": "private, no-store"},
        )

    @app.get("/exams/{exam_id}/aligned.png")
    async def aligned_png(request: Request, exam_id: str) -> Response:
        require(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        data = await asyncio.to_thread(view.aligned_png, layout) if view else None
        if data is None:
            raise Refused(404, "this exam has no aligned image")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    @app.get("/exams/{exam_id}/{what}/{name}.png")
    async def field_png(request: Request, exam_id: str, what: str, name: str) -> Response:
        require(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        data = None
        if view is not None and name in view.crops:
            data = (
                png(view.crops[name])
                if what == "crops"
                else view.region_png(layout, name)
                if what == "regions"
                else None
            )
        if data is None:
            raise Refused(404, "no such crop")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    def export_soon() -> None:
        if config.crops_dir is None or not export_running.acquire(blocking=False):
            return

        def run() -> None:
            from eyeops.review.cropset import export_crops

            try:
                assert config.crops_dir is not None
                manifest = export_crops(store, config.crops_dir)
                log.info(
                    "labelled crop set version %s: %s crops", manifest.get("version"), manifest.get("crops")
                )
            except Exception:
                log.exception("exporting the labelled crop set failed")
            finally:
                export_running.release()

        threading.Thread(target=run, name="crop-export", daemon=True).start()

    def version_of(form: dict[str, str]) -> int:
        try:
            return int(form.get("version", ""))
        except ValueError:
            raise Refused(400, "the form lacks the exam's version; reload the page") from None

    @app.post("/exams/{exam_id}/release")
    async def release(request: Request, exam_id: str) -> Response:
        session, form = await form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        typed = {k.removeprefix("value__"): v for k, v in form.items() if k.startswith("value__")}
        confidences = {r.name: r.confidence for r in exam.record.fields}
        readings, problems = review_values(layout, typed, confidences)
        if view is None or not view.crops:
            message = "this exam has no aligned image: mark the screen's corners first, or reject it"
            return exam_page(request, session, exam, layout, view, status=422, typed=typed, message=message)
        if problems:
            refusals.labels("invalid_values").inc()
            return exam_page(
                request,
                session,
                exam,
                layout,
                view,
                status=422,
                typed=typed,
                problems={p.field: p.reason for p in problems},
                message="not released: correct the fields marked below",
            )
        labels = labels_for(layout, readings, typed, exam.record.fields, view.crops)
        try:
            sampled = _sampled(exam_id, config.second_look_share) and exam.released_by is None
            await asyncio.to_thread(
                store.release, exam_id, version_of(form), session.user, readings, labels, second_look=sampled
            )
        except Conflict as exc:
            refusals.labels("conflict").inc()
            fresh = await load_exam(exam_id)
            return exam_page(
                request, session, fresh, layout, view, status=409, typed=typed, message=exc.message
            )
        except NotReviewable as exc:
            return exam_page(request, session, exam, layout, view, status=409, message=exc.message)
        log.info("exam %s released by %s", exam_id[:12], session.user)
        export_soon()
        return RedirectResponse(f"/exams/{exam_id}?done=released", status_code=303)

    @app.post("/exams/{exam_id}/second-look")
    async def second_look(request: Request, exam_id: str) -> Response:
        session, form = await form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        typed = {k.removeprefix("value__"): v for k, v in form.items() if k.startswith("value__")}
        readings, problems = review_values(layout, typed)
        if problems:
            return exam_page(request, session, exam, layout, view, status=422, typed=typed,
                             problems={p.field: p.reason for p in problems},
                             message="not saved: correct the fields marked below")  # fmt: skip
        try:
            differ = await asyncio.to_thread(
                store.second_look, exam_id, version_of(form), session.user, readings
            )
        except (Conflict, NotReviewable) as exc:
            fresh = await load_exam(exam_id)
            return exam_page(request, session, fresh, layout, view, status=409, message=exc.message)
        return RedirectResponse(f"/exams/{exam_id}?done={'disagree' if differ else 'agree'}", status_code=303)

    @app.post("/exams/{exam_id}/reject")
    async def reject(request: Request, exam_id: str) -> Response:
        session, form = await form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        reason = " ".join(form.get("reason", "").split())[:200]
        if not reason:
            layout, view = await view_of(exam)
            return exam_page(
                request,
                session,
                exam,
                layout,
                view,
                status=422,
                message="not rejected: say why (wrong device, unreadable, not this patient)",
            )
        try:
            await asyncio.to_thread(store.reject, exam_id, version_of(form), session.user, reason)
        except (Conflict, NotReviewable) as exc:
            layout, view = await view_of(await load_exam(exam_id))
            return exam_page(request, session, exam, layout, view, status=409, message=exc.message)
        return RedirectResponse(f"/exams/{exam_id}?done=rejected", status_code=303)

    @app.post("/exams/{exam_id}/corners")
    async def corners(request: Request, exam_id: str) -> Response:
        session, form = await form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout = state["layouts"][exam.record.device_kind]
        if exam.image is None:
            raise Refused(409, "this exam's image was not kept; reject it")
        try:
            points = [[float(v) for v in pair.split(",")] for pair in form.get("corners", "").split(";")]
        except ValueError:
            raise Refused(
                400, "corners: send four x,y pairs separated by ';' (click the four corners)"
            ) from None
        if recognizer is None:
            raise Refused(503, "this console has no recogniser to read the exam again; ask an administrator")
        view = await asyncio.to_thread(view_exam, exam.image, layout, settings, points)
        readings = await asyncio.to_thread(
            reread, layout, view.crops, recognizer, settings.confidence_threshold
        )
        try:
            await asyncio.to_thread(store.reread, exam_id, version_of(form), session.user, points, readings)
        except (Conflict, NotReviewable) as exc:
            return exam_page(request, session, exam, layout, None, status=409, message=exc.message)
        return RedirectResponse(f"/exams/{exam_id}?done=reread", status_code=303)

    # -- operations ------------------------------------------------------------------------------
    @app.get("/operations", response_class=HTMLResponse)
    async def operations(request: Request) -> HTMLResponse:
        session = identity(request)
        if not session.roles:
            raise Refused(403, "the operations page needs the reviewer or device_admin role")
        figures = await asyncio.to_thread(_operations, store)
        monitor = await _monitor_state(config)
        return page("operations.html", request, session, monitor=monitor, **figures)

    # -- devices ---------------------------------------------------------------------------------
    @app.get("/devices", response_class=HTMLResponse)
    async def devices(request: Request) -> HTMLResponse:
        session = require(request, DEVICE_ADMIN)
        return await devices_page(request, session)

    async def devices_page(
        request: Request, session: Session, status: int = 200, **context: Any
    ) -> HTMLResponse:
        jobs = await asyncio.to_thread(config.finetunes.jobs) if config.finetunes else {}
        return page(
            "devices.html",
            request,
            session,
            status=status,
            layouts=list(state["layouts"]),
            field_types=list(FIELD_TYPES),
            writable=config.layouts_dir is not None,
            finetunes=config.finetunes is not None,
            jobs=jobs,
            busy=any(j.running for j in jobs.values()),
            **context,
        )

    @app.post("/devices/{kind}/finetune")
    async def start_finetune(request: Request, kind: str) -> Response:
        """Start `eyeops devices finetune KIND` (eyeops.devices.finetune_jobs): an onboarded kind,
        one fine-tune at a time; the page shows its progress and the gate's verdict."""
        session, _ = await form_of(request, DEVICE_ADMIN)
        if config.finetunes is None:
            raise Refused(
                409,
                "this console does not run fine-tunes (--finetune-registry);"
                f" run `eyeops devices finetune {kind if kind in state['layouts'] else 'KIND'}` instead",
            )
        if kind not in state["layouts"]:
            raise Refused(404, "no such device kind")
        layout = state["layouts"][kind]
        if layout.template.reference is None:
            raise Refused(
                409, f"{kind} is a kind eyeops ships: fine-tunes are for devices onboarded from a sample"
            )
        await asyncio.to_thread(config.finetunes.start, kind, session.user)
        log.info("%s started the fine-tune of %s", session.user, kind)
        return RedirectResponse("/devices#finetunes", status_code=303)

    @app.get("/devices/{kind}/preview.png")
    async def device_preview(request: Request, kind: str) -> Response:
        """A device's boxes and field names drawn over its reference image (eyeops devices preview)."""
        require(request, DEVICE_ADMIN)
        if kind not in state["layouts"]:
            raise Refused(404, "no such device kind")
        data = await asyncio.to_thread(_preview_png, state["layouts"][kind])
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/devices")
    async def onboard_device(request: Request) -> Response:
        session = require(request, DEVICE_ADMIN)
        too_large = f"the sample is larger than {MAX_UPLOAD_BYTES >> 20} MiB"
        check_length(request, MAX_UPLOAD_BYTES + MAX_FORM_BYTES, too_large)
        form = await request.form()
        if not _same(str(form.get("csrf", "")), session.csrf):
            raise Refused(403, "this form is stale or came from another site; reload the page and try again")
        if config.layouts_dir is None:
            raise Refused(409, "this console has no folder for onboarded devices (--layouts-dir)")
        sample = form.get("sample")
        if sample is None or isinstance(sample, str):
            raise Refused(400, "send the device's sample export (PNG, JPEG, TIFF or DICOM)")
        data = await sample.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refused(413, too_large)
        try:
            boxes = json.loads(str(form.get("boxes", "[]")))
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser recurses
            raise Refused(400, "boxes: draw at least one box on the sample") from None
        kind = str(form.get("kind", "")).strip()
        current = state["layouts"]
        if kind in current and not (config.layouts_dir / f"{kind}.yaml").exists():
            raise Refused(409, f"{kind} is a device kind eyeops ships; name the new device otherwise")
        done = await asyncio.to_thread(
            _onboard,
            kind,
            str(form.get("description", "")),
            sample.filename or "sample.png",
            data,
            boxes,
            config.layouts_dir,
        )
        state["layouts"] = layouts()
        log.info("%s onboarded device kind %s", session.user, kind)
        return await devices_page(request, session, onboarded=done)

    return app


def _metrics_route(registry: CollectorRegistry) -> Callable[[], Any]:
    async def metrics() -> Response:
        data = await asyncio.to_thread(generate_latest, registry)
        return Response(data, media_type="text/plain; version=0.0.4")

    return metrics


def metrics_app(console: FastAPI) -> FastAPI:
    """The console's /metrics alone, for a port of its own: Prometheus may reach that port and
    nothing else of the console (the pages trust the proxy's headers)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/metrics", _metrics_route(console.state.metrics_registry), methods=["GET"])
    return app


def _sampled(exam_id: str, share: float) -> bool:
    """Whether a release is one of the `share` another reviewer checks: decided by the exam id (a
    hash), so the sample is reproducible and no one can choose it."""
    return int(exam_id[:8], 16) / 0x1_0000_0000 < share


def _screen_text(spec: FieldSpec, reading: FieldReading | None) -> str:
    """A field's current value as the device's screen writes it: a reviewed value in the field's own
    format (dates too); for a field in review, the arbitration's proposal (the better-validated of
    the two recognisers' readings, eyeops.ocr.arbitrate) when there is one; else the text the
    recogniser read."""
    if reading is None:
        return ""
    if reading.status == "reviewed" and reading.value is not None:
        if spec.kind == "date" and spec.date_format:
            return dt.date.fromisoformat(str(reading.value)).strftime(spec.date_format)
        return spec.format_value(reading.value)
    if reading.status == "review" and reading.proposal is not None:
        return reading.proposal.strip()
    return reading.raw_text.strip()


def _preview_png(layout: DeviceLayout) -> bytes:
    import cv2
    import numpy as np

    from eyeops.devices.onboard import preview

    t = layout.template
    image = cv2.imread(t.reference, cv2.IMREAD_GRAYSCALE) if t.reference else None
    if image is None:  # a shipped kind: its boxes over a blank screen of the template's size
        image = np.full((t.height, t.width), 235, np.uint8)
    return png(preview(image, layout))


def _operations(store: ReviewStore) -> dict[str, Any]:
    """The live figures of the operations page: today's and the week's exams by kind and status,
    exams per hour over the last day, review backlog and age, reasons, error rate, latency."""
    from eyeops.ops.report import collect

    now = dt.datetime.now(dt.UTC)
    week = collect(store.engine, since=now - dt.timedelta(days=7))
    per_hour: dict[str, Counter[str]] = defaultdict(Counter)
    with store.engine.connect() as conn:
        since = now - dt.timedelta(hours=24)
        for received, kind in conn.execute(
            select(Exam.received_at, Exam.device_kind).where(Exam.received_at >= since)
        ):
            stamp = received if received.tzinfo else received.replace(tzinfo=dt.UTC)
            per_hour[stamp.strftime("%H:00")][kind] += 1
    backlog = store.backlog()
    return {
        "week": week,
        "latency": week.latency_percentiles(),
        "per_hour": dict(sorted(per_hour.items())),
        "kinds": sorted({k for c in per_hour.values() for k in c}),
        "backlog": backlog,
        "now": now,
    }


async def _monitor_state(config: ConsoleConfig) -> dict[str, Any] | None:
    if not config.monitor_url:
        return None
    headers = {"Authorization": f"Bearer {config.monitor_token}"} if config.monitor_token else {}
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(f"{config.monitor_url.rstrip('/')}/status", headers=headers)
            response.raise_for_status()
            data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"the monitor did not answer ({type(exc).__name__})"}
    detectors = data.get("detectors", {}) if isinstance(data, dict) else {}
    return {
        "detectors": [
            {"name": name, "drift": bool(r.get("is_drift")), "p": r.get("p_value"), "at": r.get("checked_at")}
            for name, r in sorted(detectors.items())
            if isinstance(r, dict)
        ],
        "rolling": {
            k: v
            for k, v in data.items()
            if k not in ("detectors", "window_rows") and not isinstance(v, dict | list)
        },
    }


def _onboard(
    kind: str, description: str, filename: str, data: bytes, boxes: Any, out_dir: Path
) -> dict[str, Any]:
    """A layout from the boxes drawn in the browser, then the CLI's own onboarding (eyeops.devices)."""
    import cv2
    import numpy as np

    from eyeops.devices.onboard import SAMPLE_SUFFIXES, OnboardingError, onboard

    if not kind or not all(c.isalnum() or c == "_" for c in kind) or not kind[0].isalpha():
        raise OnboardingError("kind: letters, digits and _, starting with a letter (e.g. lensmeter)")
    suffix = Path(filename).suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise OnboardingError(
            f"send a PNG, JPEG, TIFF or DICOM export, not {suffix or 'a file without suffix'}"
        )
    if not isinstance(boxes, list) or not boxes:
        raise OnboardingError(
            "draw a box for every field: patient_id, laterality, exam_date and the measurements"
        )
    with tempfile.TemporaryDirectory() as tmp:
        sample_path = Path(tmp) / f"sample{suffix}"
        sample_path.write_bytes(data)
        grey = None if suffix == ".dcm" else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if suffix != ".dcm" and grey is None:
            raise OnboardingError("the sample could not be decoded as an image")
        from eyeops.devices.onboard import read_sample

        h, w = read_sample(sample_path).shape
        header: list[dict[str, Any]] = []
        fields: list[dict[str, Any]] = []
        for box in boxes:
            spec = _field_spec(box)
            (header if spec["name"] in ("patient_id", "laterality", "exam_date") else fields).append(spec)
        layout = {
            "kind": kind,
            "description": description.strip() or kind,
            "template": {"width": w, "height": h},
            "header": header,
            "fields": fields,
        }
        layout_path = Path(tmp) / f"{kind}.yaml"
        layout_path.write_text(yaml.safe_dump(layout, sort_keys=False))
        done = onboard(kind, sample_path, layout_path, out_dir)
    return {
        "kind": kind,
        "layout": done.layout.name,
        "keypoints": done.keypoints,
        "fields": len(boxes),
        "preview": done.preview.name,
    }


def _field_spec(box: Any) -> dict[str, Any]:
    from eyeops.devices.onboard import OnboardingError

    if not isinstance(box, dict):
        raise OnboardingError("each box needs a name, a type and its position")
    name = str(box.get("name", "")).strip()
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise OnboardingError("each box needs a field name of letters, digits and _")
    kind = FIELD_TYPES.get(str(box.get("type", "")))
    if kind is None:
        raise OnboardingError(f"field {name}: pick a type among {', '.join(FIELD_TYPES)}")
    try:  # NaN is a ValueError, infinity and integers beyond a float an OverflowError
        x, y, w, h = (round(float(box[k])) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise OnboardingError(f"field {name}: its box needs x, y, w and h in the sample's pixels") from None
    label = str(box.get("label") or name).strip()[:64]
    spec: dict[str, Any] = {"name": name, "label": label, "box": [x, y, w, h], **kind}
    if kind["kind"] == "number":
        try:
            spec["decimals"] = int(box.get("decimals") or 0)
            spec["range"] = [float(box["low"]), float(box["high"])]
        except (KeyError, TypeError, ValueError, OverflowError):
            raise OnboardingError(
                f"field {name}: a number needs its range (low and high) and decimals"
            ) from None
        if not (0 <= spec["decimals"] <= 6 and all(math.isfinite(v) for v in spec["range"])):
            raise OnboardingError(f"field {name}: decimals from 0 to 6 and a finite range (low and high)")
        if str(box.get("unit", "")).strip():
            spec["unit"] = str(box["unit"]).strip()
    return spec
