"""The inspection calendar of an equipment room (``/rooms/{id}/rounds``) and the manual-round form.

Who may see it and who may record a round is ``alarms.policy`` (the JSON API asks it too).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from accounts import service as accounts
from alarms import policy
from alarms.rounds import record_manual_round
from alarms.rounds_queries import round_room_id
from core import clock
from core.errors import StewardError
from dashboards import i18n, rounds_view
from dashboards.forms import clean_text, flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import room_of
from dashboards.viewer import EquipmentViewer, PageError, ViewerDep, require
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)


@router.get("/rooms/{room_id}/rounds", response_class=HTMLResponse)
def rounds_page(
    room_id: int,
    request: Request,
    session: ReadSessionDep,
    viewer: EquipmentViewer,
    round_: Annotated[int | None, Query(alias="round", ge=1, le=2**62)] = None,
) -> HTMLResponse:
    room, estate = room_of(session, room_id, viewer)
    tz = i18n.zone(estate.timezone)
    cal = rounds_view.rounds_calendar(session, room, viewer.lang, tz, selected=round_)
    return form_page(
        request,
        "rounds/rounds.html",
        viewer,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang),
        cal=cal,
        can_record=policy.may_record_round(viewer.role),
        now_local=clock.now().astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
        tz=tz.key,
    )


def _readings(text_: str) -> dict[str, float | str]:
    """ "室温=29.5" lines → {"室温": 29.5}; a value that is not a number stays text."""
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
    notes: Annotated[str, Form(max_length=4000)] = "",
    performed_at: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    same_origin(request, viewer)
    require(viewer, policy.may_record_round(viewer.role))
    room, estate = room_of(session, room_id, viewer)
    where = round_room_id(session, round_id)
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
            notes=clean_text(notes, "bad_text") or None,
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    accounts.audit(session, viewer.username, "rounds.manual", f"round:{round_id}", {"via": "dashboards"})
    return flash_ok(target, "flash_round_done")
