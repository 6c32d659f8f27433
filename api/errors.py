"""One place that turns domain errors into JSON responses with their status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from core.errors import StewardError


class NotAuthenticated(StewardError):
    status_code = 401


class Forbidden(StewardError):
    status_code = 403


async def steward_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StewardError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StewardError, steward_error_handler)
