"""Shift handover pages (交接班): ``/handover`` — the shift on the table, its facts, 交班 and 接班签字 — and
``/handover/{id}``, the printable record (one A4 page).

Who may is ``alarms.policy`` (the JSON API asks it too); the rules (which shift, who signs, once) are
``alarms.handover``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from alarms import handover, handover_queries, policy
from core import clock
from core.errors import StewardError
from dashboards import handover_view, i18n
from dashboards.forms import flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import estate_of
from dashboards.render import render
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility.queries import visible_estates
from storage.models import Estate, StaffUser
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
EstateParam = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")]
RECENT_SHOWN = 10


def _on_shift(viewer: Viewer) -> Viewer:
    return require(viewer, policy.may_hand_over(viewer.role))


def _estate(session: Session, viewer: Viewer, code: str | None) -> Estate | None:
    """The estate asked for, or the viewer's only one; None when they must choose."""
    if code:
        return estate_of(session, code, viewer)
    estates = visible_estates(session, viewer.visible)
    return estates[0] if len(estates) == 1 else None


def _page_url(estate: Estate) -> str:
    return f"/handover?estate={estate.code}"


@router.get("/handover", response_class=HTMLResponse)
def handover_page(
    request: Request, session: ReadSessionDep, viewer: ViewerDep, estate: EstateParam = None
) -> HTMLResponse:
    _on_shift(viewer)
    place = _estate(session, viewer, estate)
    if place is None:
        return form_page(request, "handover/choose.html", viewer, estates=visible_estates(session, viewer.visible))
    tz = i18n.zone(place.timezone)
    now = clock.now()
    window = handover.due_window(session, place, now)
    rec = handover_queries.record_for(session, place.id, window.start)
    facts = rec.snapshot if rec is not None else handover.shift_facts(session, place, window, now)
    record = handover_view.record_view(rec, tz, viewer.lang) if rec is not None else None
    recent = [
        handover_view.record_view(r, tz, viewer.lang)
        for r in handover_queries.recent_records(session, place.id, limit=RECENT_SHOWN)
    ]
    return form_page(
        request,
        "handover/handover.html",
        viewer,
        estate=place,
        shift_title=handover_view.shift_title(
            window.name_zh, window.name_en, window.start, window.end, tz, viewer.lang
        ),
        shift_start=window.start.isoformat(),
        ended=window.end <= now,
        record=record,
        f=handover_view.facts_view(facts, tz, viewer.lang),
        can_hand_over=rec is None or (rec.signed_at is None and rec.outgoing_id == viewer.user_id),
        can_sign=rec is not None and rec.signed_at is None and rec.outgoing_id != viewer.user_id,
        notes_max=handover.NOTES_MAX,
        recent=recent,
        tz=tz.key,
    )


def _user(session: Session, viewer: Viewer) -> StaffUser:
    user = session.get(StaffUser, viewer.user_id)
    if user is None:
        raise PageError(403, viewer)
    return user


@router.post("/handover/hand-over")
def hand_over(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Form(max_length=32)] = "",
    shift_start: Annotated[str, Form(max_length=40)] = "",
    notes: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    same_origin(request, viewer)
    _on_shift(viewer)
    place = estate_of(session, estate, viewer)
    target = _page_url(place)
    try:
        start = datetime.fromisoformat(shift_start) if shift_start else None
    except ValueError:
        return flash_error(target, StewardError("!ho_bad_shift", 422))
    if start is not None and start.tzinfo is None:
        return flash_error(target, StewardError("!ho_bad_shift", 422))
    try:
        handover.hand_over(session, place, _user(session, viewer), notes=notes, now=clock.now(), shift_start=start)
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "ho_flash_handed_over")


@router.post("/handover/{handover_id}/sign")
def sign(
    handover_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    same_origin(request, viewer)
    _on_shift(viewer)
    rec = handover_queries.record(session, handover_id, viewer.visible)
    if rec is None:
        raise PageError(404, viewer)
    place = session.get(Estate, rec.estate_id)
    assert place is not None  # the foreign key
    target = _page_url(place)
    try:
        handover.sign(session, handover_id, _user(session, viewer), visible=viewer.visible, now=clock.now(), note=note)
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "ho_flash_signed")


@router.get("/handover/{handover_id}", response_class=HTMLResponse)
def record_page(handover_id: int, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    """The printable record: its print stylesheet lays it out on one A4 page."""
    _on_shift(viewer)
    rec = handover_queries.record(session, handover_id, viewer.visible)
    if rec is None:
        raise PageError(404, viewer)
    place = session.get(Estate, rec.estate_id)
    assert place is not None
    tz = i18n.zone(place.timezone)
    return render(
        request,
        "handover/print.html",
        viewer.lang,
        viewer,
        estate=place,
        record=handover_view.record_view(rec, tz, viewer.lang),
        f=handover_view.facts_view(rec.snapshot or {}, tz, viewer.lang, printable=True),
        printed_at=i18n.format_time(clock.now(), tz, seconds=False),
        tz=tz.key,
    )
