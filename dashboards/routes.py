"""The staff dashboards: server-rendered pages (Jinja2), a login form, a language toggle and SSE live updates.

Mounted into the API by ``api.app.create_app`` through ``mount_dashboards(app)``. Pages use the API's
session cookie, estate scoping (404 for an estate that is not yours, whether or not it exists) and roles
(equipment pages for admin / engineer / viewer, the ingest page for admin / engineer, like the JSON API).
No page is in the OpenAPI document: they are for people, not integrations.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from accounts import policy
from accounts import service as accounts
from accounts.const import EQUIPMENT_ROLES, SESSION_TTL, Role
from api.deps import SESSION_COOKIE, SessionDep
from core import clock
from dashboards import data, i18n
from dashboards.i18n import Lang
from dashboards.live import LiveHub, connect_kwargs, event_stream
from facility import series
from storage.models import Device, DeviceState, Estate, Room, StaffUser

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
LANG_COOKIE = "lang"
INGEST_ROLES = policy.OPERATORS  # as the JSON API's operations routes
# Scripts only from our own origin (page data travels as JSON, never inline script); ECharts styles
# its tooltips inline, hence style-src 'unsafe-inline'.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the API's lifespan (merged by include_router), so app.state.engine exists already."""
    hub = LiveHub(connect_kwargs(app.state.engine))
    app.state.live = hub
    hub.start()
    try:
        yield
    finally:
        await hub.stop()


router = APIRouter(include_in_schema=False, lifespan=_lifespan)


def mount_dashboards(app: FastAPI) -> None:
    """Add the pages, the live streams, /static and the LISTEN hub's lifespan to the API application."""
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(router)
    app.include_router(__import__("dashboards.alarm_pages", fromlist=["router"]).router)  # alarms, tickets, rounds
    app.add_exception_handler(LoginRequired, _login_redirect)  # type: ignore[arg-type]
    app.add_exception_handler(PageError, _page_error)  # type: ignore[arg-type]


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

    @classmethod
    def of(cls, session: Session, user: StaffUser, lang: Lang) -> Viewer:
        return cls(
            username=user.username,
            display_name=user.display_name or user.username,
            role=Role(user.role),
            all_estates=user.all_estates,
            lang=lang,
            visible=frozenset(accounts.visible_estate_ids(session, user)),
        )

    @property
    def sees_equipment(self) -> bool:
        return self.role in EQUIPMENT_ROLES

    @property
    def sees_ingest(self) -> bool:
        return self.role in INGEST_ROLES


def request_lang(request: Request) -> Lang:
    return i18n.norm_lang(request.cookies.get(LANG_COOKIE))


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    cookie = request.cookies.get(SESSION_COOKIE)
    user = accounts.user_for_session(session, cookie) if cookie else None
    if user is None:
        raise LoginRequired(_here(request))
    return Viewer.of(session, user, request_lang(request))


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def equipment_viewer(viewer: ViewerDep) -> Viewer:
    if not viewer.sees_equipment:
        raise PageError(403, viewer)
    return viewer


def ingest_viewer(viewer: ViewerDep) -> Viewer:
    if not viewer.sees_ingest:
        raise PageError(403, viewer)
    return viewer


EquipmentViewer = Annotated[Viewer, Depends(equipment_viewer)]
IngestViewer = Annotated[Viewer, Depends(ingest_viewer)]


def safe_next(value: str | None) -> str:
    """Only a path on this site: never //evil.example or https://evil.example (open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


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
        "here": _here(request),
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


async def _login_redirect(request: Request, exc: LoginRequired) -> Response:
    if request.url.path.startswith("/live/"):
        return PlainTextResponse("login required / 请先登录", status_code=401)
    return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/')}", status_code=303)


async def _page_error(request: Request, exc: PageError) -> Response:
    if request.url.path.startswith("/live/"):
        return PlainTextResponse(str(exc.status), status_code=exc.status)
    lang = exc.viewer.lang if exc.viewer else request_lang(request)
    name = "forbidden" if exc.status == 403 else "not_found"
    return render(request, "error.html", lang, exc.viewer, status=exc.status, kind=name)


# --- login, logout, language ---------------------------------------------------------------------------


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
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        # Always Secure in production (behind a TLS proxy uvicorn sees http); locally only over https.
        secure=request.app.state.settings.env == "production" or request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    if cookie := request.cookies.get(SESSION_COOKIE):
        accounts.end_web_session(session, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/lang/{code}")
def switch_lang(code: str, next: str = "/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, i18n.norm_lang(code), max_age=365 * 86400, samesite="lax")
    return response


# --- pages ----------------------------------------------------------------------------------------------


def _estate(session: Session, code: str, viewer: Viewer) -> Estate:
    estate = session.scalar(select(Estate).where(Estate.code == code))
    if estate is None or estate.id not in viewer.visible:
        raise PageError(404, viewer)
    return estate


def _room(session: Session, room_id: int, viewer: Viewer) -> tuple[Room, Estate]:
    room = session.get(Room, room_id)
    if room is None or room.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, room.estate_id)
    assert estate is not None  # the foreign key guarantees it
    return room, estate


def _device(session: Session, device_id: int, viewer: Viewer) -> tuple[Device, Estate]:
    device = session.get(Device, device_id)
    if device is None or device.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    return device, estate


def _bucket_note(bucket: series.Bucket, lang: Lang) -> str:
    return i18n.t("bucket_note", lang, bucket=i18n.lookup(i18n.BUCKET_NAMES, bucket.value, lang))


def _viewer_tz(session: Session, viewer: Viewer) -> ZoneInfo:
    """For pages that span estates: the zone of the viewer's estates (they share one in practice)."""
    zones = sorted(set(session.scalars(select(Estate.timezone).where(Estate.id.in_(viewer.visible)))))
    return i18n.zone(zones[0] if zones else None)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    estates = data.visible_estates(session, viewer.visible)
    if len(estates) == 1 and viewer.sees_equipment:
        # Most staff work at one estate: take them straight to it rather than to a list of one.
        return RedirectResponse(f"/estates/{quote(estates[0].code)}", status_code=303)
    summaries = (
        [data.estate_summary(session, e, viewer.lang, detail=False) for e in estates] if viewer.sees_equipment else []
    )
    return render(request, "home.html", viewer.lang, viewer, estates=estates, summaries=summaries)


@router.get("/estates/{code}", response_class=HTMLResponse)
def estate_page(code: str, request: Request, session: SessionDep, viewer: EquipmentViewer) -> HTMLResponse:
    estate = _estate(session, code, viewer)
    summary = data.estate_summary(session, estate, viewer.lang)
    return render(
        request,
        "estate.html",
        viewer.lang,
        viewer,
        estate=estate,
        s=summary,
        page_data=page_data(viewer.lang, f"/live/estates/{estate.code}", "html"),
    )


@router.get("/rooms/{room_id}", response_class=HTMLResponse)
def room_page(room_id: int, request: Request, session: SessionDep, viewer: EquipmentViewer) -> HTMLResponse:
    room, estate = _room(session, room_id, viewer)
    tz = i18n.zone(estate.timezone)
    devices = data.room_devices(session, room)
    views = data.device_views(session, devices, viewer.lang, tz)
    span, bucket = data.ROOM_RANGE
    charts = data.charts(session, devices, viewer.lang, tz, span=span, bucket=bucket)
    return render(
        request,
        "room.html",
        viewer.lang,
        viewer,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang),
        room_kind=i18n.lookup(i18n.ROOM_KINDS, room.kind, viewer.lang, fallback=room.kind),
        devices=views,
        charts=charts,
        tz=tz.key,
        page_data=page_data(
            viewer.lang,
            f"/live/rooms/{room.id}",
            "values",
            charts=[c for cs in charts.values() for c in cs],
            span_ms=int(span.total_seconds() * 1000),
            x_min=i18n.chart_ms(clock.now() - span, tz),
            append=True,
        ),
        bucket_note=_bucket_note(bucket, viewer.lang),
    )


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    device_id: int,
    request: Request,
    session: SessionDep,
    viewer: EquipmentViewer,
    range_: Annotated[str, Query(alias="range", pattern="^(24h|7d|30d)$")] = "24h",
) -> HTMLResponse:
    device, estate = _device(session, device_id, viewer)
    tz = i18n.zone(estate.timezone)
    room = session.get(Room, device.room_id) if device.room_id else None
    view = data.device_views(session, [device], viewer.lang, tz)[0]
    span, bucket = data.RANGES[range_]
    charts = data.charts(session, [device], viewer.lang, tz, span=span, bucket=bucket)[device.id]
    state = session.get(DeviceState, device.id)
    readings = data.meter_readings(session, device, tz) if device.kind.endswith("_meter") else None
    return render(
        request,
        "device.html",
        viewer.lang,
        viewer,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang) if room else "",
        device=device,
        d=view,
        state=state,
        charts=charts,
        readings=readings,
        range=range_,
        tz=tz.key,
        page_data=page_data(
            viewer.lang,
            f"/live/devices/{device.id}",
            "values",
            charts=charts,
            span_ms=int(span.total_seconds() * 1000),
            x_min=i18n.chart_ms(clock.now() - span, tz),
            # Raw live values only sit well on the 24 h chart; hourly or daily averages wait for a reload.
            append=range_ == "24h",
        ),
        installed=device.installed_at.astimezone(tz).strftime("%Y-%m-%d") if device.installed_at else "",
        bucket_note=_bucket_note(bucket, viewer.lang),
    )


@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(request: Request, session: SessionDep, viewer: IngestViewer) -> HTMLResponse:
    tz = _viewer_tz(session, viewer)
    codes = [e.code for e in data.visible_estates(session, viewer.visible)]
    view = data.ingest_view(session, viewer.all_estates, codes, viewer.lang, tz)
    hub: LiveHub = request.app.state.live
    return render(
        request,
        "ingest.html",
        viewer.lang,
        viewer,
        v=view,
        rates=hub.rates(),
        scoped=not viewer.all_estates,
        tz=tz.key,
        page_data=page_data(viewer.lang, "/live/ingest", "html"),
    )


# --- live streams -------------------------------------------------------------------------------------


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


async def _stream(
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


async def bounded_stream(request: Request, stream: AsyncGenerator[ServerSentEvent, None]) -> Response:
    """The SSE response for ``stream``, unless its user holds MAX_STREAMS_PER_USER live views already (429)."""
    hub: LiveHub = request.app.state.live
    owner = await run_in_threadpool(_stream_owner, request)
    if hub.streams.full(owner):
        await stream.aclose()
        return PlainTextResponse(
            "too many live views open; close some tabs / 实时页面打开过多，请关闭部分标签页", status_code=429
        )
    return EventSourceResponse(hub.streams.bounded(owner, stream), ping=15)


def _can_equipment(v: Viewer) -> bool:
    return v.sees_equipment


@router.get("/live/rooms/{room_id}")
async def live_room(room_id: int, request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        room, estate = _room(session, room_id, viewer)
        return data.live_payload(session, data.room_devices(session, room), viewer.lang, i18n.zone(estate.timezone))

    return await _stream(request, build, _can_equipment, min_interval=1.0)


@router.get("/live/devices/{device_id}")
async def live_device(device_id: int, request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        device, estate = _device(session, device_id, viewer)
        return data.live_payload(session, [device], viewer.lang, i18n.zone(estate.timezone))

    return await _stream(request, build, _can_equipment, min_interval=1.0)


@router.get("/live/estates/{code}")
async def live_estate(code: str, request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        estate = _estate(session, code, viewer)
        summary = data.estate_summary(session, estate, viewer.lang)
        tz = i18n.zone(estate.timezone)
        return {
            "now": i18n.format_time(clock.now(), tz, date=False),
            "html": render_fragment("_estate_body.html", viewer.lang, estate=estate, s=summary),
        }

    # The summary counts a whole estate: refresh it at a calmer pace than a room's values.
    return await _stream(request, build, _can_equipment, min_interval=5.0)


@router.get("/live/ingest")
async def live_ingest(request: Request) -> Response:
    hub: LiveHub = request.app.state.live

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        tz = _viewer_tz(session, viewer)
        codes = [e.code for e in data.visible_estates(session, viewer.visible)]
        view = data.ingest_view(session, viewer.all_estates, codes, viewer.lang, tz)
        return {
            "now": i18n.format_time(clock.now(), tz, date=False),
            "html": render_fragment(
                "_ingest_body.html", viewer.lang, v=view, rates=hub.rates(), scoped=not viewer.all_estates
            ),
        }

    return await _stream(request, build, lambda v: v.sees_ingest, min_interval=2.0)
