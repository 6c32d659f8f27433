"""Reads of repair tickets for the boards, the detail page and the JSON API, as typed rows.

The pages (dashboards/tickets*.py) word and lay them out; nothing here formats for a language.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from core.roles import Role
from storage.models import Alarm, AlarmRuleRow, Device, Estate, Room, StaffEstate, StaffUser, Ticket, TicketEvent, Unit
from storage.paging import Paged, fetch_page
from tickets import sla
from tickets.const import PRIORITY_RANK, TicketStatus


@dataclass(frozen=True)
class TicketRow:
    """A ticket with the names of what it is about and of whom it is assigned to."""

    ticket: Ticket
    estate_code: str
    room_name: str | None
    room_kind: str | None
    room_code: str | None
    unit_code: str | None
    device_name: str | None
    device_code: str | None
    assignee_name: str | None
    assignee_username: str | None


def _rows(session: Session, where: list[Any], *, order: Any, limit: int) -> list[TicketRow]:
    order = order if isinstance(order, tuple) else (order,)
    stmt = (
        select(
            Ticket,
            Estate.code,
            Room.name,
            Room.kind,
            Room.code,
            Unit.code,
            Device.name,
            Device.code,
            StaffUser.display_name,
            StaffUser.username,
        )
        .join(Estate, Estate.id == Ticket.estate_id)
        .outerjoin(Room, Room.id == Ticket.room_id)
        .outerjoin(Unit, Unit.id == Ticket.unit_id)
        .outerjoin(Device, Device.id == Ticket.device_id)
        .outerjoin(StaffUser, StaffUser.id == Ticket.assignee_id)
        .where(*where)
        .order_by(*order)
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    return [
        TicketRow(
            ticket=t,
            estate_code=estate_code,
            room_name=room_name,
            room_kind=room_kind,
            room_code=room_code,
            unit_code=unit_code,
            device_name=device_name,
            device_code=device_code,
            assignee_name=a_name,
            assignee_username=a_user,
        )
        for t, estate_code, room_name, room_kind, room_code, unit_code, device_name, device_code, a_name, a_user in rows
    ]


def board_rows(
    session: Session,
    visible: Set[int],
    *,
    estate: str | None = None,
    assignee_id: int | None = None,
    closed: bool = False,
    limit: int,
) -> list[TicketRow]:
    """Open tickets of these estates, newest first; or, with ``closed``, the latest closed ones."""
    where: list[Any] = [Ticket.estate_id.in_(visible)]
    if estate:
        where.append(Estate.code == estate)
    if assignee_id is not None:
        where.append(Ticket.assignee_id == assignee_id)
    if closed:
        return _rows(
            session, [*where, Ticket.status == TicketStatus.closed.value], order=Ticket.closed_at.desc(), limit=limit
        )
    # Most urgent priority first in SQL (so a long backlog's limit cuts the least urgent), then board_order.
    rank = case(PRIORITY_RANK, value=Ticket.priority, else_=-1)
    open_rows = _rows(
        session,
        [*where, Ticket.status != TicketStatus.closed.value],
        order=(rank.desc(), Ticket.received_at, Ticket.id),
        limit=limit,
    )
    return sorted(open_rows, key=lambda r: board_order(r.ticket))


def board_order(t: Ticket) -> tuple[int, float, float, int]:
    """Where an open ticket stands on a board (issue 15 §8: the urgent transformer ticket was listed last):
    priority first (紧急 > 较急 > 小修 > 一般, tickets.const.PRIORITY_RANK), then the nearest running clock's
    deadline (a ticket with no clock running after those with one), then the earliest received."""
    running = sla.running_clocks(t).values()
    nearest = min(running).timestamp() if running else float("inf")
    return (-PRIORITY_RANK.get(t.priority, -1), nearest, t.received_at.timestamp(), t.id)


def tickets_page(
    session: Session,
    estate_ids: Collection[int],
    *,
    statuses: Collection[str] | None = None,
    open_only: bool = False,
    priority: str | None = None,
    category: str | None = None,
    source: str | None = None,
    sort: Literal["newest", "due"] = "newest",
    limit: int,
    offset: int,
) -> Paged[Ticket]:
    """Tickets of these estates matching every filter given, newest first or soonest resolve deadline first."""
    stmt = select(Ticket).where(Ticket.estate_id.in_(estate_ids))
    if statuses:
        stmt = stmt.where(Ticket.status.in_(statuses))
    if open_only:
        stmt = stmt.where(Ticket.status != TicketStatus.closed.value)
    for column, value in ((Ticket.priority, priority), (Ticket.category, category), (Ticket.source, source)):
        if value is not None:
            stmt = stmt.where(column == value)
    if sort == "due":
        soonest = Ticket.resolve_due_at  # the on-site clock is minutes; what orders a board is the resolve deadline
        stmt = stmt.order_by(soonest.asc().nulls_last(), Ticket.id)
    else:
        stmt = stmt.order_by(Ticket.id.desc())
    return fetch_page(session, stmt, limit=limit, offset=offset)


def ticket_row(session: Session, ticket_id: int) -> TicketRow:
    return _rows(session, [Ticket.id == ticket_id], order=Ticket.id, limit=1)[0]


def reopen_times(session: Session, ticket_ids: Iterable[int]) -> dict[int, datetime]:
    """When each of these tickets was last reopened (its on-site and resolve clocks restarted then)."""
    ids = list(ticket_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(TicketEvent.ticket_id, func.max(TicketEvent.at))
        .where(TicketEvent.ticket_id.in_(ids), TicketEvent.action == "reopened")
        .group_by(TicketEvent.ticket_id)
    ).all()
    return {int(i): at for i, at in rows}


def events(session: Session, ticket_id: int) -> list[TicketEvent]:
    """The ticket's timeline, oldest first."""
    return list(session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)))


@dataclass(frozen=True)
class TicketAlarm:
    alarm: Alarm
    rule_code: str
    title_zh: str
    title_en: str


def ticket_alarms(session: Session, ticket_id: int) -> list[TicketAlarm]:
    """The alarms attached to a ticket, oldest first, with their rule's code and titles."""
    rows = session.execute(
        select(Alarm, AlarmRuleRow.code, AlarmRuleRow.title_zh, AlarmRuleRow.title_en)
        .join(AlarmRuleRow, AlarmRuleRow.id == Alarm.rule_id)
        .where(Alarm.ticket_id == ticket_id)
        .order_by(Alarm.id)
    ).all()
    return [TicketAlarm(a, code, zh, en) for a, code, zh, en in rows]


@dataclass(frozen=True)
class Candidate:
    id: int
    username: str
    display_name: str | None
    role: str


def dispatch_candidates(session: Session, estate_id: int) -> list[Candidate]:
    """Engineers (then supervisors) who work at the estate: whom a ticket can be dispatched to."""
    rows = session.execute(
        select(StaffUser.id, StaffUser.username, StaffUser.display_name, StaffUser.role)
        .outerjoin(StaffEstate, (StaffEstate.user_id == StaffUser.id) & (StaffEstate.estate_id == estate_id))
        .where(
            StaffUser.active.is_(True),
            StaffUser.role.in_([Role.engineer.value, Role.supervisor.value]),
            (StaffEstate.user_id.is_not(None)) | StaffUser.all_estates.is_(True),
        )
        .order_by(StaffUser.role, StaffUser.display_name, StaffUser.username)
    ).all()
    return [Candidate(int(i), u, d, r) for i, u, d, r in rows]


def staff_names(session: Session, usernames: set[str]) -> dict[str, str]:
    """Display names of staff by username (the username where none is set)."""
    if not usernames:
        return {}
    rows = session.execute(
        select(StaffUser.username, StaffUser.display_name).where(StaffUser.username.in_(usernames))
    ).all()
    return {u: (d or u) for u, d in rows}


def day_tickets(session: Session, estate_id: int, start: datetime, end: datetime) -> list[Ticket]:
    """The estate's tickets a day [start, end) touched: received before `end` and not closed before `start` (opened,
    closed or still open that day), oldest first. The daily summary (alarms/daily_summary.py) counts them."""
    return list(
        session.scalars(
            select(Ticket)
            .where(
                Ticket.estate_id == estate_id,
                Ticket.received_at < end,
                or_(
                    Ticket.status != TicketStatus.closed.value,
                    Ticket.closed_at.is_(None),
                    Ticket.closed_at >= start,
                ),
            )
            .order_by(Ticket.received_at, Ticket.id)
        )
    )


def callbacks_made(session: Session, estate_id: int, start: datetime, end: datetime) -> int:
    """Callbacks (回访) recorded on the estate's tickets in [start, end): the events, so one made before a reopen
    counts too."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(TicketEvent)
            .join(Ticket, Ticket.id == TicketEvent.ticket_id)
            .where(
                Ticket.estate_id == estate_id,
                TicketEvent.action == "callback",
                TicketEvent.at >= start,
                TicketEvent.at < end,
            )
        )
        or 0
    )


# A shift's record lists at most this many tickets (an estate has tens open at once, not thousands).
SHIFT_TICKETS_MAX = 300


def shift_tickets(session: Session, estate_id: int, start: datetime, end: datetime) -> list[TicketRow]:
    """The estate's tickets a shift handover speaks of: received, resolved or closed in [start, end), and every
    ticket still open now (whenever it was received). Oldest first."""
    in_shift = [
        (Ticket.received_at >= start) & (Ticket.received_at < end),
        (Ticket.resolved_at >= start) & (Ticket.resolved_at < end),
        (Ticket.closed_at >= start) & (Ticket.closed_at < end),
        Ticket.status != TicketStatus.closed.value,
    ]
    return _rows(
        session,
        [Ticket.estate_id == estate_id, or_(*in_shift)],
        order=Ticket.received_at,
        limit=SHIFT_TICKETS_MAX,
    )


@dataclass(frozen=True)
class AlarmStatus:
    """How the alarms attached to a ticket stand now: whether the fault has gone away by itself (the card says
    报警已恢复) and whether someone still has to acknowledge one (完工 is refused until they do)."""

    total: int
    unacknowledged: int  # still active: nobody has acknowledged it
    open: int  # active or acknowledged: the condition has not ended
    recovered: int  # cleared because the condition ended by itself (not cleared by hand)
    last_recovered_at: datetime | None

    @property
    def all_recovered(self) -> bool:
        return self.total > 0 and self.recovered == self.total


def alarm_status(session: Session, ticket_ids: Iterable[int]) -> dict[int, AlarmStatus]:
    """The state of each ticket's attached alarms, for the tickets that have any."""
    ids = list(ticket_ids)
    if not ids:
        return {}
    recovered = (Alarm.state == "cleared") & (Alarm.clear_reason == "condition_ended")
    rows = session.execute(
        select(
            Alarm.ticket_id,
            func.count(),
            func.count().filter(Alarm.state == "active"),
            func.count().filter(Alarm.state.in_(("active", "acknowledged"))),
            func.count().filter(recovered),
            func.max(Alarm.cleared_at).filter(recovered),
        )
        .where(Alarm.ticket_id.in_(ids))
        .group_by(Alarm.ticket_id)
    ).all()
    return {int(i or 0): AlarmStatus(int(n), int(un), int(op), int(rec), at) for i, n, un, op, rec, at in rows}
