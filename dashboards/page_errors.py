"""The exception handlers of the pages: a missing login goes to the login form, a refusal or a missing
object renders the 403/404 page, a page address that does not parse (``/tickets/abc``) the 404 or 422 page (live
streams get plain text, which EventSource can act on; /api keeps its JSON errors)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from dashboards.render import render
from dashboards.viewer import LoginRequired, PageError, request_lang
from web.errors import validation_error_handler


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


def _is_page(request: Request) -> bool:
    """A dashboards page: not the JSON API, not a live stream, and a route the OpenAPI document leaves out."""
    path = request.url.path
    if path.startswith(("/api/", "/live/")) or path == "/api":
        return False
    route = request.scope.get("route")
    return route is not None and not getattr(route, "include_in_schema", True)


async def page_validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A bad path parameter names nothing (404); a bad query or form value is a request the page cannot answer (422).

    Path parameters are checked before the viewer is known, so the page is rendered without one (no data shown)."""
    if not _is_page(request):
        return await validation_error_handler(request, exc)
    in_path = any(error.get("loc", ("",))[0] == "path" for error in exc.errors())
    status, kind = (404, "not_found") if in_path else (422, "bad_request")
    return render(request, "error.html", request_lang(request), None, status=status, kind=kind)
