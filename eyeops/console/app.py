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
import logging
import math
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from eyeops.asgi import BodyLimitMiddleware, html_error
from eyeops.console.device_pages import add_device_routes
from eyeops.console.operations import ReviewMetrics, add_operations_routes, metrics_app, metrics_route
from eyeops.console.review import add_review_routes
from eyeops.console.users import hash_password, password_stamp, verify_password
from eyeops.console.web import (
    LOGIN_CSRF_COOKIE,
    MAX_FORM_BYTES,
    MAX_LOGIN_FORM_BYTES,
    MAX_UPLOAD_BYTES,
    PENDING_COOKIE,
    REVIEWER,
    SESSION_COOKIE,
    ConsoleConfig,
    Refused,
    SignIn,
    Web,
    age_text,
    safe_next,
    same_token,
)
from eyeops.db.review import ReviewStore
from eyeops.devices.layout import LayoutRegistry
from eyeops.errors import EyeopsError
from eyeops.review.reread import Recognizer
from eyeops.settings import Settings

__all__ = [
    "MAX_FORM_BYTES",
    "MAX_UPLOAD_BYTES",
    "PENDING_COOKIE",
    "SESSION_COOKIE",
    "ConsoleConfig",
    "create_app",
    "metrics_app",
]

log = logging.getLogger("eyeops.console")


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
    env.filters["age"] = lambda since: age_text(since, dt.datetime.now(dt.UTC))
    env.filters["clock"] = lambda unix: dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    registry = CollectorRegistry()
    registry.register(ReviewMetrics(store, config.review_max_wait_s))
    refusals = PromCounter(
        "eyeops_console_refused", "Console requests refused, by reason", ["reason"], registry=registry
    )
    # An unknown name is checked against this, so that it answers as slowly as a wrong password.
    no_such_user = hash_password(hashlib.sha256(config.sessions.secret).hexdigest())
    app.state.metrics_registry = registry  # metrics_app serves it on a port of its own
    web = Web(config, env, refusals, layouts)

    @app.exception_handler(SignIn)
    async def to_login(request: Request, exc: SignIn) -> Response:
        target = safe_next(exc.next_path)
        response = RedirectResponse(
            f"/login?next={target}{'&expired=1' if exc.expired else ''}", status_code=303
        )
        if exc.pending:
            web.cookie(response, PENDING_COOKIE, config.sessions.seal(exc.pending), max_age=3600)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        return web.page("message.html", request, None, status=exc.status, message=exc.message)

    @app.exception_handler(EyeopsError)
    async def eyeops_error(request: Request, exc: EyeopsError) -> HTMLResponse:
        status = exc.status_code if exc.status_code < 500 or exc.status_code == 503 else 500
        return web.page("message.html", request, None, status=status, message=exc.message)

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
        app.add_api_route("/metrics", metrics_route(registry), methods=["GET"])

    @app.get("/static/console.js")
    async def script() -> Response:
        from importlib.resources import files

        body = files("eyeops.console").joinpath("static/console.js").read_text(encoding="utf-8")
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/queue", expired: int = 0) -> HTMLResponse:
        if config.forwarded_user_header:
            return RedirectResponse(safe_next(next), status_code=303)  # type: ignore[return-value]
        token = (
            request.cookies.get(LOGIN_CSRF_COOKIE)
            or hmac.new(
                config.sessions.secret, str(dt.datetime.now().timestamp()).encode(), hashlib.sha256
            ).hexdigest()
        )
        response = web.page(
            "login.html",
            request,
            None,
            next=safe_next(next),
            csrf=token,
            expired=bool(expired),
            pending=bool(request.cookies.get(PENDING_COOKIE)),
        )
        web.cookie(response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await web.small_form(request, MAX_LOGIN_FORM_BYTES)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        next_path = safe_next(form.get("next"))
        if not expected or not same_token(form.get("csrf", ""), expected):
            web.refusals.labels("csrf").inc()
            raise Refused(403, "the sign-in form is stale; open the sign-in page again")
        name = form.get("user", "")[:64]
        address = request.client.host if request.client else "unknown"
        wait = config.throttle.wait_s(name, address)
        if wait > 0:
            web.refusals.labels("throttled").inc()
            minutes = max(1, math.ceil(wait / 60))
            slow_down = web.page(
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
            web.refusals.labels("sign_in").inc()
            log.warning("failed sign-in")
            return web.page(
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
        web.cookie(response, SESSION_COOKIE, value, max_age=int(config.sessions.ttl_s))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        log.info("%s signed in", user.name)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await web.form_of(request, None)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(PENDING_COOKIE, path="/")  # typed values do not outlive the sign-out
        return response

    @app.get("/")
    async def home(request: Request) -> Response:
        session = web.identity(request)
        return RedirectResponse("/queue" if REVIEWER in session.roles else "/devices", status_code=303)

    add_review_routes(app, web, store, settings, recognizer)
    add_operations_routes(app, web, store)
    add_device_routes(app, web)
    return app
