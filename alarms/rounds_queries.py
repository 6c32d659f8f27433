"""Reads of inspection rounds for the calendar page, as typed rows (the pages word and lay them out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
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


def round_room_id(session: Session, round_id: int) -> tuple[int, int] | None:
    """(room id, estate id) of a round, or None."""
    row = session.execute(
        select(InspectionRound.room_id, InspectionRound.estate_id).where(InspectionRound.id == round_id)
    ).first()
    return (int(row[0]), int(row[1])) if row else None
