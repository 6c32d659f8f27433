"""The monthly callback report (回访统计) of one estate: how many callbacks were made in the estate's local month,
the share made in person (target ≥ 70 %) and the share of satisfied residents (target ≥ 95 %), seeds/004 5.3.

Every callback counts, also one made before the ticket was reopened (the ticket's own callback fields are
cleared by a reopen, the 'callback' events stay): the report reads the events. Satisfied is 3–5 of the 1–5
scale; 1–2 is dissatisfied, as tickets.service.record_callback marks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Estate, Ticket, TicketEvent
from tickets.const import CallbackChannel

IN_PERSON_TARGET = Decimal("70")
SATISFACTION_TARGET = Decimal("95")
SATISFIED_FROM = 3


@dataclass(frozen=True)
class CallbackReport:
    estate_id: int
    month: date  # the first day of the local month
    callbacks: int
    in_person: int
    by_channel: dict[str, int]
    satisfied: int
    in_person_pct: Decimal | None  # None: no callback that month
    satisfaction_pct: Decimal | None
    in_person_met: bool | None
    satisfaction_met: bool | None


def _pct(part: int, whole: int) -> Decimal | None:
    if whole == 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def month_bounds(month: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    start = datetime(month.year, month.month, 1, tzinfo=zone)
    nxt = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=zone)
    return start, nxt


def monthly(session: Session, estate_id: int, month: date) -> CallbackReport:
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise LookupError(estate_id)
    start, end = month_bounds(month, estate.timezone)
    details = session.scalars(
        select(TicketEvent.detail)
        .join(Ticket, Ticket.id == TicketEvent.ticket_id)
        .where(
            Ticket.estate_id == estate_id,
            TicketEvent.action == "callback",
            TicketEvent.at >= start,
            TicketEvent.at < end,
        )
    ).all()
    by_channel = {c.value: 0 for c in CallbackChannel}
    satisfied = 0
    for d in details:
        by_channel[d["channel"]] = by_channel.get(d["channel"], 0) + 1
        satisfied += int(d["satisfaction"]) >= SATISFIED_FROM
    total = len(details)
    in_person = by_channel[CallbackChannel.in_person.value]
    ip, sat = _pct(in_person, total), _pct(satisfied, total)
    return CallbackReport(
        estate_id=estate_id,
        month=date(month.year, month.month, 1),
        callbacks=total,
        in_person=in_person,
        by_channel=by_channel,
        satisfied=satisfied,
        in_person_pct=ip,
        satisfaction_pct=sat,
        in_person_met=None if ip is None else ip >= IN_PERSON_TARGET,
        satisfaction_met=None if sat is None else sat >= SATISFACTION_TARGET,
    )
