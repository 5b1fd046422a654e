"""Map errors to HTTP at the edge of every KServe model server of ours: eyeops errors to their status,
a body FastAPI cannot parse to 400, a value the database refuses to 400; no body ever echoes the
request (it may hold an image or a patient's identity)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from eyeops.errors import EyeopsError, InvalidRequest

MAX_REQUEST_ID_CHARS = 128


def check_request_id(headers: dict[str, str] | None) -> str | None:
    """A client's Ce-Id / X-Request-Id (stored, logged, forwarded): printable, at most 128 characters."""
    headers = headers or {}
    request_id = headers.get("ce-id") or headers.get("x-request-id")
    if request_id is not None and (len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable()):
        raise InvalidRequest("ce-id / x-request-id must be printable and at most 128 characters")
    return request_id


def validation_message(exc: RequestValidationError) -> str:
    """Where the body is wrong and what was expected, never the value that was sent."""
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "request body does not match this endpoint: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    """Map eyeops errors to their HTTP status, with Retry-After where a retry will help."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EyeopsError)
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse(status_code=exc.status_code, content={"error": exc.message}, headers=headers)

    async def invalid_body(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(status_code=400, content={"error": validation_message(exc)})

    app.add_exception_handler(EyeopsError, handle)
    app.add_exception_handler(RequestValidationError, invalid_body)
    try:
        from sqlalchemy.exc import DataError
    except ImportError:  # pragma: no cover - every image of ours ships SQLAlchemy
        return

    async def refused_value(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=400,
            content={
                "error": "a value in the request is too long or of the wrong type for the results database"
            },
        )

    app.add_exception_handler(DataError, refused_value)
