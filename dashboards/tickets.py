"""The ticket board (``/tickets``), one ticket (``/tickets/{id}``) with the forms of its next steps, the step
POSTs, and the live stream ``/live/tickets`` (the board's or the alarm list's body).

Which step forms a viewer gets, and which posted steps are refused with the 403 page, is
``tickets.policy`` — the same rules the JSON API applies. Steps run the domain services in the request's
transaction and redirect back (POST/redirect/GET); a step the ticket's status does not admit rolls back
and comes back as a flash message, never a 500.

Forms are protected like the login and logout forms: the session cookie is SameSite=Lax (a cross-site
POST carries no cookie), the CSP allows form actions to 'self' only, and a POST whose Origin is
another site is refused before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import policy as alarms_policy
from alarms.queries import ChangeMark
from core.errors import NotFound, StewardError
from dashboards import i18n
from dashboards import tickets_view as td
from dashboards.alarms import EstateFilter, SeverityFilter, StateFilter, alarms_fragment, query_string
from dashboards.forms import clean_text, flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import viewer_tz
from dashboards.render import live_page_data, render_fragment
from dashboards.streaming import marked_stream
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility.queries import visible_estates
from storage.models import Estate, Ticket
from tickets import policy
from tickets import service as tickets
from tickets.const import CALLBACK_CHANNEL_LABELS, CallbackChannel
from tickets.policy import Step
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)

# The live stream checks for changes on every ingest notification and at least this often...
POLL_S = 2.0
# ... but never more often than this (ingest notifies for every batch, many a second under load).
MIN_GAP_S = 0.5


def ticket_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, policy.may_read(viewer.role))


TicketViewer = Annotated[Viewer, Depends(ticket_viewer)]


# --- the ticket board --------------------------------------------------------------------------------------


def _board_filters(estate: str | None, closed: bool, mine: bool) -> dict[str, Any]:
    return {"estate": estate or "", "closed": "1" if closed else "", "mine": "1" if mine else ""}


def _board(session: Session, viewer: Viewer, estate: str | None, closed: bool, mine: bool) -> dict[str, Any]:
    tz = viewer_tz(session, viewer)
    return td.board(
        session,
        viewer.visible,
        viewer.lang,
        tz,
        estate=estate or None,
        closed=closed,
        assignee_id=viewer.user_id if mine else None,
    )


@router.get("/tickets", response_class=HTMLResponse)
def tickets_page(
    request: Request,
    session: ReadSessionDep,
    viewer: TicketViewer,
    estate: EstateFilter = None,
    closed: bool = False,
    mine: bool = False,
) -> HTMLResponse:
    tz = viewer_tz(session, viewer)
    estates = [(e.code, e.name) for e in visible_estates(session, viewer.visible)]
    filters = _board_filters(estate, closed, mine)
    return form_page(
        request,
        "tickets/tickets.html",
        viewer,
        b=_board(session, viewer, estate, closed, mine),
        f=filters,
        estates=sorted(estates),
        tz=tz.key,
        page_data=live_page_data(viewer.lang, "/live/tickets" + query_string({"view": "board", **filters})),
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


def permissions(viewer: Viewer, t: Ticket, uid: int) -> dict[str, bool]:
    """Which step forms this viewer gets on this ticket now: ``tickets.policy.allowed_steps``, as the API decides."""
    return policy.allowed_steps(viewer.role, uid, t)


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(ticket_id: int, request: Request, session: SessionDep, viewer: TicketViewer) -> HTMLResponse:
    t = _visible_ticket(session, ticket_id, viewer)
    estate = session.get(Estate, t.estate_id)
    assert estate is not None
    tz = i18n.zone(estate.timezone)
    view = td.ticket_detail(session, t, viewer.role, viewer.lang, tz)
    if t.reporter_name or t.reporter_phone:
        accounts.audit(session, viewer.username, "tickets.read", f"ticket:{t.number}", {"masked": view["masked"]})
    can = permissions(viewer, t, viewer.user_id)
    return form_page(
        request,
        "tickets/ticket.html",
        viewer,
        tk=view,
        estate=estate,
        can=can,
        any_action=any(can.values()),
        engineers=td.dispatch_candidates(session, t.estate_id, viewer.lang) if can["dispatch"] else [],
        channels=[(c.value, i18n.label(CALLBACK_CHANNEL_LABELS, c.value, viewer.lang)) for c in CallbackChannel],
        tz=tz.key,
        page_data=live_page_data(viewer.lang, None),
    )


def _step(
    request: Request,
    session: Session,
    viewer: Viewer,
    ticket_id: int,
    step: Step,
    run: Callable[[Ticket, int], None],
) -> Response:
    """One lifecycle step: check origin, role (403) and scope (404), run it; flash the outcome and go back."""
    same_origin(request, viewer)
    require(viewer, policy.role_may(viewer.role, step))
    t = _visible_ticket(session, ticket_id, viewer)
    uid = viewer.user_id
    # Engineers act only on the tickets dispatched to them; supervisors and admins may step in.
    require(viewer, policy.may_act(viewer.role, uid, t, step))
    target = f"/tickets/{t.id}"
    try:
        run(t, uid)
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    key = step.value
    accounts.audit(session, viewer.username, f"tickets.{key}", f"ticket:{t.number}", {"via": "dashboards"})
    return flash_ok(target, f"flash_{key}")


Text = Annotated[str, Form(max_length=4000)]


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
        tickets.dispatch(session, t, int(assignee_id), viewer.username, note=clean_text(note, "bad_text"))

    return _step(request, session, viewer, ticket_id, Step.dispatch, run)


@router.post("/tickets/{ticket_id}/accept")
def ticket_accept(ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.accept(session, t, viewer.username)

    return _step(request, session, viewer, ticket_id, Step.accept, run)


@router.post("/tickets/{ticket_id}/on-site")
def ticket_on_site(ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.arrive_on_site(session, t, viewer.username)

    return _step(request, session, viewer, ticket_id, Step.on_site, run)


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
            work_done=clean_text(work_done, "bad_text"),
            parts=clean_text(parts, "bad_text") or None,
            labour_minutes=int(minutes) if minutes else None,
            resident_signoff={"yes": True, "no": False}.get(signoff),
        )

    return _step(request, session, viewer, ticket_id, Step.resolve, run)


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
            session, t, viewer.username, channel, int(satisfaction), clean_text(note, "bad_text") or None
        )

    return _step(request, session, viewer, ticket_id, Step.callback, run)


@router.post("/tickets/{ticket_id}/close")
def ticket_close(
    ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep, reason: Text = ""
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.close(session, t, viewer.username, reason=clean_text(reason, "bad_text") or None)

    return _step(request, session, viewer, ticket_id, Step.close, run)


@router.post("/tickets/{ticket_id}/reopen")
def ticket_reopen(
    ticket_id: int, request: Request, session: SessionDep, viewer: ViewerDep, reason: Text = ""
) -> Response:
    def run(t: Ticket, uid: int) -> None:
        tickets.reopen(session, t, viewer.username, clean_text(reason, "bad_text"))

    return _step(request, session, viewer, ticket_id, Step.reopen, run)


# --- live: /live/tickets -----------------------------------------------------------------------------------


@router.get("/live/tickets")
async def live_tickets(
    request: Request,
    view: Annotated[str, Query(pattern="^(board|alarms)$")] = "board",
    estate: EstateFilter = None,
    closed: bool = False,
    mine: bool = False,
    state: StateFilter = "open",
    severity: SeverityFilter = None,
) -> Response:
    """The board's or the alarm list's body, re-rendered when tickets or alarms of the viewer's estates change."""

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        tz = viewer_tz(session, viewer)
        if view == "alarms":
            return alarms_fragment(session, viewer, tz, estate, state, severity)
        b = _board(session, viewer, estate, closed, mine)
        return {"now": b["now"], "html": render_fragment("tickets/_tickets_board.html", viewer.lang, b=b)}

    def allowed(v: Viewer) -> bool:
        return alarms_policy.may_read_alarms(v.role) if view == "alarms" else policy.may_read(v.role)

    change = ChangeMark()

    def mark(session: Session, viewer: Viewer) -> tuple[int, ...]:
        return (*change.read(session, viewer.visible), len(viewer.visible))

    # Alarms are raised inside ingest batches (notified); ticket steps come from requests and worker jobs,
    # which do not notify: hence the poll.
    return await marked_stream(request, build, allowed, mark, poll_s=POLL_S, min_gap_s=MIN_GAP_S)
