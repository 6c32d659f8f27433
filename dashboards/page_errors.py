"""The exception handlers of the pages: a missing login goes to the login form, a refusal or a missing
object renders the 403/404 page (live streams get plain text, which EventSource can act on)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from dashboards.render import render
from dashboards.viewer import LoginRequired, PageError, request_lang


async def login_redirect(request: Request, exc: LoginRequired) -> Response:
    if request.url.path.startswith("/live/"):
        return PlainTextResponse("login required / 请先登录", status_code=401)
    return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/')}", status_code=303)


async def page_error(request: Request, exc: PageError) -> Response:
    if request.url.path.startswith("/live/"):
        return PlainTextResponse(str(exc.status), status_code=exc.status)
    lang = exc.viewer.lang if exc.viewer else request_lang(request)
    name = "forbidden" if exc.status == 403 else "not_found"
    return render(request, "error.html", lang, exc.viewer, status=exc.status, kind=name)
