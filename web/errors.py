"""One place that turns domain errors into JSON responses with their status, and documents them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.errors import Forbidden, StewardError

__all__ = ["Forbidden", "NotAuthenticated", "error_responses", "install_error_handlers"]


class NotAuthenticated(StewardError):
    status_code = 401


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong (中文 / English)")


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """Request validation lists the offending fields; a domain rule (range too long, unknown estate) says why."""

    detail: list[ValidationIssue] | str


_DESCRIPTIONS = {
    400: "Malformed request body",
    401: "Not logged in, or the token is unknown, expired or revoked",
    403: "The caller's role may not do this",
    404: "Not found, or not in an estate the caller may see (the two are not told apart)",
    409: "Conflicts with existing data",
    422: "Invalid input",
    429: "Too many failed logins (Retry-After says when to try again)",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (each has a JSON `detail`)."""
    return {
        code: {"model": ValidationErrorOut if code == 422 else ErrorOut, "description": _DESCRIPTIONS[code]}
        for code in codes
    }


async def steward_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StewardError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if (retry_after := getattr(exc, "retry_after_s", None)) is not None:
        headers = {"Retry-After": str(retry_after)}
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> set[str]:
    # Starlette answers 405 from the first route whose path matched, so GET and POST declared as two routes on
    # one path would advertise only one of them; ask the router which methods match the path in full.
    routes = request.app.router.routes
    return {
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    }


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)
    return await http_exception_handler(request, exc)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if "password" in str(k) else _redact(v) for k, v in value.items()}
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, minus rejected passwords: the error echoes its input, and proxies log error bodies."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        error = dict(error)
        if any("password" in str(part) for part in error.get("loc", ())):
            error.pop("input", None)
        elif "input" in error:
            error["input"] = _redact(error["input"])
        errors.append(error)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StewardError, steward_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
