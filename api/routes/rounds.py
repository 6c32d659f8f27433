"""Inspection rounds of an equipment room: the calendar, one round, and recording a manual round."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime, BeforeValidator, Field
from sqlalchemy.orm import Session

from alarms import policy, rounds_queries
from alarms.rounds import STATUS_LABELS, RoundNotFound, record_manual_round
from alarms.rounds_queries import RoundRow
from api.deps import EstateCode, ObjectId
from api.pagination import time_window
from api.routes.estates import estate_or_404
from api.schemas import NO_NUL, Input, Output
from core import clock
from core.errors import NotFound
from facility import queries as facility
from storage.models import StaffUser
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api", tags=["rounds"], responses=error_responses(401, 403, 404, 422))
Viewers = Annotated[StaffUser, Depends(require_roles(policy.ROUND_READERS))]
Inspectors = Annotated[StaffUser, Depends(require_roles(policy.ROUND_RECORDERS))]
RoomCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="room code, e.g. PR1")]

DEFAULT_SPAN = timedelta(days=2)
MAX_ROUNDS = 2000


def _lenient_time(value: Any) -> Any:
    # Any RFC 3339 date-time is accepted (the schema promises no narrower range); one outside what UTC can hold
    # (year 1 at +14:00) is clamped to the representable extreme. Naive times stay naive: AwareDatetime refuses them.
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d", value.strip()):
        text_ = re.sub(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$", r"\1+\2", value.strip())
        try:
            parsed = datetime.fromisoformat(text_)
        except ValueError:
            return value
        if parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC) if parsed.year < 5000 else datetime.max.replace(tzinfo=UTC)
    return value


Time = Annotated[AwareDatetime, BeforeValidator(_lenient_time)]
ReadingName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*\S[^\x00]*$")]
ReadingValue = Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, Field(max_length=200, pattern=NO_NUL)]


class EvidenceSummary(Output):
    required: int = Field(description="points the round needs from telemetry")
    ok: int = Field(description="points that reported an in-range value in the window")
    no_data: int = 0
    out_of_range: int = 0
    open_alarm: int = 0


class RoundOut(Output):
    id: int
    schedule_id: int
    schedule_code: str
    schedule_name_zh: str
    schedule_name_en: str
    room_id: int
    room_code: str
    window_start: datetime
    window_end: datetime
    status: str
    status_zh: str
    status_en: str
    satisfied_by: str | None
    evidence: EvidenceSummary | None
    ticket_id: int | None
    ticket_number: str | None
    alarm_id: int | None
    performed_by: str | None
    performed_at: datetime | None


class RoundDetailOut(RoundOut):
    evidence_points: dict[str, dict[str, Any]] = Field(description="per point id: value/ts, or reason")
    readings: dict[str, Any]
    notes: str | None


class RoomRoundsOut(Output):
    estate_code: str
    room_code: str
    room_name: str
    start: datetime
    end: datetime
    items: list[RoundOut]
    truncated: bool = Field(description="more rounds in the range than returned (narrow the range)")


class ManualRoundIn(Input):
    readings: dict[ReadingName, ReadingValue] = Field(
        default_factory=dict, max_length=200, description="what the engineer read on site, e.g. {'room_temp_c': 29.5}"
    )
    notes: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)
    performed_at: Time | None = Field(default=None, description="when the round was done (default: now)")


def _summary(evidence: dict[str, Any] | None) -> EvidenceSummary | None:
    if not evidence or "required" not in evidence:
        return None
    counts = {"no_data": 0, "out_of_range": 0, "open_alarm": 0}
    for ev in (evidence.get("points") or {}).values():
        reason = ev.get("reason") if isinstance(ev, dict) else None
        if reason in counts:
            counts[reason] += 1
    return EvidenceSummary(required=int(evidence["required"]), ok=int(evidence.get("ok", 0)), **counts)


def _out(row: RoundRow) -> dict[str, Any]:
    zh, en = STATUS_LABELS.get(row.status, (row.status, row.status))
    return {
        **{k: getattr(row, k) for k in RoundOut.model_fields if hasattr(row, k)},
        "status_zh": zh,
        "status_en": en,
        "evidence": _summary(row.evidence),
    }


def _round_row(session: Session, round_id: int, visible: set[int]) -> RoundRow:
    row = rounds_queries.round_row(session, round_id)
    if row is None or row.estate_id not in visible:
        raise RoundNotFound("round not found / 未找到该巡检")
    return row


def _detail(row: RoundRow) -> RoundDetailOut:
    evidence = row.evidence or {}
    return RoundDetailOut(
        **_out(row),
        evidence_points=evidence.get("points") or {},
        readings=row.readings or {},
        notes=row.notes,
    )


@router.get("/estates/{code}/rooms/{room_code}/rounds", response_model=RoomRoundsOut)
def room_rounds(
    code: EstateCode,
    room_code: RoomCode,
    session: ReadSessionDep,
    user: Viewers,
    visible: VisibleEstates,
    start: Annotated[Time | None, Query(alias="from", description="windows ending after this time")] = None,
    end: Annotated[Time | None, Query(alias="to", description="windows starting before this time")] = None,
) -> RoomRoundsOut:
    """Inspection calendar of a room: windows with status, how they were satisfied, ticket and performer."""
    estate = estate_or_404(session, code, visible)
    room = facility.room_by_code(session, estate.id, room_code)
    if room is None:
        raise NotFound("room not found / 未找到该机房")
    lo, hi = time_window(start, end, DEFAULT_SPAN)
    rows = rounds_queries.rounds_between(session, room.id, lo, hi, limit=MAX_ROUNDS + 1)
    return RoomRoundsOut(
        estate_code=estate.code,
        room_code=room.code,
        room_name=room.name,
        start=lo,
        end=hi,
        items=[RoundOut(**_out(r)) for r in rows[:MAX_ROUNDS]],
        truncated=len(rows) > MAX_ROUNDS,
    )


@router.get("/rounds/{round_id}", response_model=RoundDetailOut)
def get_round(round_id: ObjectId, session: ReadSessionDep, user: Viewers, visible: VisibleEstates) -> RoundDetailOut:
    """One inspection round with its per-point evidence, manual readings and notes."""
    return _detail(_round_row(session, round_id, visible))


@router.post("/rounds/{round_id}/manual", response_model=RoundDetailOut, responses=error_responses(400, 409))
def record_manual(
    round_id: ObjectId, body: ManualRoundIn, session: SessionDep, user: Inspectors, visible: VisibleEstates
) -> RoundDetailOut:
    """Record a manual round done on site (readings and notes); also accepted late for a missed round."""
    _round_row(session, round_id, visible)
    record_manual_round(
        session,
        round_id,
        performed_by=user.username,
        performed_at=body.performed_at or clock.now(),
        readings=body.readings,
        notes=body.notes,
    )
    return _detail(_round_row(session, round_id, visible))
