"""One estate's day in figures (issue 14 §5; seeds/001 4.10: 每日晚班客服助理需汇总巡查中发现问题，于每日18:30前发送):
repair tickets and complaints opened / closed / still open (by priority, the breached ones named), inspection rounds
by schedule and status, alarms raised and still open by severity, callbacks made and due.

The day is the estate's local calendar day, from local midnight to `as_of` (now, for today; the next midnight for
a day that has ended). The 18:30 message (alarms/daily_summary_notices.py), the page ``/summary/daily`` and the JSON
``/api/summary/daily`` all show `compose`'s figures, so they cannot disagree.

It lives in ``alarms`` because that is the lowest layer that may read tickets, rounds and alarms together; the reads
are each domain's queries. Nothing here formats for a language: the message and the page word the figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alarms.const import Severity
from alarms.queries import day_alarm_counts
from alarms.rounds import RoundStatus
from alarms.rounds_queries import DayRound, rounds_of_day
from storage.models import Estate, Ticket
from tickets import queries as ticket_queries
from tickets.const import Clock, Priority, Source, TicketStatus

PRIORITIES = tuple(p.value for p in Priority)  # urgent, high, normal, minor: the order a summary lists them
SEVERITIES = tuple(s.value for s in (Severity.critical, Severity.alarm, Severity.warning))
# The order the statuses of rounds are reported in: what was done first, what needs someone last.
ROUND_STATUSES = (
    RoundStatus.satisfied,
    RoundStatus.done,
    RoundStatus.missed,
    RoundStatus.manual_due,
    RoundStatus.open,
)


def day_bounds(day: date, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of `day` in the estate's zone."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    return datetime.combine(day, time(0), zone), datetime.combine(day + timedelta(days=1), time(0), zone)


def local_day(at: datetime, tz: str | ZoneInfo) -> date:
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    return at.astimezone(zone).date()


@dataclass(frozen=True)
class NamedTicket:
    """A ticket the summary names: a breached one (with the clocks it breached) or a callback still to make."""

    id: int
    number: str
    title: str
    priority: str
    status: str
    clocks: tuple[str, ...]  # tickets.const.Clock values breached by the end of the day, earliest due first
    due_at: datetime | None  # the earliest of those due times (the callback's due time for a callback)


@dataclass(frozen=True)
class TicketFigures:
    opened: int
    closed: int
    open: int  # still open at the end of the day
    opened_by_priority: dict[str, int]
    open_by_priority: dict[str, int]
    breached: list[NamedTicket]  # open at the end of the day with a clock past due, the earliest due first


@dataclass(frozen=True)
class RoundGroup:
    """The day's rounds of one schedule name (rooms of the same kind share it)."""

    name_zh: str
    name_en: str
    by_status: dict[str, int]
    total: int
    rooms: list[tuple[int, str]]  # (room id, room code): where the rounds are
    attention: list[DayRound]  # missed and manual-due rounds, for their links


@dataclass(frozen=True)
class CallbackFigures:
    done: int  # callbacks recorded during the day
    due: int  # resolved tickets still to be called back at the end of the day
    overdue: int  # … of which the callback clock has run out
    waiting: list[NamedTicket]  # the ones still to call back, the earliest due first


@dataclass(frozen=True)
class DailyFigures:
    estate_id: int
    estate_code: str
    estate_name: str
    timezone: str
    day: date
    start: datetime
    end: datetime  # as of (now for today, the next midnight for a past day)
    tickets: TicketFigures  # repair and other tickets (every source but complaints)
    complaints: TicketFigures
    rounds: list[RoundGroup]
    rounds_total: dict[str, int]
    alarms_raised: dict[str, int]
    alarms_open: dict[str, int]
    callbacks: CallbackFigures

    def counts(self) -> dict[str, Any]:
        """The figures as JSON (the sent record's `counts`, the API's numbers): counts and ticket numbers only."""

        def section(f: TicketFigures) -> dict[str, Any]:
            return {
                "opened": f.opened,
                "closed": f.closed,
                "open": f.open,
                "opened_by_priority": f.opened_by_priority,
                "open_by_priority": f.open_by_priority,
                "breached": [t.number for t in f.breached],
            }

        return {
            "as_of": self.end.isoformat(),
            "tickets": section(self.tickets),
            "complaints": section(self.complaints),
            "rounds": {g.name_zh: g.by_status for g in self.rounds},
            "rounds_total": self.rounds_total,
            "alarms": {"raised": self.alarms_raised, "open": self.alarms_open},
            "callbacks": {"done": self.callbacks.done, "due": self.callbacks.due, "overdue": self.callbacks.overdue},
        }


def _before(moment: datetime | None, end: datetime) -> bool:
    return moment is not None and moment < end


def open_at(t: Ticket, end: datetime) -> bool:
    """Open at `end`: received before it and not closed by then (a ticket closed later was still open then)."""
    if t.received_at >= end:
        return False
    return t.status != TicketStatus.closed.value or t.closed_at is None or t.closed_at >= end


def breached_at(t: Ticket, end: datetime) -> dict[str, datetime]:
    """The clocks of an open ticket past due at `end` whose step had not happened by then (by the step's own time,
    so a past day reads as it stood that evening; tickets/sla.py's running_clocks is the same rule for now). A clock
    is breached from its due minute on (tickets.sla.breached_clocks)."""
    out: dict[str, datetime] = {}
    resolved = _before(t.resolved_at, end)
    if t.on_site_due_at is not None and t.on_site_due_at <= end and not _before(t.on_site_at, end) and not resolved:
        out[Clock.on_site.value] = t.on_site_due_at
    if t.resolve_due_at is not None and t.resolve_due_at <= end and not resolved:
        out[Clock.resolve.value] = t.resolve_due_at
    if t.callback_due_at is not None and t.callback_due_at <= end and resolved and not _before(t.callback_at, end):
        out[Clock.callback.value] = t.callback_due_at
    if t.feedback_due_at is not None and t.feedback_due_at <= end and not _before(t.feedback_at, end):
        out[Clock.feedback.value] = t.feedback_due_at
    return out


def _by_priority(tickets: Iterable[Ticket]) -> dict[str, int]:
    counted = Counter(t.priority for t in tickets)
    return {p: counted.get(p, 0) for p in PRIORITIES}


def _named(t: Ticket, clocks: dict[str, datetime]) -> NamedTicket:
    ordered = sorted(clocks.items(), key=lambda kv: (kv[1], kv[0]))
    return NamedTicket(
        id=int(t.id),
        number=t.number,
        title=t.title,
        priority=t.priority,
        status=t.status,
        clocks=tuple(c for c, _ in ordered),
        due_at=ordered[0][1] if ordered else None,
    )


def ticket_figures(tickets: list[Ticket], start: datetime, end: datetime) -> TicketFigures:
    opened = [t for t in tickets if start <= t.received_at < end]
    closed = [
        t
        for t in tickets
        if t.status == TicketStatus.closed.value and t.closed_at is not None and start <= t.closed_at < end
    ]
    still_open = [t for t in tickets if open_at(t, end)]
    breached = [_named(t, b) for t in still_open if (b := breached_at(t, end))]
    breached.sort(key=lambda n: (n.due_at or end, n.number))
    return TicketFigures(
        opened=len(opened),
        closed=len(closed),
        open=len(still_open),
        opened_by_priority=_by_priority(opened),
        open_by_priority=_by_priority(still_open),
        breached=breached,
    )


def callback_figures(tickets: list[Ticket], done: int, end: datetime) -> CallbackFigures:
    waiting = [
        t
        for t in tickets
        if open_at(t, end)
        and t.callback_due_at is not None
        and _before(t.resolved_at, end)
        and not _before(t.callback_at, end)
    ]
    named = sorted(
        (
            NamedTicket(int(t.id), t.number, t.title, t.priority, t.status, (Clock.callback.value,), t.callback_due_at)
            for t in waiting
        ),
        key=lambda n: (n.due_at or end, n.number),
    )
    overdue = sum(1 for n in named if n.due_at is not None and n.due_at <= end)
    return CallbackFigures(done=done, due=len(named), overdue=overdue, waiting=named)


def round_groups(rounds: list[DayRound]) -> tuple[list[RoundGroup], dict[str, int]]:
    """Group by schedule name (not by code: another kind of round, e.g. the customer-service rounds, shows up as
    its own group without a change here); statuses the product does not know yet are counted too."""
    groups: dict[tuple[str, str], list[DayRound]] = {}
    for r in rounds:
        groups.setdefault((r.schedule_name_zh, r.schedule_name_en), []).append(r)
    out = []
    total: Counter[str] = Counter()
    for (zh, en), rs in groups.items():
        counted = Counter(r.status for r in rs)
        total.update(counted)
        by_status = {s: counted.get(s, 0) for s in ROUND_STATUSES} | {
            s: n for s, n in counted.items() if s not in ROUND_STATUSES
        }
        rooms = sorted({(r.room_id, r.room_code) for r in rs if r.room_id is not None and r.room_code is not None})
        attention = [r for r in rs if r.status in (RoundStatus.missed, RoundStatus.manual_due)]
        out.append(RoundGroup(zh, en, by_status, len(rs), rooms, attention))
    totals = {s: total.get(s, 0) for s in ROUND_STATUSES} | {s: n for s, n in total.items() if s not in ROUND_STATUSES}
    return out, totals


def compose(session: Session, estate: Estate, day: date, now: datetime) -> DailyFigures:
    """The estate's figures for its local `day`, as of `now` (or the day's end, once the day is over)."""
    start, next_midnight = day_bounds(day, estate.timezone)
    end = max(start, min(next_midnight, now))
    tickets = ticket_queries.day_tickets(session, estate.id, start, end)
    complaints = [t for t in tickets if t.source == Source.complaint.value]
    others = [t for t in tickets if t.source != Source.complaint.value]
    groups, rounds_total = round_groups(rounds_of_day(session, estate.id, start, end))
    raised, still_open = day_alarm_counts(session, estate.id, start, end)
    return DailyFigures(
        estate_id=estate.id,
        estate_code=estate.code,
        estate_name=estate.name,
        timezone=estate.timezone,
        day=day,
        start=start,
        end=end,
        tickets=ticket_figures(others, start, end),
        complaints=ticket_figures(complaints, start, end),
        rounds=groups,
        rounds_total=rounds_total,
        alarms_raised={s: raised.get(s, 0) for s in SEVERITIES},
        alarms_open={s: still_open.get(s, 0) for s in SEVERITIES},
        callbacks=callback_figures(tickets, ticket_queries.callbacks_made(session, estate.id, start, end), end),
    )


__all__ = [
    "PRIORITIES",
    "ROUND_STATUSES",
    "SEVERITIES",
    "CallbackFigures",
    "DailyFigures",
    "NamedTicket",
    "RoundGroup",
    "TicketFigures",
    "breached_at",
    "compose",
    "day_bounds",
    "local_day",
    "open_at",
]
