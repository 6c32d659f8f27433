"""What every page module shares: who is looking (Viewer), rendering, page errors, flash messages, form
origin checks, scoped lookups and the live-stream plumbing.

The session cookie itself (name and flags) is ``web.cookies``, shared with the JSON API's login; who may
see or do what is each domain's ``policy.py`` — this module only turns a refusal into the 403 page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from accounts import policy as accounts_policy
from accounts import service as accounts
from accounts.const import EQUIPMENT_ROLES, Role
from alarms import policy as alarms_policy
from billing import policy as billing_policy
from core import clock
from core.errors import StewardError
from dashboards import i18n
from dashboards.i18n import Lang
from dashboards.live import LiveHub, event_stream
from facility import queries
from storage.models import Device, Estate, Room, StaffUser
from tickets import policy as tickets_policy
from web.cookies import SESSION_COOKIE
from web.deps import SessionDep

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
LANG_COOKIE = "lang"
FLASH_COOKIE = "steward_flash"
# Scripts only from our own origin (page data travels as JSON, never inline script); ECharts styles
# its tooltips inline, hence style-src 'unsafe-inline'.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


# --- who is looking -----------------------------------------------------------------------------------


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageError(Exception):
    def __init__(self, status: int, viewer: Viewer | None = None) -> None:
        self.status = status
        self.viewer = viewer


@dataclass(frozen=True)
class Viewer:
    """Who is looking, as plain values: error pages render after the request's session has closed."""

    username: str
    display_name: str
    role: Role
    all_estates: bool
    lang: Lang
    visible: frozenset[int]
    user_id: int

    @classmethod
    def of(cls, session: Session, user: StaffUser, lang: Lang) -> Viewer:
        return cls(
            username=user.username,
            display_name=user.display_name or user.username,
            role=Role(user.role),
            all_estates=user.all_estates,
            lang=lang,
            visible=frozenset(accounts.visible_estate_ids(session, user)),
            user_id=user.id,
        )

    @property
    def sees_equipment(self) -> bool:
        return self.role in EQUIPMENT_ROLES

    @property
    def sees_ingest(self) -> bool:
        return accounts_policy.may_see_operations(self)  # as the JSON API's operations routes


def request_lang(request: Request) -> Lang:
    return i18n.norm_lang(request.cookies.get(LANG_COOKIE))


def here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    cookie = request.cookies.get(SESSION_COOKIE)
    user = accounts.user_for_session(session, cookie) if cookie else None
    if user is None:
        raise LoginRequired(here(request))
    return Viewer.of(session, user, request_lang(request))


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def require(viewer: Viewer, allowed: bool) -> Viewer:
    """The 403 page when the domain's policy said no."""
    if not allowed:
        raise PageError(403, viewer)
    return viewer


def equipment_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, viewer.sees_equipment)


EquipmentViewer = Annotated[Viewer, Depends(equipment_viewer)]


def can_see(viewer: Viewer | None, what: str) -> bool:
    """Navigation: which of these pages the viewer's role opens."""
    if viewer is None:
        return False
    if what == "alarms":
        return alarms_policy.may_read_alarms(viewer.role)
    if what == "tickets":
        return tickets_policy.may_read(viewer.role)
    if what == "billing_notices":
        return billing_policy.may(viewer.role, billing_policy.Action.view_notices)
    return False


def safe_next(value: str | None) -> str:
    """Only a path on this site: never //evil.example or https://evil.example (open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


# --- scoped lookups: 404 for what is missing and for what is not the viewer's alike ----------------------


def estate_of(session: Session, code: str, viewer: Viewer) -> Estate:
    estate = queries.estate_by_code(session, code)
    if estate is None or estate.id not in viewer.visible:
        raise PageError(404, viewer)
    return estate


def room_of(session: Session, room_id: int, viewer: Viewer) -> tuple[Room, Estate]:
    room = session.get(Room, room_id)
    if room is None or room.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, room.estate_id)
    assert estate is not None  # the foreign key guarantees it
    return room, estate


def device_of(session: Session, device_id: int, viewer: Viewer) -> tuple[Device, Estate]:
    device = session.get(Device, device_id)
    if device is None or device.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    return device, estate


def viewer_tz(session: Session, viewer: Viewer) -> ZoneInfo:
    """For pages that span estates: the zone of the viewer's estates (they share one in practice)."""
    zones = queries.estate_timezones(session, viewer.visible)
    return i18n.zone(zones[0] if zones else None)


# --- rendering ------------------------------------------------------------------------------------------


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


# --- forms: origin check, flash messages, redirects ------------------------------------------------------


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
    # Domain messages read "English / 中文": show the viewer's half.
    if message.startswith("!"):
        text = i18n.t(message[1:], lang)
    elif " / " in message:
        en, _, zh = message.partition(" / ")
        text = en if lang == "en" else zh
    else:
        text = message
    return {"kind": "error", "text": text}


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


def live_page_data(lang: Lang, live: str | None) -> dict[str, Any]:
    """page_data for the alarm and ticket pages (their countdowns tick from ``now_ms``)."""
    data = page_data(lang, live or "", "html", now_ms=int(clock.now().timestamp() * 1000))
    if live is None:
        data["live"] = ""
    return data


# --- live streams of snapshots (equipment and ingest pages) -----------------------------------------------


def _live_snapshot(
    request: Request, build: Callable[[Session, Viewer], dict[str, Any]], allowed: Callable[[Viewer], bool]
) -> Callable[[], dict[str, Any] | None]:
    """A snapshot function for one stream: re-checks the login and scope each time, since a stream can
    outlive the session that opened it (12 h) or the user's estate assignment."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    cookie = request.cookies.get(SESSION_COOKIE, "")
    lang = request_lang(request)

    def snapshot() -> dict[str, Any] | None:
        with factory() as session:
            user = accounts.user_for_session(session, cookie) if cookie else None
            if user is None:
                return None
            viewer = Viewer.of(session, user, lang)
            if not allowed(viewer):
                return None
            try:
                return build(session, viewer)
            except PageError:
                return None
            finally:
                session.rollback()  # read-only: nothing to keep

    return snapshot


async def stream(
    request: Request,
    build: Callable[[Session, Viewer], dict[str, Any]],
    allowed: Callable[[Viewer], bool],
    *,
    min_interval: float,
) -> Response:
    snapshot = _live_snapshot(request, build, allowed)
    first = await run_in_threadpool(snapshot)
    if first is None:
        # Refuse before streaming: EventSource then stops retrying and the page reloads into the login.
        return PlainTextResponse("login required or not permitted / 请重新登录", status_code=401)
    hub: LiveHub = request.app.state.live
    return await bounded_stream(request, event_stream(hub, snapshot, min_interval=min_interval, first=first))


def _stream_owner(request: Request) -> str:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        user = accounts.user_for_session(session, request.cookies.get(SESSION_COOKIE, ""))
        return user.username if user is not None else ""


async def bounded_stream(request: Request, events: AsyncGenerator[ServerSentEvent, None]) -> Response:
    """The SSE response for ``events``, unless its user holds MAX_STREAMS_PER_USER live views already (429)."""
    hub: LiveHub = request.app.state.live
    owner = await run_in_threadpool(_stream_owner, request)
    if hub.streams.full(owner):
        await events.aclose()
        return PlainTextResponse(
            "too many live views open; close some tabs / 实时页面打开过多，请关闭部分标签页", status_code=429
        )
    return EventSourceResponse(hub.streams.bounded(owner, events), ping=15)
