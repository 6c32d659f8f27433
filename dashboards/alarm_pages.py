"""Pages for alarms, repair tickets and inspection rounds, and their live stream ``/live/tickets``.

- ``/alarms``: the alarm list with filters; acknowledge (确认) and clear with a reason (手动消除).
- ``/tickets``: the ticket board, one column per status, each card with its next SLA countdown.
- ``/tickets/{id}``: one ticket with its clocks, alarms and timeline, and the forms of the next steps.
- ``/rooms/{id}/rounds``: the inspection calendar of an equipment room and the manual-round form.

Who may act follows the JSON API (api/routes/tickets.py, alarms.py, rounds.py); forms are shown only
to those roles and every POST checks again (403 page otherwise). Actions run the domain services in
the request's transaction and redirect back (POST/redirect/GET); a refused step (Conflict, bad input)
rolls back and comes back as a flash message, never a 500.

Forms are protected like the login and logout forms: the session cookie is SameSite=Lax (a cross-site
POST carries no cookie), the CSP allows form actions to 'self' only, and a POST whose Origin is
another site is refused before anything runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from accounts import service as accounts
from accounts.const import EQUIPMENT_ROLES, Role
from alarms import store as alarm_store
from alarms.rounds import record_manual_round
from api.deps import SESSION_COOKIE, SessionDep
from api.routes.tickets import CALLBACK_ROLES, DESK_ROLES, READ_ROLES, WORK_ROLES
from core import clock
from core.errors import NotFound, StewardError
from dashboards import i18n
from dashboards import ticket_data as td
from dashboards.i18n import Lang
from dashboards.live import LiveHub
from dashboards.routes import (
    TEMPLATES,
    PageError,
    Viewer,
    ViewerDep,
    _room,
    _viewer_tz,
    bounded_stream,
    page_data,
    render,
    render_fragment,
    request_lang,
    safe_next,
)
from storage.models import Alarm, Estate, StaffUser, Ticket
from tickets import service as tickets
from tickets.const import CALLBACK_CHANNEL_LABELS, REOPENABLE, CallbackChannel, TicketStatus

router = APIRouter(include_in_schema=False)

ALARM_VIEW_ROLES = EQUIPMENT_ROLES | {Role.steward}  # as GET /api/alarms
ALARM_ACT_ROLES = frozenset({Role.admin, Role.engineer, Role.supervisor, Role.manager})
ROUND_ROLES = frozenset({Role.admin, Role.engineer, Role.supervisor})  # as POST /api/rounds/{id}/manual
FLASH_COOKIE = "steward_flash"
# The live stream checks for changes on every ingest notification and at least this often...
POLL_S = 2.0
# ... but never more often than this (ingest notifies for every batch, many a second under load).
MIN_GAP_S = 0.5
S = TicketStatus


def can_see(viewer: Viewer | None, what: str) -> bool:
    """Navigation: which of these pages the viewer's role opens."""
    if viewer is None:
        return False
    if what == "alarms":
        return viewer.role in ALARM_VIEW_ROLES
    if what == "tickets":
        return viewer.role in READ_ROLES
    return False


TEMPLATES.env.globals["can_see"] = can_see


def _require(viewer: Viewer, roles: frozenset[Role]) -> Viewer:
    if viewer.role not in roles:
        raise PageError(403, viewer)
    return viewer


def alarm_viewer(viewer: ViewerDep) -> Viewer:
    return _require(viewer, ALARM_VIEW_ROLES)


def ticket_viewer(viewer: ViewerDep) -> Viewer:
    return _require(viewer, READ_ROLES)


def equipment_viewer(viewer: ViewerDep) -> Viewer:
    return _require(viewer, EQUIPMENT_ROLES)


AlarmViewer = Annotated[Viewer, Depends(alarm_viewer)]
TicketViewer = Annotated[Viewer, Depends(ticket_viewer)]
EquipmentViewer = Annotated[Viewer, Depends(equipment_viewer)]
EstateFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{0,32}$")]


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


def _ok(target: str, key: str) -> RedirectResponse:
    return _back(target, "ok", key)


def _error(target: str, exc: StewardError | str) -> RedirectResponse:
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


def _page(request: Request, name: str, viewer: Viewer, **extra: Any) -> HTMLResponse:
    response = render(request, name, viewer.lang, viewer, flash=_flash(request, viewer.lang), **extra)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def _user_id(session: Session, viewer: Viewer) -> int:
    uid = session.scalar(select(StaffUser.id).where(StaffUser.username == viewer.username))
    assert uid is not None  # the viewer was just read from a live session
    return int(uid)


def _ticket_page_data(lang: Lang, live: str | None) -> dict[str, Any]:
    data = page_data(lang, live or "", "html", now_ms=int(clock.now().timestamp() * 1000))
    if live is None:
        data["live"] = ""
    return data


# --- alarms ------------------------------------------------------------------------------------------------


def _alarm_filters(estate: str | None, state: str, severity: str | None) -> dict[str, Any]:
    return {"estate": estate or "", "state": state, "severity": severity or ""}


def _query(params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v not in ("", None, False)}
    return ("?" + urlencode(clean)) if clean else ""


@router.get("/alarms", response_class=HTMLResponse)
def alarms_page(
    request: Request,
    session: SessionDep,
    viewer: AlarmViewer,
    estate: EstateFilter = None,
    state: Annotated[str, Query(pattern="^(open|all)$")] = "open",
    severity: Annotated[str | None, Query(pattern="^(warning|alarm|critical)?$")] = None,
) -> HTMLResponse:
    tz = _viewer_tz(session, viewer)
    estates = [(e.code, e.name) for e in session.scalars(select(Estate).where(Estate.id.in_(viewer.visible)))]
    view = td.alarm_list(
        session, viewer.visible, viewer.lang, tz, estate=estate or None, state=state, severity=severity or None
    )
    filters = _alarm_filters(estate, state, severity)
    return _page(
        request,
        "alarms.html",
        viewer,
        v=view,
        f=filters,
        estates=sorted(estates),
        can_act=viewer.role in ALARM_ACT_ROLES,
        here_q=_query(filters),
        tz=tz.key,
        page_data=_ticket_page_data(viewer.lang, "/live/tickets" + _query({"view": "alarms", **filters})),
    )


def _alarm_action(
    request: Request, session: Session, viewer: Viewer, alarm_id: int, back: str, act: Callable[[], None], key: str
) -> Response:
    same_origin(request, viewer)
    if viewer.role not in ALARM_ACT_ROLES:
        raise PageError(403, viewer)
    alarm = session.get(Alarm, alarm_id)
    if alarm is None or alarm.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    target = safe_next(back) if back.startswith("/alarms") else "/alarms"
    try:
        act()
    except StewardError as exc:
        session.rollback()
        return _error(target, exc)
    return _ok(target, key)


@router.post("/alarms/{alarm_id}/acknowledge")
def alarm_acknowledge(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    back: Annotated[str, Form(max_length=2000)] = "/alarms",
) -> Response:
    def act() -> None:
        alarm_store.acknowledge(session.connection(), alarm_id, viewer.username, clock.now())
        accounts.audit(session, viewer.username, "alarm.acknowledge", f"alarm:{alarm_id}", {"via": "dashboards"})

    return _alarm_action(request, session, viewer, alarm_id, back, act, "flash_acknowledged")


@router.post("/alarms/{alarm_id}/clear")
def alarm_clear(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=2000)] = "/alarms",
) -> Response:
    def act() -> None:
        if not reason.strip() or "\x00" in reason:
            raise StewardError("!need_clear_reason", 422)
        alarm_store.clear_manually(session.connection(), alarm_id, viewer.username, clock.now(), reason)
        accounts.audit(session, viewer.username, "alarm.clear", f"alarm:{alarm_id}", {"reason": reason.strip()})

    return _alarm_action(request, session, viewer, alarm_id, back, act, "flash_cleared")


# --- the ticket board --------------------------------------------------------------------------------------


def _board_filters(estate: str | None, closed: bool, mine: bool) -> dict[str, Any]:
    return {"estate": estate or "", "closed": "1" if closed else "", "mine": "1" if mine else ""}


def _board(session: Session, viewer: Viewer, estate: str | None, closed: bool, mine: bool) -> dict[str, Any]:
    tz = _viewer_tz(session, viewer)
    return td.board(
        session,
        viewer.visible,
        viewer.lang,
        tz,
        estate=estate or None,
        closed=closed,
        assignee_id=_user_id(session, viewer) if mine else None,
    )


@router.get("/tickets", response_class=HTMLResponse)
def tickets_page(
    request: Request,
    session: SessionDep,
    viewer: TicketViewer,
    estate: EstateFilter = None,
    closed: bool = False,
    mine: bool = False,
) -> HTMLResponse:
    tz = _viewer_tz(session, viewer)
    estates = [(e.code, e.name) for e in session.scalars(select(Estate).where(Estate.id.in_(viewer.visible)))]
    filters = _board_filters(estate, closed, mine)
    return _page(
        request,
        "tickets.html",
        viewer,
        b=_board(session, viewer, estate, closed, mine),
        f=filters,
        estates=sorted(estates),
        tz=tz.key,
        page_data=_ticket_page_data(viewer.lang, "/live/tickets" + _query({"view": "board", **filters})),
    )


# --- one ticket --------------------------------------------------------------------------------------------


def _visible_ticket(session: Session, ticket_id: int, viewer: Viewer) -> Ticket:
    try:
        t = tickets.get(session, ticket_id)
    except NotFound:
        raise PageError(404, viewer) from None
    if t.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    return t


def permissions(viewer: Viewer, t: Ticket, user_id: int) -> dict[str, bool]:
    """Which step forms this viewer gets on this ticket now (role × status, as the JSON API decides)."""
    role = viewer.role
    status = TicketStatus(t.status)
    works = role in WORK_ROLES and (role != Role.engineer or t.assignee_id == user_id)
    return {
        "dispatch": role in DESK_ROLES and status in (S.received, S.dispatched, S.accepted),
        "accept": works and status == S.dispatched,
        "on_site": works and status in (S.dispatched, S.accepted),
        "resolve": works and status == S.on_site,
        "callback": role in CALLBACK_ROLES and status == S.resolved,
        "close": role in DESK_ROLES
        and (
            status in (S.received, S.dispatched, S.callback_done)
            or (status == S.resolved and not tickets.needs_callback(t))
        ),
        "reopen": role in DESK_ROLES and status in REOPENABLE,
    }


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(ticket_id: int, request: Request, session: SessionDep, viewer: TicketViewer) -> HTMLResponse:
    t = _visible_ticket(session, ticket_id, viewer)
    estate = session.get(Estate, t.estate_id)
    assert estate is not None
    tz = i18n.zone(estate.timezone)
    view = td.ticket_detail(session, t, viewer.role, viewer.lang, tz)
    if t.reporter_name or t.reporter_phone:
        accounts.audit(session, viewer.username, "tickets.read", f"ticket:{t.number}", {"masked": view["masked"]})
    can = permissions(viewer, t, _user_id(session, viewer))
    return _page(
        request,
        "ticket.html",
        viewer,
        tk=view,
        estate=estate,
        can=can,
        any_action=any(can.values()),
        engineers=td.dispatch_candidates(session, t.estate_id, viewer.lang) if can["dispatch"] else [],
        channels=[(c.value, td.label(CALLBACK_CHANNEL_LABELS, c.value, viewer.lang)) for c in CallbackChannel],
        tz=tz.key,
        page_data=_ticket_page_data(viewer.lang, None),
    )


def _step(
    request: Request,
    session: Session,
    viewer: Viewer,
    ticket_id: int,
    roles: frozenset[Role],
    key: str,
    run: Callable[[Ticket, int], None],
    *,
    own_work: bool = False,
) -> Response:
    """One lifecycle step: check origin, role (403) and scope (404), run it; flash the outcome and go back."""
    same_origin(request, viewer)
    if viewer.role not in roles:
        raise PageError(403, viewer)
    t = _visible_ticket(session, ticket_id, viewer)
    uid = _user_id(session, viewer)
    # Engineers act only on the tickets dispatched to them; supervisors and admins may step in.
    if own_work and viewer.role == Role.engineer and t.assignee_id != uid:
        raise PageError(403, viewer)
    target = f"/tickets/{t.id}"
    try:
        run(t, uid)
        session.flush()
    except StewardError as exc:
        session.rollback()
        return _error(target, exc)
    accounts.audit(session, viewer.username, f"tickets.{key}", f"ticket:{t.number}", {"via": "dashboards"})
    return _ok(target, f"flash_{key}")


Text = Annotated[str, Form(max_length=4000)]


def _clean(value: str, what: str) -> str:
    if "\x00" in value:
        raise StewardError(f"!{what}", 422)
    return value.strip()


@router.post("/tickets/{ticket_id}/dispatch")
def ticket_dispatch(
    ticket_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    assignee_id: Annotated[str, Form(max_length=12)] = "",
    note: Text = "",
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        if not assignee_id.isdigit():
            raise StewardError("!need_assignee", 422)
        tickets.dispatch(session, t, int(assignee_id), viewer.username, note=_clean(note, "bad_text"))

    return _step(request, session, viewer, ticket_id, DESK_ROLES, "dispatch", run)


@router.post("/tickets/{ticket_id}/accept")
def ticket_accept(ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.accept(session, t, viewer.username)

    return _step(request, session, viewer, ticket_id, WORK_ROLES, "accept", run, own_work=True)


@router.post("/tickets/{ticket_id}/on-site")
def ticket_on_site(ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.arrive_on_site(session, t, viewer.username)

    return _step(request, session, viewer, ticket_id, WORK_ROLES, "on_site", run, own_work=True)


@router.post("/tickets/{ticket_id}/resolve")
def ticket_resolve(
    ticket_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    work_done: Text = "",
    parts: Text = "",
    labour_minutes: Annotated[str, Form(max_length=12)] = "",
    signoff: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        minutes = labour_minutes.strip()
        if minutes and not minutes.isdigit():
            raise StewardError("!bad_labour", 422)
        tickets.resolve(
            session,
            t,
            viewer.username,
            work_done=_clean(work_done, "bad_text"),
            parts=_clean(parts, "bad_text") or None,
            labour_minutes=int(minutes) if minutes else None,
            resident_signoff={"yes": True, "no": False}.get(signoff),
        )

    return _step(request, session, viewer, ticket_id, WORK_ROLES, "resolve", run, own_work=True)


@router.post("/tickets/{ticket_id}/callback")
def ticket_callback(
    ticket_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    channel: Annotated[str, Form(max_length=16)] = "",
    satisfaction: Annotated[str, Form(max_length=2)] = "",
    note: Text = "",
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        if not satisfaction.isdigit():
            raise StewardError("!need_satisfaction", 422)
        tickets.record_callback(
            session, t, viewer.username, channel, int(satisfaction), _clean(note, "bad_text") or None
        )

    return _step(request, session, viewer, ticket_id, CALLBACK_ROLES, "callback", run)


@router.post("/tickets/{ticket_id}/close")
def ticket_close(
    ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep, reason: Text = ""
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.close(session, t, viewer.username, reason=_clean(reason, "bad_text") or None)

    return _step(request, session, viewer, ticket_id, DESK_ROLES, "close", run)


@router.post("/tickets/{ticket_id}/reopen")
def ticket_reopen(
    ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep, reason: Text = ""
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.reopen(session, t, viewer.username, _clean(reason, "bad_text"))

    return _step(request, session, viewer, ticket_id, DESK_ROLES, "reopen", run)


# --- inspection rounds -------------------------------------------------------------------------------------


@router.get("/rooms/{room_id}/rounds", response_class=HTMLResponse)
def rounds_page(
    room_id: int,
    request: Request,
    session: SessionDep,
    viewer: EquipmentViewer,
    round_: Annotated[int | None, Query(alias="round", ge=1, le=2**62)] = None,
) -> HTMLResponse:
    room, estate = _room(session, room_id, viewer)
    tz = i18n.zone(estate.timezone)
    cal = td.rounds_calendar(session, room, viewer.lang, tz, selected=round_)
    return _page(
        request,
        "rounds.html",
        viewer,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang),
        cal=cal,
        can_record=viewer.role in ROUND_ROLES,
        now_local=clock.now().astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
        tz=tz.key,
    )


def _readings(text_: str) -> dict[str, float | str]:
    """ "室内温度=29.5" lines → {"室内温度": 29.5}; a value that is not a number stays text."""
    out: dict[str, float | str] = {}
    for line in text_.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            name, sep, value = line.partition("：") if "：" in line else line.partition(":")
        if not sep or not name.strip():
            raise StewardError("!bad_readings", 422)
        try:
            number = float(value.strip())
            out[name.strip()] = number if math.isfinite(number) else value.strip()
        except ValueError:
            out[name.strip()] = value.strip()
    return out


@router.post("/rooms/{room_id}/rounds/{round_id}/manual")
def round_manual(
    room_id: int,
    round_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    readings: Annotated[str, Form(max_length=8000)] = "",
    notes: Text = "",
    performed_at: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    same_origin(request, viewer)
    if viewer.role not in ROUND_ROLES:
        raise PageError(403, viewer)
    room, estate = _room(session, room_id, viewer)
    where = td.round_room_id(session, round_id)
    if where is None or where[0] != room.id:
        raise PageError(404, viewer)
    target = f"/rooms/{room.id}/rounds?round={round_id}"
    tz = i18n.zone(estate.timezone)
    try:
        when = clock.now()
        if performed_at.strip():
            try:
                when = datetime.fromisoformat(performed_at.strip()).replace(tzinfo=tz)
            except ValueError:
                raise StewardError("!bad_time", 422) from None
        record_manual_round(
            session,
            round_id,
            performed_by=viewer.username,
            performed_at=when,
            readings=_readings(readings),
            notes=_clean(notes, "bad_text") or None,
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return _error(target, exc)
    accounts.audit(session, viewer.username, "rounds.manual", f"round:{round_id}", {"via": "dashboards"})
    return _ok(target, "flash_round_done")


# --- live: /live/tickets -----------------------------------------------------------------------------------


class _Watch:
    """One stream's view: re-checks the login and scope at every look (a stream outlives its session
    and the user's estate assignment) and renders the fragment only when the change mark moved."""

    def __init__(
        self, request: Request, build: Callable[[Session, Viewer], dict[str, Any]], allowed: Callable[[Viewer], bool]
    ) -> None:
        self.factory: sessionmaker[Session] = request.app.state.sessionmaker
        self.cookie = request.cookies.get(SESSION_COOKIE, "")
        self.lang = request_lang(request)
        self.build, self.allowed = build, allowed
        self.mark = td.ChangeMark()
        self.last: tuple[int, ...] | None = None

    def look(self) -> dict[str, Any] | None:
        """The new payload, {} when nothing changed, None when the login ended or no longer permits it."""
        with self.factory() as session:
            try:
                user = accounts.user_for_session(session, self.cookie) if self.cookie else None
                if user is None:
                    return None
                viewer = Viewer.of(session, user, self.lang)
                if not self.allowed(viewer):
                    return None
                mark = (*self.mark.read(session, viewer.visible), len(viewer.visible))
                if mark == self.last:
                    return {}
                self.last = mark
                return self.build(session, viewer)
            except PageError:
                return None
            finally:
                session.rollback()  # read-only


def _sse(data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event="update", data=json.dumps(data, ensure_ascii=False, separators=(",", ":")))


async def change_stream(hub: LiveHub, watch: _Watch, first: dict[str, Any]) -> AsyncGenerator[ServerSentEvent, None]:
    """``update`` now, then again whenever the change mark moves: looked at after each ingest
    notification (alarms are raised inside ingest batches) and every POLL_S (ticket steps come from
    requests and worker jobs, which do not notify)."""
    sub = hub.subscribe()
    last = time.monotonic()
    try:
        yield _sse(first)
        while not sub.closed:
            await sub.wait(POLL_S)
            gap = MIN_GAP_S - (time.monotonic() - last)
            if gap > 0:
                await asyncio.sleep(gap)
            last = time.monotonic()
            data = await run_in_threadpool(watch.look)
            if data is None:
                yield ServerSentEvent(event="expired", data="{}")
                return
            if data:
                yield _sse(data)
    finally:
        hub.unsubscribe(sub)


@router.get("/live/tickets")
async def live_tickets(
    request: Request,
    view: Annotated[str, Query(pattern="^(board|alarms)$")] = "board",
    estate: EstateFilter = None,
    closed: bool = False,
    mine: bool = False,
    state: Annotated[str, Query(pattern="^(open|all)$")] = "open",
    severity: Annotated[str | None, Query(pattern="^(warning|alarm|critical)?$")] = None,
) -> Response:
    """The board's or the alarm list's body, re-rendered when tickets or alarms of the viewer's estates change."""

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        tz = _viewer_tz(session, viewer)
        if view == "alarms":
            v = td.alarm_list(
                session, viewer.visible, viewer.lang, tz, estate=estate or None, state=state, severity=severity or None
            )
            filters = _alarm_filters(estate, state, severity)
            html = render_fragment(
                "_alarms_body.html",
                viewer.lang,
                v=v,
                f=filters,
                here_q=_query(filters),
                can_act=viewer.role in ALARM_ACT_ROLES,
            )
            return {"now": v["now"], "html": html}
        b = _board(session, viewer, estate, closed, mine)
        return {"now": b["now"], "html": render_fragment("_tickets_board.html", viewer.lang, b=b)}

    roles = ALARM_VIEW_ROLES if view == "alarms" else READ_ROLES
    watch = _Watch(request, build, lambda v: v.role in roles)
    first = await run_in_threadpool(watch.look)
    if not first:
        return PlainTextResponse("login required or not permitted / 请重新登录", status_code=401)
    hub: LiveHub = request.app.state.live
    return await bounded_stream(request, change_stream(hub, watch, first))
