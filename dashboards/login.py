"""The login form, logout and the language toggle. The session cookie is set as the JSON API's login sets it
(``web.cookies``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from accounts import service as accounts
from dashboards import i18n
from dashboards.render import render
from dashboards.viewer import LANG_COOKIE, request_lang, safe_next
from web.cookies import SESSION_COOKIE, clear_session_cookie, set_session_cookie
from web.deps import SessionDep

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(request: Request, session: SessionDep, next: str = "/") -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and accounts.user_for_session(session, cookie) is not None:
        return RedirectResponse(safe_next(next), status_code=303)  # already in: a bookmark of /login
    return render(request, "login.html", request_lang(request), None, next=safe_next(next), error=None)


@router.post("/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    lang = request_lang(request)
    target = safe_next(next)

    def failed(status: int, error: str) -> HTMLResponse:
        return render(request, "login.html", lang, None, status=status, next=target, error=error, username=username)

    if not username or not password:
        return failed(400, "login_missing")
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    client = request.client.host if request.client else ""
    # Our own transaction: a failed attempt must be committed (it feeds the rate limit), not rolled back
    # with the exception as a request-scoped session would.
    with factory() as session:
        try:
            production = request.app.state.settings.env == "production"
            user = accounts.authenticate(session, username, password, client=client, production=production)
        except accounts.TooManyAttempts:
            session.commit()
            return failed(429, "login_locked")
        except accounts.LoginFailed:
            session.commit()
            return failed(401, "login_failed")
        secret = accounts.start_web_session(session, user)
        accounts.audit(session, user, "login", f"user:{user.id}", {"client": client, "via": "dashboards"})
        session.commit()
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, secret)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    if cookie := request.cookies.get(SESSION_COOKIE):
        accounts.end_web_session(session, cookie)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response)
    return response


@router.get("/lang/{code}")
def switch_lang(code: str, next: str = "/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, i18n.norm_lang(code), max_age=365 * 86400, samesite="lax")
    return response
