"""Rendering: the Jinja2 templates with their common context (language, viewer, navigation), the security
headers of every page, cache-busted static URLs, fragments for the live streams and the page script's data."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from core import clock
from dashboards import i18n
from dashboards.i18n import Lang
from dashboards.viewer import Viewer, can_see, here

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
# Scripts only from our own origin (page data travels as JSON, never inline script); ECharts styles
# its tooltips inline, hence style-src 'unsafe-inline'.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@cache
def asset_version(path: str) -> str:
    """A content hash for cache busting, so a deploy never pairs new HTML with an old cached script."""
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"


def static_url(path: str) -> str:
    return f"/static/{path}?v={asset_version(path)}"


def _context(request: Request, lang: Lang, viewer: Viewer | None, **extra: Any) -> dict[str, Any]:
    def t(key: str, **fmt: object) -> str:
        return i18n.t(key, lang, **fmt)

    return {
        "request": request,
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "here": here(request),
        "t": t,
        "static_url": static_url,
        "viewer": viewer,
        "role_label": i18n.role_label(viewer.role, lang) if viewer else "",
        **extra,
    }


def render(
    request: Request, name: str, lang: Lang, viewer: Viewer | None, *, status: int = 200, **extra: Any
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, name, _context(request, lang, viewer, **extra), status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    # Pages show live data and personal scope: never from a shared or back-button cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def page_data(lang: Lang, live: str, mode: str, **extra: Any) -> dict[str, Any]:
    """What the page script needs: where to listen, how to apply updates, and its few UI strings."""
    return {
        "live": live,
        "mode": mode,
        "lang": lang,
        "strings": {k: i18n.t(f"live_{k}", lang) for k in ("connected", "connecting", "lost")}
        | {"updated": i18n.t("updated_at", lang, time="{time}"), "empty": i18n.t("chart_empty", lang)},
        **extra,
    }


def render_fragment(name: str, lang: Lang, **extra: Any) -> str:
    def t(key: str, **fmt: object) -> str:
        return i18n.t(key, lang, **fmt)

    return TEMPLATES.get_template(name).render(lang=lang, t=t, **extra)


TEMPLATES.env.globals["can_see"] = can_see


def live_page_data(lang: Lang, live: str | None) -> dict[str, Any]:
    """page_data for the alarm and ticket pages (their countdowns tick from ``now_ms``)."""
    data = page_data(lang, live or "", "html", now_ms=int(clock.now().timestamp() * 1000))
    if live is None:
        data["live"] = ""
    return data
