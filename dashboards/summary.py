"""The daily summary page (``/summary/daily?estate=&date=``, 每日汇总): one estate's day of tickets, complaints,
inspection rounds, alarms and callbacks, with links to the tickets and rounds it names; printable and readable on a
phone. The figures are ``alarms.daily_summary.compose`` — the same as the 18:30 message and ``/api/summary/daily``.

Who sees it is ``alarms.policy.may_read_daily_summary``; links go only where the viewer may follow them (the ticket
pages by ``tickets.policy``, the round calendars by ``alarms.policy.may_read_rounds``).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from alarms import daily_summary as ds
from alarms import policy
from alarms.const import SEVERITY_LABELS
from alarms.daily_summary_notices import SEND_AT, sent_record
from alarms.rounds import STATUS_LABELS as ROUND_STATUS_LABELS
from core import clock
from dashboards import i18n
from dashboards.i18n import Lang
from dashboards.lookups import estate_of
from dashboards.render import render
from dashboards.viewer import Viewer, ViewerDep, can_see, require
from facility.queries import visible_estates
from tickets.const import CLOCK_LABELS, PRIORITY_LABELS, STATUS_LABELS
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def summary_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, policy.may_read_daily_summary(viewer.role))


SummaryViewer = Annotated[Viewer, Depends(summary_viewer)]


def _day(text: str | None, today: date) -> date:
    """The asked day; today for none, a malformed one or one that has not begun (a page shows rather than errs)."""
    if text and DAY.match(text):
        try:
            asked = date.fromisoformat(text)
        except ValueError:
            return today
        return asked if asked <= today else today
    return today


def _named(n: ds.NamedTicket, lang: Lang, tz: ZoneInfo, see_tickets: bool) -> dict[str, Any]:
    return {
        "id": n.id,
        "number": n.number,
        "title": n.title,
        "href": f"/tickets/{n.id}" if see_tickets else None,
        "priority": n.priority,
        "priority_label": i18n.label(PRIORITY_LABELS, n.priority, lang),
        "status_label": i18n.label(STATUS_LABELS, n.status, lang),
        "clocks": ("、" if lang == "zh" else ", ").join(i18n.label(CLOCK_LABELS, c, lang) for c in n.clocks),
        "due": i18n.format_time(n.due_at, tz, seconds=False) if n.due_at else "",
    }


def _tickets(f: ds.TicketFigures, lang: Lang, tz: ZoneInfo, see_tickets: bool) -> dict[str, Any]:
    return {
        "opened": f.opened,
        "closed": f.closed,
        "open": f.open,
        "priorities": [
            {
                "key": p,
                "label": i18n.label(PRIORITY_LABELS, p, lang),
                "opened": f.opened_by_priority.get(p, 0),
                "open": f.open_by_priority.get(p, 0),
            }
            for p in ds.PRIORITIES
        ],
        "breached": [_named(n, lang, tz, see_tickets) for n in f.breached],
    }


def summary_view(f: ds.DailyFigures, viewer: Viewer) -> dict[str, Any]:
    """The figures worded for the viewer's language, times in the estate's zone, links where the viewer may go."""
    lang, tz = viewer.lang, i18n.zone(f.timezone)
    see_tickets, see_rounds = can_see(viewer, "tickets"), policy.may_read_rounds(viewer.role)
    statuses = list(f.rounds_total)
    rounds: list[dict[str, Any]] = []
    for g in f.rounds:
        rounds.append(
            {
                "name": g.name_en if lang == "en" and g.name_en else g.name_zh,
                "total": g.total,
                "counts": [g.by_status.get(s, 0) for s in statuses],
                "rooms": [
                    {"code": code, "href": f"/rooms/{room_id}/rounds" if see_rounds else None}
                    for room_id, code in g.rooms
                ],
                "attention": [
                    {
                        "status": r.status,
                        "status_label": i18n.lookup(ROUND_STATUS_LABELS, r.status, lang),
                        "room": r.room_code or "",
                        "window": f"{i18n.format_time(r.window_start, tz, seconds=False, date=False)}–"
                        f"{i18n.format_time(r.window_end, tz, seconds=False, date=False)}",
                        # A customer-service round has no room: its calendar is the estate's (service rounds).
                        "href": f"/rooms/{r.room_id}/rounds?round={r.id}" if see_rounds and r.room_id else None,
                        "ticket_href": f"/tickets/{r.ticket_id}" if r.ticket_id and see_tickets else None,
                    }
                    for r in g.attention
                ],
            }
        )
    return {
        "tickets": _tickets(f.tickets, lang, tz, see_tickets),
        "complaints": _tickets(f.complaints, lang, tz, see_tickets),
        "round_statuses": [{"key": s, "label": i18n.lookup(ROUND_STATUS_LABELS, s, lang)} for s in statuses],
        "rounds": rounds,
        "attention": [(g["name"], a) for g in rounds for a in g["attention"]],
        "rounds_total": [f.rounds_total[s] for s in statuses],
        "rounds_sum": sum(f.rounds_total.values()),
        "missed": f.rounds_total.get("missed", 0),
        "alarms": [
            {
                "key": s,
                "label": i18n.label(SEVERITY_LABELS, s, lang),
                "raised": f.alarms_raised.get(s, 0),
                "open": f.alarms_open.get(s, 0),
            }
            for s in ds.SEVERITIES
        ],
        "alarms_raised": sum(f.alarms_raised.values()),
        "alarms_open": sum(f.alarms_open.values()),
        "callbacks": {
            "done": f.callbacks.done,
            "due": f.callbacks.due,
            "overdue": f.callbacks.overdue,
            "waiting": [_named(n, lang, tz, see_tickets) for n in f.callbacks.waiting],
        },
        "see_tickets": see_tickets,
        "see_alarms": can_see(viewer, "alarms"),
        "start": i18n.format_time(f.start, tz, seconds=False),
        "end": i18n.format_time(f.end, tz, seconds=False),
    }


@router.get("/summary/daily", response_class=HTMLResponse)
def daily_summary_page(
    request: Request,
    session: ReadSessionDep,
    viewer: SummaryViewer,
    estate: Annotated[str | None, Query(max_length=32)] = None,
    date_: Annotated[str | None, Query(alias="date", max_length=10)] = None,
) -> HTMLResponse:
    estates = visible_estates(session, viewer.visible)
    chosen = estate_of(session, estate, viewer) if estate else (estates[0] if estates else None)
    context: dict[str, Any] = {
        "estates": [(e.code, e.name) for e in estates],
        "send_at": SEND_AT.strftime("%H:%M"),
    }
    if chosen is None:
        return render(request, "summary/daily.html", viewer.lang, viewer, s=None, **context)
    now = clock.now()
    today = ds.local_day(now, chosen.timezone)
    day = _day(date_, today)
    figures = ds.compose(session, chosen, day, now)
    record = sent_record(session, chosen.id, day)
    tz = i18n.zone(chosen.timezone)
    base = f"/summary/daily?estate={chosen.code}&date="
    return render(
        request,
        "summary/daily.html",
        viewer.lang,
        viewer,
        s=summary_view(figures, viewer),
        estate=chosen,
        day=day.isoformat(),
        is_today=day == today,
        prev_href=base + (day - timedelta(days=1)).isoformat(),
        next_href=base + (day + timedelta(days=1)).isoformat() if day < today else None,
        sent_at=i18n.format_time(record.sent_at, tz, seconds=False) if record else None,
        tz=tz.key,
        **context,
    )
