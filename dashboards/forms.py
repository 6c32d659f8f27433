"""Forms: the origin check of every POST, the flash message carried across the redirect after it, and text
cleaning."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from core.errors import StewardError
from dashboards import i18n
from dashboards.i18n import Lang
from dashboards.render import render
from dashboards.viewer import PageError, Viewer, safe_next

FLASH_COOKIE = "steward_flash"


def same_origin(request: Request, viewer: Viewer) -> None:
    """Refuse a form posted from another site (defence in depth behind SameSite=Lax and the CSP)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise PageError(403, viewer)
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise PageError(403, viewer)


def _back(target: str, kind: str, message: str) -> RedirectResponse:
    response = RedirectResponse(safe_next(target), status_code=303)
    value = quote(json.dumps({"k": kind, "m": message[:400]}, ensure_ascii=False), safe="")
    response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="lax", path="/")
    return response


def flash_ok(target: str, key: str) -> RedirectResponse:
    return _back(target, "ok", key)


def flash_error(target: str, exc: StewardError | str) -> RedirectResponse:
    return _back(target, "error", exc.message if isinstance(exc, StewardError) else exc)


def _flash(request: Request, lang: Lang) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
        kind, message = str(data["k"]), str(data["m"])
    except (ValueError, KeyError, TypeError):
        return None
    if kind == "ok":
        return {"kind": "ok", "text": i18n.t(message, lang)}
    return {"kind": "error", "text": error_text(message, lang)}


def error_text(message: str, lang: Lang) -> str:
    """A refusal for people: "!key" is a UI string; domain messages read "English / 中文" (the viewer's half)."""
    if message.startswith("!"):
        return i18n.t(message[1:], lang)
    if " / " in message:
        en, _, zh = message.partition(" / ")
        return en if lang == "en" else zh
    return message


# A page script acting in place (the alarm banner's 确认 / 消除) sends this header: it wants the outcome, not the
# redirect and flash message a form post gets.
IN_PLACE_HEADER = "x-steward-in-place"


def in_place(request: Request) -> bool:
    return request.headers.get(IN_PLACE_HEADER) == "1"


def form_page(request: Request, name: str, viewer: Viewer, **extra: Any) -> HTMLResponse:
    """A page with forms: renders the flash message of the last POST and clears it."""
    response = render(request, name, viewer.lang, viewer, flash=_flash(request, viewer.lang), **extra)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def clean_text(value: str, what: str) -> str:
    if "\x00" in value:
        raise StewardError(f"!{what}", 422)
    return value.strip()
