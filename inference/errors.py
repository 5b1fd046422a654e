"""Map eyeops errors to HTTP at the edge of every KServe model server of ours."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from eyeops.errors import EyeopsError


def install_error_handlers(app: FastAPI) -> None:
    """Map eyeops errors to their HTTP status, with Retry-After where a retry will help."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EyeopsError)
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse(status_code=exc.status_code, content={"error": exc.message}, headers=headers)

    app.add_exception_handler(EyeopsError, handle)
