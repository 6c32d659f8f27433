"""Domain errors. Each carries the HTTP status the API renders it with."""

from __future__ import annotations


class StewardError(Exception):
    status_code = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class NotFound(StewardError):
    status_code = 404


class Forbidden(StewardError):
    """The caller's role or scope may not do this (a domain policy's refusal)."""

    status_code = 403


class Conflict(StewardError):
    status_code = 409


class InvalidInput(StewardError):
    status_code = 422


class EstateFileError(InvalidInput):
    """The estate YAML file is inconsistent (unknown building, duplicate device code, ...)."""
