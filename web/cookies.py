"""The browser session cookie: its name and flags, set by the API's login and the login form alike."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from accounts.const import SESSION_TTL

SESSION_COOKIE = "steward_session"


def set_session_cookie(response: Response, request: Request, secret: str) -> None:
    """HttpOnly, SameSite=Lax (a cross-site POST carries no cookie), Secure over HTTPS and always in production
    (behind a TLS proxy uvicorn sees http); lives as long as the session."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=is_production(request) or request.url.scheme == "https",
    )


def is_production(request: Request) -> bool:
    settings = getattr(request.app.state, "settings", None)
    return settings is not None and settings.env == "production"


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE)


def session_secret(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


# A wall display's credential (accounts/display.py): a cookie of its own, never taken for a staff login.
DISPLAY_COOKIE = "steward_display"


def set_display_cookie(response: Response, request: Request, secret: str, max_age_s: int) -> None:
    """HttpOnly and SameSite=Lax like the session cookie; it lives as long as the display token does."""
    response.set_cookie(
        DISPLAY_COOKIE,
        secret,
        max_age=max(1, max_age_s),
        httponly=True,
        samesite="lax",
        secure=is_production(request) or request.url.scheme == "https",
    )


def clear_display_cookie(response: Response) -> None:
    response.delete_cookie(DISPLAY_COOKIE)
