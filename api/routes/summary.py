"""The daily summary as JSON (``/api/summary/daily``): each estate's day of tickets, complaints, rounds, alarms and
callbacks — the figures of the 18:30 message and of the page ``/summary/daily`` (alarms/daily_summary.py).

Who may read it is ``alarms.policy.may_read_daily_summary`` (the page asks it too); an estate the caller may not see
is 404 like a missing one.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from alarms import daily_summary as ds
from alarms import policy
from alarms.daily_summary_notices import sent_record
from api.schemas import ESTATE_CODE, Output
from core import clock
from core.errors import InvalidInput, NotFound
from facility import queries as facility
from storage.models import Estate, StaffUser
from web.deps import CurrentUser, VisibleEstates
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/summary", tags=["reports"], responses=error_responses(401, 403, 404, 422))
DAY = r"^(19[7-9]\d|2[01]\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


def _reader(user: CurrentUser) -> StaffUser:
    if not policy.may_read_daily_summary(user.role):
        raise Forbidden("your role may not read the daily summary / 当前角色无权查看每日汇总")
    return user


Readers = Annotated[StaffUser, Depends(_reader)]


class NamedTicketOut(Output):
    id: int
    number: str
    title: str
    priority: str
    status: str
    clocks: list[str] = Field(description="SLA clocks past due at the end of the day: on_site, resolve, callback, …")
    due_at: datetime | None


class TicketsOut(Output):
    opened: int
    closed: int
    open: int = Field(description="still open at the end of the day (as of `end`)")
    opened_by_priority: dict[str, int]
    open_by_priority: dict[str, int]
    breached: list[NamedTicketOut]


class RoundGroupOut(Output):
    schedule: str = Field(description="the schedule's name (Chinese); rounds are grouped by it")
    schedule_en: str
    total: int
    by_status: dict[str, int] = Field(description="satisfied, done, missed, manual_due, open")


class AlarmsOut(Output):
    raised: dict[str, int] = Field(description="raised during the day, by severity")
    open: dict[str, int] = Field(description="not cleared at the end of the day, by severity")


class CallbacksOut(Output):
    done: int
    due: int
    overdue: int
    waiting: list[NamedTicketOut]


class DailySummaryOut(Output):
    estate: str
    estate_name: str
    timezone: str
    date: dt.date = Field(description="the estate's local date")
    start: datetime = Field(description="local midnight")
    end: datetime = Field(description="as of: now for today, the next midnight for a past day")
    tickets: TicketsOut = Field(description="repair and other tickets: every source but complaints")
    complaints: TicketsOut
    rounds: list[RoundGroupOut]
    rounds_total: dict[str, int]
    alarms: AlarmsOut
    callbacks: CallbacksOut
    sent_at: datetime | None = Field(description="when the 18:30 summary of the day was sent (none: not yet)")


class DailySummaryList(Output):
    items: list[DailySummaryOut]


def _named(n: ds.NamedTicket) -> NamedTicketOut:
    return NamedTicketOut(
        id=n.id,
        number=n.number,
        title=n.title,
        priority=n.priority,
        status=n.status,
        clocks=list(n.clocks),
        due_at=n.due_at,
    )


def _tickets(f: ds.TicketFigures) -> TicketsOut:
    return TicketsOut(
        opened=f.opened,
        closed=f.closed,
        open=f.open,
        opened_by_priority=f.opened_by_priority,
        open_by_priority=f.open_by_priority,
        breached=[_named(n) for n in f.breached],
    )


def summary_out(f: ds.DailyFigures, sent_at: datetime | None) -> DailySummaryOut:
    return DailySummaryOut(
        estate=f.estate_code,
        estate_name=f.estate_name,
        timezone=f.timezone,
        date=f.day,
        start=f.start,
        end=f.end,
        tickets=_tickets(f.tickets),
        complaints=_tickets(f.complaints),
        rounds=[
            RoundGroupOut(schedule=g.name_zh, schedule_en=g.name_en, total=g.total, by_status=g.by_status)
            for g in f.rounds
        ],
        rounds_total=f.rounds_total,
        alarms=AlarmsOut(raised=f.alarms_raised, open=f.alarms_open),
        callbacks=CallbacksOut(
            done=f.callbacks.done,
            due=f.callbacks.due,
            overdue=f.callbacks.overdue,
            waiting=[_named(n) for n in f.callbacks.waiting],
        ),
        sent_at=sent_at,
    )


def _day(text: str | None, estate: Estate, now: datetime) -> dt.date:
    today = ds.local_day(now, estate.timezone)
    if text is None:
        return today
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"no such date: {text} / 日期不存在") from None
    if day > today:
        raise InvalidInput("the day has not begun in the estate / 该日期在小区当地尚未开始")
    return day


@router.get("/daily", response_model=DailySummaryList)
def daily_summary(
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    estate: Annotated[
        str | None, Query(pattern=ESTATE_CODE, description="estate code; all of yours if left out")
    ] = None,
    date_: Annotated[
        str | None,
        Query(alias="date", pattern=DAY, description="YYYY-MM-DD, the estate's local date; today if left out"),
    ] = None,
) -> DailySummaryList:
    """Each estate's day: tickets and complaints opened, closed and open (breached ones named), rounds by schedule
    and status, alarms by severity, callbacks made and due; with when the 18:30 summary was sent."""
    if estate is not None:
        found = facility.estate_by_code(session, estate)
        if found is None or found.id not in visible:
            raise NotFound("estate not found / 未找到该小区")
        estates = [found]
    else:
        estates = facility.visible_estates(session, visible)
    now = clock.now()
    items = []
    for e in estates:
        day = _day(date_, e, now)
        record = sent_record(session, e.id, day)
        items.append(summary_out(ds.compose(session, e, day, now), record.sent_at if record else None))
    return DailySummaryList(items=items)
