"""Shifts and shift handover (交接班): an estate's shift times, the shift on the table, handing over and signing."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import handover, handover_queries, policy, shifts
from api.deps import EstateCode, ObjectId
from api.routes.estates import estate_or_404
from api.schemas import NO_NUL, Input, Output, QueryTime
from core import clock
from core.errors import NotFound
from storage.models import Estate, ShiftHandover, StaffUser
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api", tags=["handover"], responses=error_responses(401, 403, 404, 422))
OnShift = Annotated[StaffUser, Depends(require_roles(policy.HANDOVER_ROLES))]
ShiftEditors = Annotated[StaffUser, Depends(require_roles(policy.SHIFT_EDITORS))]
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class ShiftIn(Input):
    code: str = Field(pattern=r"^[a-z0-9_-]{1,16}$", description="e.g. day, night")
    name_zh: str = Field(min_length=1, max_length=32, pattern=r"^[^\x00]*\S[^\x00]*$", description="e.g. 白班")
    name_en: str = Field(default="", max_length=32, pattern=NO_NUL)
    starts: str = Field(pattern=HHMM, description="local start time HH:MM")
    ends: str = Field(pattern=HHMM, description="local end time HH:MM (at or before the start: across midnight)")


class ShiftOut(Output):
    code: str
    name_zh: str
    name_en: str
    starts: str
    ends: str


class ShiftsIn(Input):
    shifts: list[ShiftIn] = Field(
        min_length=1, max_length=6, description="must tile the day: each ends as the next starts"
    )


class ShiftsOut(Output):
    estate_code: str
    timezone: str
    shifts: list[ShiftOut]


class ShiftWindowOut(Output):
    code: str
    name_zh: str
    name_en: str
    start: datetime
    end: datetime


class HandoverOut(Output):
    id: int
    estate_code: str
    shift_code: str
    shift_name_zh: str
    shift_name_en: str
    shift_start: datetime
    shift_end: datetime
    outgoing_name: str
    notes: str
    handed_over_at: datetime
    incoming_name: str | None
    incoming_note: str | None
    signed_at: datetime | None
    signed: bool
    snapshot: dict[str, Any] = Field(description="the shift's facts as of the handover: alarms, tickets, rounds")


class HandoverSummaryOut(Output):
    id: int
    shift_code: str
    shift_name_zh: str
    shift_start: datetime
    shift_end: datetime
    outgoing_name: str
    handed_over_at: datetime
    incoming_name: str | None
    signed_at: datetime | None
    counts: dict[str, int]


class HandoverListOut(Output):
    estate_code: str
    items: list[HandoverSummaryOut]


class DraftOut(Output):
    estate_code: str
    shift: ShiftWindowOut
    record: HandoverOut | None = Field(description="the shift's record once handed over")
    facts: dict[str, Any] = Field(description="the shift's facts as of now (the record's snapshot keeps its own)")


class HandoverIn(Input):
    notes: str = Field(default="", max_length=handover.NOTES_MAX, pattern=NO_NUL)
    shift_start: QueryTime | None = Field(
        default=None, description="the shift being handed over (default: the one due now)"
    )


class SignIn(Input):
    note: str = Field(default="", max_length=handover.NOTES_MAX, pattern=NO_NUL)


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _shift_out(s: shifts.Shift) -> ShiftOut:
    return ShiftOut(code=s.code, name_zh=s.name_zh, name_en=s.name_en, starts=_hhmm(s.starts), ends=_hhmm(s.ends))


def _record_out(rec: ShiftHandover, estate_code: str) -> HandoverOut:
    return HandoverOut(
        id=rec.id,
        estate_code=estate_code,
        shift_code=rec.shift_code,
        shift_name_zh=rec.shift_name_zh,
        shift_name_en=rec.shift_name_en,
        shift_start=rec.shift_start,
        shift_end=rec.shift_end,
        outgoing_name=rec.outgoing_name,
        notes=rec.notes,
        handed_over_at=rec.handed_over_at,
        incoming_name=rec.incoming_name,
        incoming_note=rec.incoming_note,
        signed_at=rec.signed_at,
        signed=rec.signed_at is not None,
        snapshot=rec.snapshot or {},
    )


def _estate_code(session: Session, rec: ShiftHandover) -> str:
    estate = session.get(Estate, rec.estate_id)
    return estate.code if estate is not None else ""


@router.get("/estates/{code}/shifts", response_model=ShiftsOut)
def get_shifts(code: EstateCode, session: ReadSessionDep, user: OnShift, visible: VisibleEstates) -> ShiftsOut:
    """The estate's shifts in its local time (the defaults 08:00–20:00 and 20:00–08:00 until it sets its own)."""
    estate = estate_or_404(session, code, visible)
    defs = shifts.definitions(session, estate.id)
    return ShiftsOut(estate_code=estate.code, timezone=estate.timezone, shifts=[_shift_out(s) for s in defs])


@router.put("/estates/{code}/shifts", response_model=ShiftsOut, responses=error_responses(400))
def put_shifts(
    code: EstateCode, body: ShiftsIn, session: SessionDep, user: ShiftEditors, visible: VisibleEstates
) -> ShiftsOut:
    """Replace the estate's shifts; they must tile the day (each ends where the next begins). Audited."""
    estate = estate_or_404(session, code, visible)
    wanted = [
        shifts.Shift(
            s.code, s.name_zh.strip(), s.name_en.strip(), time.fromisoformat(s.starts), time.fromisoformat(s.ends)
        )
        for s in body.shifts
    ]
    saved = shifts.set_definitions(session, estate.id, wanted)
    accounts.audit(
        session,
        user,
        "shifts.set",
        f"estate:{estate.code}",
        {"shifts": [f"{s.code} {_hhmm(s.starts)}-{_hhmm(s.ends)}" for s in saved]},
    )
    return ShiftsOut(estate_code=estate.code, timezone=estate.timezone, shifts=[_shift_out(s) for s in saved])


@router.get("/estates/{code}/handover", response_model=DraftOut)
def get_draft(code: EstateCode, session: ReadSessionDep, user: OnShift, visible: VisibleEstates) -> DraftOut:
    """The shift on the table now (the one just ended until it is signed, within two hours; else the current one),
    its record if handed over, and its facts as of now."""
    estate = estate_or_404(session, code, visible)
    now = clock.now()
    window = handover.due_window(session, estate, now)
    rec = handover_queries.record_for(session, estate.id, window.start)
    return DraftOut(
        estate_code=estate.code,
        shift=ShiftWindowOut(
            code=window.code, name_zh=window.name_zh, name_en=window.name_en, start=window.start, end=window.end
        ),
        record=_record_out(rec, estate.code) if rec is not None else None,
        facts=handover.shift_facts(session, estate, window, now),
    )


@router.post("/estates/{code}/handover", response_model=HandoverOut, responses=error_responses(400, 409))
def post_handover(
    code: EstateCode, body: HandoverIn, session: SessionDep, user: OnShift, visible: VisibleEstates
) -> HandoverOut:
    """交班: hand the shift over with notes; its facts are frozen into the record. The same engineer may amend it
    until it is signed (409 once signed, or when another engineer handed it over)."""
    estate = estate_or_404(session, code, visible)
    rec = handover.hand_over(session, estate, user, notes=body.notes, now=clock.now(), shift_start=body.shift_start)
    return _record_out(rec, estate.code)


@router.get("/estates/{code}/handovers", response_model=HandoverListOut)
def list_handovers(
    code: EstateCode,
    session: ReadSessionDep,
    user: OnShift,
    visible: VisibleEstates,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HandoverListOut:
    """The estate's latest handover records, newest shift first."""
    estate = estate_or_404(session, code, visible)
    rows = handover_queries.recent_records(session, estate.id, limit=limit)
    return HandoverListOut(
        estate_code=estate.code,
        items=[
            HandoverSummaryOut(
                id=r.id,
                shift_code=r.shift_code,
                shift_name_zh=r.shift_name_zh,
                shift_start=r.shift_start,
                shift_end=r.shift_end,
                outgoing_name=r.outgoing_name,
                handed_over_at=r.handed_over_at,
                incoming_name=r.incoming_name,
                signed_at=r.signed_at,
                counts={k: int(v) for k, v in (r.snapshot or {}).get("counts", {}).items()},
            )
            for r in rows
        ],
    )


@router.get("/handovers/{handover_id}", response_model=HandoverOut)
def get_handover(handover_id: ObjectId, session: ReadSessionDep, user: OnShift, visible: VisibleEstates) -> HandoverOut:
    """One handover record with its frozen facts."""
    rec = handover_queries.record(session, handover_id, visible)
    if rec is None:
        raise NotFound("handover record not found / 未找到该交接班记录")
    return _record_out(rec, _estate_code(session, rec))


@router.post("/handovers/{handover_id}/sign", response_model=HandoverOut, responses=error_responses(400, 409))
def sign_handover(
    handover_id: ObjectId, body: SignIn, session: SessionDep, user: OnShift, visible: VisibleEstates
) -> HandoverOut:
    """接班签字: the incoming engineer (not the one who handed over) signs, once; the record is final after."""
    rec = handover.sign(session, handover_id, user, visible=visible, now=clock.now(), note=body.note)
    return _record_out(rec, _estate_code(session, rec))
