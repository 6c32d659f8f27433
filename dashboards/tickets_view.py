"""What the ticket board and a ticket's page show, shaped as plain dicts for the templates.

The first render and every live update (``/live/tickets``) share these builders. SLA countdowns are rendered
once here (so a page without script still says "剩 14 分 32 秒") and then ticked in the browser from the due
timestamps in ``data-due``. The reads are ``tickets.queries``; the clock rules ``tickets.sla``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from accounts.const import PERSONAL_DATA_ROLES, Role
from accounts.masking import mask_name, mask_phone
from alarms.const import SEVERITY_LABELS, alarm_state_label
from core import clock, glossary
from dashboards import i18n
from dashboards.i18n import Lang, fmt_value, label
from storage.models import Ticket
from tickets import queries, sla
from tickets.const import (
    CALLBACK_CHANNEL_LABELS,
    CATEGORY_LABELS,
    CLOCK_LABELS,
    ESCALATION_ROLE_LABELS,
    ESCALATION_ROLES,
    FAULT_LABELS,
    PRIORITY_LABELS,
    PRIORITY_RANK,
    SOURCE_LABELS,
    STATUS_LABELS,
    WARRANTY_ITEM_LABELS,
    Clock,
    TicketStatus,
    assignee_word,
    reopen_count_word,
    reopen_word,
    reopened_event_word,
    reporter_word,
)

S = TicketStatus
# The board's columns, in the order work flows; closed tickets only when asked for.
BOARD_COLUMNS: tuple[TicketStatus, ...] = (S.received, S.dispatched, S.accepted, S.on_site, S.resolved, S.callback_done)
# Column titles: the board asks what is waiting for whom, so a received ticket reads 待派单 here.
BOARD_LABELS = {**STATUS_LABELS, S.received: ("待派单", "To dispatch")}
BOARD_LIMIT = 400  # open tickets on one board; more than this is a backlog no board makes readable
CLOSED_SHOWN = 30
# A clock turns amber when less than this share of its window remains, or less than WARN_FLOOR.
WARN_SHARE = 0.25
WARN_FLOOR_S = 300
# Most urgent first; 小修 (due the same day) before 一般 (2 days): tickets.const.PRIORITY_RANK.
PRIORITY_ORDER = {p: -rank for p, rank in PRIORITY_RANK.items()}


def masked_for(role: Role) -> bool:
    return role not in PERSONAL_DATA_ROLES


# --- SLA countdowns ----------------------------------------------------------------------------------------


def _span(seconds: float, lang: Lang, *, fine: bool) -> str:
    """12 分 05 秒 / 2 小时 05 分 / 1 天 3 小时 (``fine`` adds seconds under an hour)."""
    s = int(seconds)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    en = lang == "en"
    if d:
        return f"{d} d {h} h" if en else f"{d} 天 {h} 小时"
    if h:
        return f"{h} h {m:02d} min" if en else f"{h} 小时 {m:02d} 分"
    if fine:
        return f"{m} min {sec:02d} s" if en else f"{m} 分 {sec:02d} 秒"
    return f"{m} min" if en else f"{m} 分钟"


def countdown_text(remaining_s: float, lang: Lang) -> str:
    """Same wording as app.js's ticker: "剩 14 分 32 秒" before the due time, "超时 12 分钟" after."""
    if remaining_s > 0:
        span = _span(math.ceil(remaining_s), lang, fine=True)
        return f"{span} left" if lang == "en" else f"剩 {span}"
    over = -remaining_s
    seconds = f"{int(over)} s" if lang == "en" else f"{int(over)} 秒"
    span = seconds if over < 60 else _span(over, lang, fine=False)
    return f"{span} overdue" if lang == "en" else f"超时 {span}"


def clock_state(remaining_s: float, window_s: float | None) -> str:
    if remaining_s <= 0:
        return "breached"
    if remaining_s < WARN_FLOOR_S or (window_s and remaining_s < WARN_SHARE * window_s):
        return "warn"
    return "ok"


def clock_view(
    t: Ticket, c: Clock, due: datetime, now: datetime, lang: Lang, tz: ZoneInfo, restarted_at: datetime | None = None
) -> dict[str, Any]:
    start = sla.clock_start(t, c, restarted_at)
    window = (due - start).total_seconds() if start is not None and due > start else None
    remaining = (due - now).total_seconds()
    return {
        "clock": c.value,
        "label": label(CLOCK_LABELS, c.value, lang),
        "due_ms": int(due.timestamp() * 1000),
        "window_s": int(window) if window else 0,
        "due": i18n.format_time(due, tz, seconds=False),
        "state": clock_state(remaining, window),
        "text": countdown_text(remaining, lang),
    }


def next_clock(
    t: Ticket, now: datetime, lang: Lang, tz: ZoneInfo, restarted_at: datetime | None = None
) -> dict[str, Any] | None:
    """The soonest running clock (on site, resolve, callback or complaint feedback), or None."""
    running = sorted(sla.running_clocks(t).items(), key=lambda kv: kv[1])
    if not running:
        return None
    c, due = running[0]
    return clock_view(t, c, due, now, lang, tz, restarted_at)


def escalation_text(level: int, lang: Lang, source: str | None = None, clock_kind: str | None = None) -> str:
    """Who the ticket has escalated to, on its own route (a complaint's level 1 is 客服主管, not 工程主管)."""
    role = sla.route_levels(sla.escalation_route(source or "", clock_kind)).get(level) or ESCALATION_ROLES.get(level)
    if not role:
        return ""
    return i18n.t("escalated_to", lang, who=label(ESCALATION_ROLE_LABELS, role, lang))


# --- tickets -----------------------------------------------------------------------------------------------


def _place(room_name: str | None, room_kind: str | None, room_code: str | None, unit: str | None, lang: Lang) -> str:
    parts = []
    if room_code:
        parts.append(i18n.room_title(room_name or "", room_kind or "", room_code, lang))
    if unit:
        parts.append(unit)
    return " · ".join(parts)


def alarm_note(status: queries.AlarmStatus | None, lang: Lang, tz: ZoneInfo) -> dict[str, Any] | None:
    """What a card says of the ticket's alarms: 报警已恢复 14:32 when every one ended by itself (the fault may
    be gone: look before driving out), 报警已恢复 1/3 when some did, 报警未确认 2 while nobody acknowledged them."""
    if status is None or status.total == 0:
        return None
    if status.all_recovered and status.last_recovered_at is not None:
        at = i18n.format_time(status.last_recovered_at, tz, seconds=False)
        return {"kind": "recovered", "text": i18n.t("tk_alarm_recovered_at", lang, at=at)}
    if status.unacknowledged:
        return {"kind": "unacknowledged", "text": i18n.t("tk_alarm_unacked", lang, n=status.unacknowledged)}
    if status.recovered:
        return {
            "kind": "partly",
            "text": i18n.t("tk_alarm_recovered_some", lang, n=status.recovered, total=status.total),
        }
    return None


def card(
    row: queries.TicketRow,
    now: datetime,
    lang: Lang,
    tz: ZoneInfo,
    restarted: Mapping[int, datetime],
    alarms: Mapping[int, queries.AlarmStatus] | None = None,
) -> dict[str, Any]:
    t = row.ticket
    estate_code, device_code, a_name, a_user = (
        row.estate_code,
        row.device_code,
        row.assignee_name,
        row.assignee_username,
    )
    room_name, room_kind, room_code, unit_code = row.room_name, row.room_kind, row.room_code, row.unit_code
    device_name = row.device_name
    c = next_clock(t, now, lang, tz, restarted.get(t.id))
    return {
        "id": t.id,
        "number": t.number,
        "estate": estate_code,
        "status": t.status,
        "priority": t.priority,
        "priority_label": label(PRIORITY_LABELS, t.priority, lang),
        "category_label": label(CATEGORY_LABELS, t.category, lang),
        "source_label": label(SOURCE_LABELS, t.source, lang),
        "title": t.title,
        "place": _place(room_name, room_kind, room_code, unit_code, lang),
        "device": i18n.device_title(device_name or "", "", device_code or "", lang) if device_code else "",
        "assignee": (a_name or a_user) if a_user else "",
        "assignee_label": i18n.pick(assignee_word(t.source), lang),
        "clock": c,
        "escalation": escalation_text(t.escalation_level, lang, t.source, t.clock_kind) if c is not None else "",
        "escalation_level": t.escalation_level,
        "continuous": t.priority == "urgent" and t.status != S.closed,
        "received": i18n.format_time(t.received_at, tz, seconds=False),
        "alarm_note": alarm_note((alarms or {}).get(t.id), lang, tz),
    }


def board(
    session: Session,
    visible: AbstractSet[int],
    lang: Lang,
    tz: ZoneInfo,
    *,
    estate: str | None = None,
    closed: bool = False,
    assignee_id: int | None = None,
) -> dict[str, Any]:
    """The ticket board: one column per open status (most urgent first, then soonest due), optionally the latest
    closed."""
    now = clock.now()
    scope: dict[str, Any] = {"estate": estate, "assignee_id": assignee_id}
    rows = queries.board_rows(session, visible, **scope, limit=BOARD_LIMIT)
    closed_rows = queries.board_rows(session, visible, **scope, closed=True, limit=CLOSED_SHOWN) if closed else []
    restarted = queries.reopen_times(session, [r.ticket.id for r in rows if r.ticket.reopened_count])
    alarm_states = queries.alarm_status(session, [r.ticket.id for r in rows])
    # rows come in board order (tickets.queries.board_order): priority, then the nearest deadline, then received.
    cards = [card(r, now, lang, tz, restarted, alarm_states) for r in rows]
    statuses = (*BOARD_COLUMNS, S.closed) if closed else BOARD_COLUMNS
    columns = []
    for status in statuses:
        if status == S.closed:
            items = [card(r, now, lang, tz, {}) for r in closed_rows]
        else:
            items = [c for c in cards if c["status"] == status]
        columns.append({"status": status.value, "label": label(BOARD_LABELS, status.value, lang), "cards": items})
    breached = sum(1 for c in cards if c["clock"] and c["clock"]["state"] == "breached")
    return {
        "columns": columns,
        "open": len(cards),
        "breached": breached,
        "truncated": len(rows) >= BOARD_LIMIT,
        "now": i18n.format_time(now, tz, date=False),
    }


def _event_detail(action: str, d: Mapping[str, Any], names: Mapping[str, str], lang: Lang, tz: ZoneInfo) -> str:
    t = i18n.t
    parts: list[str] = []
    if action == "dispatched" and d.get("assignee"):
        parts.append(t("ev_to", lang, who=names.get(str(d["assignee"]), str(d["assignee"]))))
    if action == "resolved":
        if d.get("labour_minutes") is not None:
            parts.append(t("labour_n", lang, n=d["labour_minutes"]))
        if d.get("resident_signoff") is not None:
            parts.append(t("signoff_yes" if d["resident_signoff"] else "signoff_no", lang))
    if action == "callback":
        parts.append(label(CALLBACK_CHANNEL_LABELS, str(d.get("channel")), lang))
        parts.append(t("satisfaction_n", lang, n=d.get("satisfaction")))
    if action == "escalated":
        if d.get("notify_role"):  # the event names who was told (on the ticket's route at the time)
            parts.append(t("escalated_to", lang, who=label(ESCALATION_ROLE_LABELS, str(d["notify_role"]), lang)))
        else:
            parts.append(escalation_text(int(d.get("level") or 0), lang))
        if d.get("clock"):
            parts.append(label(CLOCK_LABELS, str(d["clock"]), lang))
    if action in ("opened", "alarm_attached", "priority_raised") and d.get("severity"):
        parts.append(label(SEVERITY_LABELS, str(d["severity"]), lang))
    if action == "priority_raised" and d.get("to"):
        parts.append(label(PRIORITY_LABELS, str(d["to"]), lang))
    if action in ("warranty_routed", "warranty_missed"):
        parts.append(str(d.get("party", "")))
    if action == "warranty_routed" and d.get("item"):  # routed by itself: which warranty and until when
        parts.append(label(WARRANTY_ITEM_LABELS, str(d["item"]), lang))
        parts.append(t("warranty_until", lang, day=d.get("expires_on", "")))
    for key in ("reason", "note", "text"):
        if d.get(key):
            parts.append(str(d[key]))
    return " · ".join(p for p in parts if p)


def ticket_detail(session: Session, t: Ticket, role: Role, lang: Lang, tz: ZoneInfo) -> dict[str, Any]:
    """Every field of one ticket, its clocks, attached alarms and timeline, in the viewer's language."""
    now = clock.now()
    row = queries.ticket_row(session, t.id)
    events = queries.events(session, t.id)
    restarted = max((e.at for e in events if e.action == "reopened"), default=None)
    alarm_states = queries.alarm_status(session, [t.id])
    view = card(row, now, lang, tz, {t.id: restarted} if restarted else {}, alarm_states)
    status_now = alarm_states.get(t.id)
    usernames = {e.actor for e in events} | {str(e.detail.get("assignee")) for e in events if e.detail.get("assignee")}
    usernames |= {u for u in (t.received_by, t.dispatched_by, t.callback_by) if u}
    names = queries.staff_names(session, usernames)
    names.setdefault("system", i18n.t("system_actor", lang))
    masked = masked_for(role)
    running = sla.running_clocks(t)
    clocks = []
    for c, due_at, done_at in (
        (Clock.on_site, t.on_site_due_at, t.on_site_at),
        (Clock.resolve, t.resolve_due_at, t.resolved_at),
        (Clock.callback, t.callback_due_at, t.callback_at),
        (Clock.feedback, t.feedback_due_at, t.feedback_at),
    ):
        if due_at is None:
            continue
        entry: dict[str, Any] = {"label": label(CLOCK_LABELS, c.value, lang), "due": i18n.format_time(due_at, tz)}
        if c in running:
            entry["running"] = clock_view(t, c, due_at, now, lang, tz, restarted)
        elif done_at is not None:
            entry["done"] = i18n.format_time(done_at, tz)
            entry["late"] = done_at > due_at
        clocks.append(entry)
    alarms = [
        {
            "id": ta.alarm.id,
            "title": ta.title_en if lang == "en" else ta.title_zh,
            "severity": ta.alarm.severity,
            "severity_label": label(SEVERITY_LABELS, ta.alarm.severity, lang),
            "state": ta.alarm.state,
            "state_label": i18n.pick(alarm_state_label(ta.alarm.state, ta.alarm.clear_reason), lang),
            "raised": i18n.format_time(ta.alarm.raised_at, tz),
            "peak": fmt_value(ta.alarm.peak),
        }
        for ta in queries.ticket_alarms(session, t.id)
    ]
    timeline = [
        {
            "at": i18n.format_time(e.at, tz),
            "actor": names.get(e.actor, e.actor),
            "actor_user": e.actor,
            "action": e.action,
            "action_label": i18n.pick(reopened_event_word(t.source), lang)
            if e.action == "reopened"
            else i18n.lookup(EVENT_LABELS, e.action, lang),
            "to": label(STATUS_LABELS, e.to_status, lang) if e.to_status and e.to_status != e.from_status else "",
            "detail": _event_detail(e.action, e.detail or {}, names, lang, tz),
        }
        for e in events
    ]
    reporter_name = t.reporter_name
    reporter_phone = t.reporter_phone
    if masked:
        reporter_name = mask_name(reporter_name) if reporter_name else reporter_name
        reporter_phone = mask_phone(reporter_phone) if reporter_phone else reporter_phone
    return {
        **view,
        "status_label": label(STATUS_LABELS, t.status, lang),
        "description": t.description,
        "reporter_name": reporter_name or "",
        "reporter_phone": reporter_phone or "",
        "masked": masked and bool(t.reporter_name or t.reporter_phone),
        "received_by": names.get(t.received_by, t.received_by),
        "received_at": i18n.format_time(t.received_at, tz),
        "dispatched_at": i18n.format_time(t.dispatched_at, tz) if t.dispatched_at else "",
        "accepted_at": i18n.format_time(t.accepted_at, tz) if t.accepted_at else "",
        "on_site_at": i18n.format_time(t.on_site_at, tz) if t.on_site_at else "",
        "resolved_at": i18n.format_time(t.resolved_at, tz) if t.resolved_at else "",
        "closed_at": i18n.format_time(t.closed_at, tz) if t.closed_at else "",
        "work_done": t.work_done or "",
        "parts": t.parts or "",
        "labour_minutes": t.labour_minutes,
        "resident_signoff": t.resident_signoff,
        "callback_by": names.get(t.callback_by, t.callback_by) if t.callback_by else "",
        "callback_at": i18n.format_time(t.callback_at, tz) if t.callback_at else "",
        "callback_channel": label(CALLBACK_CHANNEL_LABELS, t.callback_channel, lang) if t.callback_channel else "",
        "satisfaction": t.satisfaction,
        "callback_note": t.callback_note or "",
        "warranty_party": t.warranty_party or "",
        "fault": label(FAULT_LABELS, t.fault, lang) if t.fault else "",
        "warranty_due": i18n.format_time(t.warranty_due_at, tz) if t.warranty_due_at else "",
        "reopened_count": t.reopened_count,
        "reporter_label": i18n.pick(reporter_word(t.source), lang),
        "reopen_label": i18n.pick(reopen_word(t.source), lang),
        "reopen_count_label": i18n.pick(reopen_count_word(t.source), lang),
        "clocks": clocks,
        "alarms": alarms,
        "alarms_unacknowledged": status_now.unacknowledged if status_now else 0,
        "alarms_open": status_now.open if status_now else 0,
        "timeline": timeline,
        "room_id": t.room_id,
        "device_id": t.device_id,
    }


def dispatch_candidates(session: Session, estate_id: int, lang: Lang) -> list[dict[str, Any]]:
    """Engineers (then supervisors) who work at the estate: whom a ticket can be dispatched to."""
    return [
        {
            "id": c.id,
            "name": f"{c.display_name or c.username} ({i18n.role_label(c.role, lang)})",
            "username": c.username,
        }
        for c in queries.dispatch_candidates(session, estate_id)
    ]


EVENT_LABELS: dict[str, tuple[str, str]] = {
    "opened": ("受理", "Opened"),
    "dispatched": ("派单", "Dispatched"),
    "accepted": ("接单", "Accepted"),
    "on_site": ("到场", "On site"),
    "resolved": ("完工", "Resolved"),
    "callback": ("回访", "Called back"),
    "closed": ("关闭", "Closed"),
    "cancelled": ("撤销", "Cancelled"),
    "reopened": glossary.REOPENED_EVENT,  # a repair's reads 返修 (tickets.const.reopened_event_word, ticket_detail)
    "escalated": ("超时升级", "Escalated"),
    "alarm_attached": ("关联报警", "Alarm attached"),
    "priority_raised": ("提升优先级", "Priority raised"),
    "warranty_routed": ("转保修", "Sent to warranty"),
    "warranty_missed": ("开发商逾期，转工程部维修并向开发商收费", "Developer missed the due date: repaired and billed"),
    "feedback": ("投诉反馈", "Complaint feedback"),
    "comment": ("备注", "Comment"),
}
