"""Reads of inspection rounds for the calendar page and the JSON API, as typed rows (the pages and the API
word and lay them out)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, select, text
from sqlalchemy.orm import Session

from storage.models import Device, InspectionRound, Point, RoundSchedule, Ticket
from tickets.queries import staff_names


@dataclass(frozen=True)
class RoomRounds:
    schedules: list[RoundSchedule]  # by code
    rounds: list[InspectionRound]  # windows ending after ``since``, by window start
    points: dict[int, tuple[str, str, str]]  # the room's points: id → (metric, label, unit)
    ticket_numbers: dict[int, str]  # tickets the rounds opened
    performer_names: dict[str, str]  # username → display name of who recorded manual rounds


def room_rounds(session: Session, room_id: int, since: datetime) -> RoomRounds:
    schedules = list(
        session.scalars(select(RoundSchedule).where(RoundSchedule.room_id == room_id).order_by(RoundSchedule.code))
    )
    rounds = list(
        session.scalars(
            select(InspectionRound)
            .where(InspectionRound.room_id == room_id, InspectionRound.window_end > since)
            .order_by(InspectionRound.window_start)
        )
    )
    points = {
        int(pid): (metric, plabel or "", unit or "")
        for pid, metric, plabel, unit in session.execute(
            select(Point.id, Point.metric, Point.label, Point.unit)
            .join(Device, Device.id == Point.device_id)
            .where(Device.room_id == room_id)
        ).all()
    }
    tickets = {
        int(i): str(n)
        for i, n in session.execute(
            select(Ticket.id, Ticket.number).where(Ticket.id.in_({r.ticket_id for r in rounds if r.ticket_id}))
        ).all()
    }
    names = staff_names(session, {r.performed_by for r in rounds if r.performed_by})
    return RoomRounds(schedules, rounds, points, tickets, names)


# A calendar never lays out more windows than this per schedule (a 1-minute schedule over 2 days would be 2880).
WINDOWS_SHOWN_MAX = 200


def schedule_windows(schedule: RoundSchedule, since: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """The schedule's windows ``[anchor + k·interval, anchor + (k+1)·interval)`` that end after ``since`` and have
    begun by ``now`` (the current one included), oldest first: the cells of a calendar, whether or not the worker
    made a round of each (it makes none for time before it watched the schedule, alarms/rounds.py)."""
    if not schedule.enabled or schedule.interval_minutes <= 0 or schedule.anchor > now:
        return []
    step = timedelta(minutes=schedule.interval_minutes)
    k_last = math.floor((now - schedule.anchor) / step)
    k_first = max(0, math.floor((since - schedule.anchor) / step), k_last - WINDOWS_SHOWN_MAX + 1)
    starts = (schedule.anchor + k * step for k in range(k_first, k_last + 1))
    return [(start, start + step) for start in starts if start + step > since]


def round_room_id(session: Session, round_id: int) -> tuple[int, int] | None:
    """(room id, estate id) of a room's round, or None (also for a customer-service round: it has no room)."""
    row = session.execute(
        select(InspectionRound.room_id, InspectionRound.estate_id).where(
            InspectionRound.id == round_id, InspectionRound.room_id.is_not(None)
        )
    ).first()
    return (int(row[0]), int(row[1])) if row and row[0] is not None else None


@dataclass(frozen=True)
class RoundRow:
    """One round with its schedule, room and ticket named."""

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
    satisfied_by: str | None
    evidence: dict[str, Any] | None
    ticket_id: int | None
    ticket_number: str | None
    alarm_id: int | None
    performed_by: str | None
    performed_at: datetime | None
    readings: dict[str, Any] | None
    notes: str | None
    estate_id: int


_SELECT = """
SELECT r.id, r.schedule_id, s.code AS schedule_code, s.name_zh AS schedule_name_zh,
       s.name_en AS schedule_name_en, r.room_id, rm.code AS room_code, r.window_start, r.window_end,
       r.status, r.satisfied_by, r.evidence, r.ticket_id, t.number AS ticket_number, r.alarm_id,
       r.performed_by, r.performed_at, r.readings, r.notes, rm.estate_id
FROM inspection_rounds r
JOIN round_schedules s ON s.id = r.schedule_id
JOIN rooms rm ON rm.id = r.room_id
LEFT JOIN tickets t ON t.id = r.ticket_id
"""
_ROUND_FIELDS = tuple(f.name for f in fields(RoundRow))


def _round(row: RowMapping) -> RoundRow:
    return RoundRow(**{name: row[name] for name in _ROUND_FIELDS})


def round_row(session: Session, round_id: int) -> RoundRow | None:
    row = session.execute(text(_SELECT + " WHERE r.id = :id"), {"id": round_id}).mappings().first()
    return None if row is None else _round(row)


def rounds_between(session: Session, room_id: int, lo: datetime, hi: datetime, *, limit: int) -> list[RoundRow]:
    """The room's rounds whose window overlaps (lo, hi), by window start then schedule code, at most ``limit``."""
    rows = session.execute(
        text(
            _SELECT + " WHERE r.room_id = :room AND r.window_end > :lo AND r.window_start < :hi"
            " ORDER BY r.window_start, s.code LIMIT :limit"
        ),
        {"room": room_id, "lo": lo, "hi": hi, "limit": limit},
    ).mappings()
    return [_round(r) for r in rows]


@dataclass(frozen=True)
class DayRound:
    """A round of the day's summary with its schedule (grouped by name: new kinds of rounds show by themselves) and
    room."""

    id: int
    schedule_code: str
    schedule_name_zh: str
    schedule_name_en: str
    room_id: int | None  # None: a customer-service round (alarms/service_rounds.py) is of the estate, not a room
    room_code: str | None
    window_start: datetime
    window_end: datetime
    status: str
    ticket_id: int | None


def rounds_of_day(session: Session, estate_id: int, start: datetime, end: datetime) -> list[DayRound]:
    """The estate's rounds whose window starts in [start, end), by schedule code, room and window start."""
    rows = session.execute(
        text(
            "SELECT r.id, s.code AS schedule_code, s.name_zh AS schedule_name_zh, s.name_en AS schedule_name_en,"
            " r.room_id, rm.code AS room_code, r.window_start, r.window_end, r.status, r.ticket_id"
            " FROM inspection_rounds r JOIN round_schedules s ON s.id = r.schedule_id"
            " LEFT JOIN rooms rm ON rm.id = r.room_id"
            " WHERE r.estate_id = :estate AND r.window_start >= :start AND r.window_start < :end"
            " ORDER BY s.code, rm.code, r.window_start, r.id"
        ),
        {"estate": estate_id, "start": start, "end": end},
    ).mappings()
    return [DayRound(**{f.name: row[f.name] for f in fields(DayRound)}) for row in rows]


@dataclass(frozen=True)
class ShiftRound:
    """An inspection window of a shift, with its schedule and room named."""

    id: int
    schedule_name_zh: str
    schedule_name_en: str
    room_name: str | None  # None: a customer-service round, of the estate
    room_code: str | None
    window_start: datetime
    window_end: datetime
    status: str
    satisfied_by: str | None
    performed_by: str | None
    performed_at: datetime | None
    ticket_number: str | None


_SHIFT_ROUND_FIELDS = tuple(f.name for f in fields(ShiftRound))
SHIFT_ROUNDS_MAX = 1000


def shift_rounds(session: Session, estate_id: int, start: datetime, end: datetime) -> list[ShiftRound]:
    """The estate's inspection windows that began in [start, end), by start then room and schedule."""
    rows = session.execute(
        text(
            "SELECT r.id, s.name_zh AS schedule_name_zh, s.name_en AS schedule_name_en, rm.name AS room_name,"
            " rm.code AS room_code, r.window_start, r.window_end, r.status, r.satisfied_by, r.performed_by,"
            " r.performed_at, t.number AS ticket_number"
            " FROM inspection_rounds r JOIN round_schedules s ON s.id = r.schedule_id"
            " LEFT JOIN rooms rm ON rm.id = r.room_id"
            " LEFT JOIN tickets t ON t.id = r.ticket_id"
            " WHERE r.estate_id = :estate AND r.window_start >= :start AND r.window_start < :end"
            " ORDER BY r.window_start, rm.code, s.code LIMIT :limit"
        ),
        {"estate": estate_id, "start": start, "end": end, "limit": SHIFT_ROUNDS_MAX},
    ).mappings()
    return [ShiftRound(**{name: row[name] for name in _SHIFT_ROUND_FIELDS}) for row in rows]
