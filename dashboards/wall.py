"""The wall display (大屏) of an estate's control room: ``/wall?estate=`` at 1920×1080, rotating through the estate
overview and its equipment rooms under an alarm strip, updated live over the pages' SSE machinery.

The screen logs in once: at ``/wall/connect`` someone enters a display token (accounts/display.py, issued by the
project manager or an admin at ``/wall/tokens``); its cookie keeps the screen in until the token is revoked or
expires, with no login prompt in between. A display token reads its estate's wall and nothing else — every other
page and the JSON API ignore its cookie. Staff with the equipment pages may open the wall of their estates too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from accounts import display
from accounts import policy as accounts_policy
from accounts import service as accounts
from core import clock
from core.errors import StewardError
from dashboards import i18n, wall_view
from dashboards.forms import form_page, same_origin
from dashboards.i18n import Lang
from dashboards.live import LiveHub, event_stream
from dashboards.lookups import estate_of
from dashboards.render import page_data, render, render_fragment
from dashboards.streaming import bounded_stream
from dashboards.viewer import PageError, Viewer, ViewerDep, request_lang, require
from facility import queries as facility
from facility.queries import visible_estates
from storage.models import DisplayToken, Estate
from web.cookies import DISPLAY_COOKIE, SESSION_COOKIE, clear_display_cookie, set_display_cookie
from web.deps import SessionDep
from web.replica import fresh_read_session

router = APIRouter(include_in_schema=False)
EstateParam = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")]
DEFAULT_ROTATE_S = 15
WALL_MIN_INTERVAL_S = 2.0  # the live stream re-renders the slides at most this often


@dataclass(frozen=True)
class WallAccess:
    """Who looks at a wall and which estate it shows: a display token's screen, or a staff member."""

    estate: Estate
    owner: str  # whose stream limit a live view counts against


def _staff(session: Session, request: Request) -> Viewer | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    user = accounts.user_for_session(session, cookie) if cookie else None
    return Viewer.of(session, user, request_lang(request)) if user is not None else None


def wall_access(session: Session, request: Request, code: str | None) -> WallAccess | None:
    """The wall this request may see, or None (no credential, or a revoked or expired token: connect again).

    A display token opens only its own estate: naming another is a 404 page, like a staff member's."""
    secret = request.cookies.get(DISPLAY_COOKIE)
    screen = display.display_for(session, secret) if secret else None
    if screen is not None:
        if code and code != screen.estate_code:
            raise PageError(404)
        estate = session.get(Estate, screen.estate_id)
        assert estate is not None  # the foreign key
        return WallAccess(estate, f"display:{screen.token_id}")
    viewer = _staff(session, request)
    if viewer is None:
        return None
    require(viewer, viewer.sees_equipment)
    if code:
        return WallAccess(estate_of(session, code, viewer), viewer.username)
    estates = visible_estates(session, viewer.visible)
    if len(estates) != 1:
        raise PageError(404, viewer)
    return WallAccess(estates[0], viewer.username)


def _connect_url(code: str | None) -> str:
    return "/wall/connect" + (f"?estate={code}" if code else "")


@router.get("/wall", response_class=HTMLResponse)
def wall_page(
    request: Request,
    session: SessionDep,
    estate: EstateParam = None,
    every: Annotated[int, Query(ge=5, le=300, description="seconds per slide")] = DEFAULT_ROTATE_S,
) -> Response:
    access = wall_access(session, request, estate)
    if access is None:
        return RedirectResponse(_connect_url(estate), status_code=303)
    lang = request_lang(request)
    code = access.estate.code
    return render(
        request,
        "wall/wall.html",
        lang,
        None,
        **wall_view.slides(session, access.estate, lang),
        page_data=page_data(lang, f"/live/wall?estate={code}", "html", rotate_s=every, wall=True),
        rotate_s=every,
    )


def _connect_page(request: Request, lang: Lang, *, code: str | None, error: str | None, status: int = 200) -> Response:
    return render(request, "wall/connect.html", lang, None, status=status, estate_code=code or "", error=error)


@router.get("/wall/connect", response_class=HTMLResponse)
def connect_page(request: Request, session: SessionDep, estate: EstateParam = None) -> Response:
    secret = request.cookies.get(DISPLAY_COOKIE)
    screen = display.display_for(session, secret) if secret else None
    if screen is not None:
        return RedirectResponse(f"/wall?estate={screen.estate_code}", status_code=303)
    # A cookie that no longer opens anything (revoked, expired) says so once, then is dropped.
    error = "wall_token_ended" if secret else None
    response = _connect_page(request, request_lang(request), code=estate, error=error)
    if secret:
        clear_display_cookie(response)
    return response


@router.post("/wall/connect")
def connect(request: Request, session: SessionDep, token: Annotated[str, Form(max_length=128)] = "") -> Response:
    """The screen's one login: a display token becomes its cookie (the secret is never shown again)."""
    lang = request_lang(request)
    secret = token.strip()
    screen = display.display_for(session, secret) if secret else None
    if screen is None:
        return _connect_page(request, lang, code=None, error="wall_token_bad", status=401)
    row = session.get(DisplayToken, screen.token_id)
    assert row is not None
    client = request.client.host if request.client else ""
    accounts.audit(
        session, f"display:{screen.token_id}", "display.connect", f"display_token:{screen.token_id}", {"client": client}
    )
    response = RedirectResponse(f"/wall?estate={screen.estate_code}", status_code=303)
    set_display_cookie(response, request, secret, int((row.expires_at - clock.now()).total_seconds()))
    return response


@router.get("/live/wall")
async def live_wall(request: Request, estate: EstateParam = None) -> Response:
    """The wall's slides, re-rendered after each ingest notification (every WALL_MIN_INTERVAL_S at most) and
    re-checked each time: a revoked token or an ended login ends the stream (the page then reloads into
    /wall/connect)."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    lang = request_lang(request)
    owner: list[str] = []

    def snapshot() -> dict[str, Any] | None:
        with factory() as session:
            try:
                access = wall_access(session, request, estate)
                if access is None:
                    return None
                session.commit()  # the token's last-used stamp
                if not owner:
                    owner.append(access.owner)
                with fresh_read_session(request.app.state, session) as reads:
                    view = wall_view.slides(reads, access.estate, lang)
                return {"now": view["now"], "html": render_fragment("wall/_slides.html", lang, **view)}
            except PageError:
                return None
            finally:
                session.rollback()

    first = await run_in_threadpool(snapshot)
    if first is None:
        return PlainTextResponse("display not connected or not permitted / 大屏未连接或无权限", status_code=401)
    hub: LiveHub = request.app.state.live
    # The pace of the estate overview (rooms.ESTATE_MIN_INTERVAL_S): the control room's screen is where a new alarm
    # must show first, within 5 s of its commit (issue 15), and a wall is one or two screens, not many clients.
    events = event_stream(hub, snapshot, min_interval=WALL_MIN_INTERVAL_S, first=first)
    return await bounded_stream(request, events, owner=owner[0])


# --- display tokens: issued and revoked by the project manager or an admin -------------------------------------


def _token_admin(viewer: Viewer) -> Viewer:
    return require(viewer, accounts_policy.may_manage_displays(viewer.role))


def _tokens_view(session: Session, estate: Estate, lang: Lang) -> list[dict[str, Any]]:
    tz = i18n.zone(estate.timezone)
    now = clock.now()
    return [
        {
            "id": t.id,
            "name": t.name,
            "created_by": t.created_by,
            "created_at": i18n.format_time(t.created_at, tz, seconds=False),
            "expires_at": i18n.format_time(t.expires_at, tz, seconds=False),
            "last_used_at": i18n.format_time(t.last_used_at, tz, seconds=False) if t.last_used_at else "—",
            "revoked_at": i18n.format_time(t.revoked_at, tz, seconds=False) if t.revoked_at else "",
            "live": display.is_live(t, now),
        }
        for t in display.tokens_of(session, estate.id)
    ]


def _tokens_estate(session: Session, viewer: Viewer, code: str | None) -> Estate:
    if code:
        return estate_of(session, code, viewer)
    estates = visible_estates(session, viewer.visible)
    if len(estates) != 1:
        raise PageError(404, viewer)
    return estates[0]


def _tokens_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    estate: Estate,
    *,
    secret: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    response = form_page(
        request,
        "wall/tokens.html",
        viewer,
        estate=estate,
        tokens=_tokens_view(session, estate, viewer.lang),
        new_secret=secret,
        error=error,
        rooms=len(facility.estate_rooms(session, estate.id)),
    )
    response.status_code = status
    return response


@router.get("/wall/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, session: SessionDep, viewer: ViewerDep, estate: EstateParam = None) -> HTMLResponse:
    _token_admin(viewer)
    return _tokens_page(request, session, viewer, _tokens_estate(session, viewer, estate))


@router.post("/wall/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    """Issue a token and show its secret on this response only (never stored, never shown again)."""
    same_origin(request, viewer)
    _token_admin(viewer)
    place = estate_of(session, estate, viewer)
    try:
        secret, row = display.issue(session, place, name=name, created_by=viewer.username)
    except StewardError as exc:
        session.rollback()
        en, _, zh = exc.message.partition(" / ")
        message = en if viewer.lang == "en" or not zh else zh
        return _tokens_page(request, session, viewer, place, error=message, status=exc.status_code)
    accounts.audit(session, viewer.username, "display_token.create", f"display_token:{row.id}", {"via": "dashboards"})
    return _tokens_page(request, session, viewer, place, secret=secret, status=201)


@router.post("/wall/tokens/{token_id}/revoke")
def revoke_token(token_id: int, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    same_origin(request, viewer)
    _token_admin(viewer)
    try:
        row = display.token_in(session, token_id, viewer.visible)
    except StewardError:
        raise PageError(404, viewer) from None
    display.revoke(session, row, viewer.username)
    accounts.audit(session, viewer.username, "display_token.revoke", f"display_token:{row.id}", {"via": "dashboards"})
    place = session.get(Estate, row.estate_id)
    assert place is not None
    return RedirectResponse(f"/wall/tokens?estate={place.code}", status_code=303)
