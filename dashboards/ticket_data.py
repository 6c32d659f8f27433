"""What the alarm, ticket and inspection-round pages show, shaped as plain dicts for the templates.

The first render and every live update (``/live/tickets``) share these builders, like ``data.py`` does
for the equipment pages. SLA countdowns are rendered once here (so a page without script still says
"剩 14 分 32 秒") and then ticked in the browser from the due timestamps in ``data-due``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from accounts.const import PERSONAL_DATA_ROLES, Role
from accounts.masking import mask_name, mask_phone
from alarms.const import ALARM_STATE_LABELS, SEVERITY_LABELS
from alarms.queries import query_alarms
from alarms.rounds import STATUS_LABELS as ROUND_STATUS_LABELS
from core import clock
from dashboards import i18n
from dashboards.i18n import Lang
from storage.models import (
    Alarm,
    AlarmRuleRow,
    Device,
    Estate,
    InspectionRound,
    Point,
    Room,
    RoundSchedule,
    StaffEstate,
    StaffUser,
    Ticket,
    TicketEvent,
    Unit,
)
from tickets import sla
from tickets.const import (
    CALLBACK_CHANNEL_LABELS,
    CATEGORY_LABELS,
    CLOCK_LABELS,
    ESCALATION_ROLES,
    PRIORITY_LABELS,
    SOURCE_LABELS,
    STATUS_LABELS,
    Clock,
    TicketStatus,
)

S = TicketStatus
# The board's columns, in the order work flows; closed tickets only when asked for.
BOARD_COLUMNS: tuple[TicketStatus, ...] = (S.received, S.dispatched, S.accepted, S.on_site, S.resolved, S.callback_done)
# Column titles: the board asks what is waiting for whom, so a received ticket reads 待派单 here.
BOARD_LABELS = {**STATUS_LABELS, S.received: ("待派单", "To dispatch")}
BOARD_LIMIT = 400  # open tickets on one board; more than this is a backlog no board makes readable
CLOSED_SHOWN = 30
ALARMS_SHOWN = 200
# A clock turns amber when less than this share of its window remains, or less than WARN_FLOOR.
WARN_SHARE = 0.25
WARN_FLOOR_S = 300
ROUND_SPAN = timedelta(days=2)
PRIORITY_ORDER = {"urgent": 0, "high": 1, "normal": 2, "minor": 3}


def label(table: Mapping[Any, tuple[str, str]], key: str | None, lang: Lang) -> str:
    """A (中文, English) label from a domain table keyed by a StrEnum (or str); the key itself when unknown."""
    if key is None:
        return ""
    pair = table.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


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


def _clock_start(t: Ticket, c: Clock, restarted_at: datetime | None) -> datetime | None:
    if c == Clock.callback:
        return t.resolved_at
    if c in (Clock.on_site, Clock.resolve) and restarted_at is not None:
        return restarted_at  # a reopen restarts these clocks (tickets.service.reopen)
    return t.received_at


def clock_view(
    t: Ticket, c: Clock, due: datetime, now: datetime, lang: Lang, tz: ZoneInfo, restarted_at: datetime | None = None
) -> dict[str, Any]:
    start = _clock_start(t, c, restarted_at)
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


def escalation_text(level: int, lang: Lang) -> str:
    role = ESCALATION_ROLES.get(level)
    if not role:
        return ""
    return i18n.t("escalated_to", lang, who=i18n.role_label(role, lang))


# --- tickets -----------------------------------------------------------------------------------------------


def _place(room_name: str | None, room_kind: str | None, room_code: str | None, unit: str | None, lang: Lang) -> str:
    parts = []
    if room_code:
        parts.append(i18n.room_title(room_name or "", room_kind or "", room_code, lang))
    if unit:
        parts.append(unit)
    return " · ".join(parts)


def _restarts(session: Session, ids: list[int]) -> dict[int, datetime]:
    if not ids:
        return {}
    rows = session.execute(
        select(TicketEvent.ticket_id, func.max(TicketEvent.at))
        .where(TicketEvent.ticket_id.in_(ids), TicketEvent.action == "reopened")
        .group_by(TicketEvent.ticket_id)
    ).all()
    return {int(i): at for i, at in rows}


def _ticket_rows(session: Session, where: list[Any], *, order: Any, limit: int) -> list[Any]:
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
        .order_by(order)
        .limit(limit)
    )
    return list(session.execute(stmt).all())


def card(row: Any, now: datetime, lang: Lang, tz: ZoneInfo, restarted: Mapping[int, datetime]) -> dict[str, Any]:
    t: Ticket = row[0]
    _, estate_code, room_name, room_kind, room_code, unit_code, device_name, device_code, a_name, a_user = row
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
        "clock": c,
        "escalation": escalation_text(t.escalation_level, lang) if c is not None else "",
        "escalation_level": t.escalation_level,
        "continuous": t.priority == "urgent" and t.status != S.closed,
        "received": i18n.format_time(t.received_at, tz, seconds=False),
    }


def _sort_key(c: dict[str, Any]) -> tuple[float, int, int]:
    due = c["clock"]["due_ms"] if c["clock"] else math.inf
    return (due, PRIORITY_ORDER.get(c["priority"], 9), c["id"])


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
    """The ticket board: one column per open status (soonest due first), optionally the latest closed."""
    now = clock.now()
    where: list[Any] = [Ticket.estate_id.in_(visible)]
    if estate:
        where.append(Estate.code == estate)
    if assignee_id is not None:
        where.append(Ticket.assignee_id == assignee_id)
    rows = _ticket_rows(session, [*where, Ticket.status != S.closed.value], order=Ticket.id.desc(), limit=BOARD_LIMIT)
    closed_rows = (
        _ticket_rows(
            session, [*where, Ticket.status == S.closed.value], order=Ticket.closed_at.desc(), limit=CLOSED_SHOWN
        )
        if closed
        else []
    )
    restarted = _restarts(session, [r[0].id for r in rows if r[0].reopened_count])
    cards = [card(r, now, lang, tz, restarted) for r in rows]
    statuses = (*BOARD_COLUMNS, S.closed) if closed else BOARD_COLUMNS
    columns = []
    for status in statuses:
        if status == S.closed:
            items = [card(r, now, lang, tz, {}) for r in closed_rows]
        else:
            items = sorted((c for c in cards if c["status"] == status), key=_sort_key)
        columns.append({"status": status.value, "label": label(BOARD_LABELS, status.value, lang), "cards": items})
    breached = sum(1 for c in cards if c["clock"] and c["clock"]["state"] == "breached")
    return {
        "columns": columns,
        "open": len(cards),
        "breached": breached,
        "truncated": len(rows) >= BOARD_LIMIT,
        "now": i18n.format_time(now, tz, date=False),
    }


def staff_names(session: Session, usernames: set[str]) -> dict[str, str]:
    if not usernames:
        return {}
    rows = session.execute(
        select(StaffUser.username, StaffUser.display_name).where(StaffUser.username.in_(usernames))
    ).all()
    return {u: (d or u) for u, d in rows}


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
        parts.append(escalation_text(int(d.get("level") or 0), lang))
        if d.get("clock"):
            parts.append(label(CLOCK_LABELS, str(d["clock"]), lang))
    if action in ("opened", "alarm_attached", "priority_raised") and d.get("severity"):
        parts.append(label(SEVERITY_LABELS, str(d["severity"]), lang))
    if action == "priority_raised" and d.get("to"):
        parts.append(label(PRIORITY_LABELS, str(d["to"]), lang))
    if action == "warranty_routed":
        parts.append(str(d.get("party", "")))
    for key in ("reason", "note", "text"):
        if d.get(key):
            parts.append(str(d[key]))
    return " · ".join(p for p in parts if p)


def ticket_detail(session: Session, t: Ticket, role: Role, lang: Lang, tz: ZoneInfo) -> dict[str, Any]:
    """Every field of one ticket, its clocks, attached alarms and timeline, in the viewer's language."""
    now = clock.now()
    row = _ticket_rows(session, [Ticket.id == t.id], order=Ticket.id, limit=1)[0]
    events = list(session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == t.id).order_by(TicketEvent.id)))
    restarted = max((e.at for e in events if e.action == "reopened"), default=None)
    view = card(row, now, lang, tz, {t.id: restarted} if restarted else {})
    usernames = {e.actor for e in events} | {str(e.detail.get("assignee")) for e in events if e.detail.get("assignee")}
    usernames |= {u for u in (t.received_by, t.dispatched_by, t.callback_by) if u}
    names = staff_names(session, usernames)
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
            "id": a.id,
            "title": title_en if lang == "en" else title_zh,
            "severity": a.severity,
            "severity_label": label(SEVERITY_LABELS, a.severity, lang),
            "state": a.state,
            "state_label": label(ALARM_STATE_LABELS, a.state, lang),
            "raised": i18n.format_time(a.raised_at, tz),
            "peak": fmt_value(a.peak),
        }
        for a, title_zh, title_en in session.execute(
            select(Alarm, AlarmRuleRow.title_zh, AlarmRuleRow.title_en)
            .join(AlarmRuleRow, AlarmRuleRow.id == Alarm.rule_id)
            .where(Alarm.ticket_id == t.id)
            .order_by(Alarm.id)
        ).all()
    ]
    timeline = [
        {
            "at": i18n.format_time(e.at, tz),
            "actor": names.get(e.actor, e.actor),
            "actor_user": e.actor,
            "action": e.action,
            "action_label": i18n.lookup(EVENT_LABELS, e.action, lang),
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
        "warranty_due": i18n.format_time(t.warranty_due_at, tz) if t.warranty_due_at else "",
        "reopened_count": t.reopened_count,
        "clocks": clocks,
        "alarms": alarms,
        "timeline": timeline,
        "room_id": t.room_id,
        "device_id": t.device_id,
    }


def dispatch_candidates(session: Session, estate_id: int, lang: Lang) -> list[dict[str, Any]]:
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
    return [{"id": i, "name": f"{d or u} ({i18n.role_label(r, lang)})", "username": u} for i, u, d, r in rows]


# --- alarms ------------------------------------------------------------------------------------------------


def fmt_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def alarm_list(
    session: Session,
    visible: AbstractSet[int],
    lang: Lang,
    tz: ZoneInfo,
    *,
    estate: str | None,
    state: str,
    severity: str | None,
) -> dict[str, Any]:
    rows, total = query_alarms(
        session,
        set(visible),
        estate=estate,
        state="open" if state == "open" else None,
        severity=severity,
        limit=ALARMS_SHOWN,
    )
    rooms = {
        (str(e), str(c)): int(i)
        for e, c, i in session.execute(
            select(Estate.code, Room.code, Room.id)
            .join(Estate, Estate.id == Room.estate_id)
            .where(Room.estate_id.in_(visible))
        ).all()
    }
    items = []
    for r in rows:
        metric = r["metric"] or ""
        items.append(
            {
                "id": r["id"],
                "estate": r["estate_code"],
                "title": r["title_en"] if lang == "en" else r["title_zh"],
                "severity": r["severity"],
                "severity_label": label(SEVERITY_LABELS, r["severity"], lang),
                "state": r["state"],
                "state_label": label(ALARM_STATE_LABELS, r["state"], lang),
                "raised": i18n.format_time(r["raised_at"], tz, seconds=False),
                "device": i18n.device_title(r["device_name"] or "", "", r["device_code"] or "", lang)
                if r["device_code"]
                else "",
                "device_code": r["device_code"] or "",
                "room_code": r["room_code"] or "",
                "room_id": rooms.get((r["estate_code"], r["room_code"] or "")),
                "unit_code": r["unit_code"] or "",
                "metric": i18n.point_label(metric, "", lang) if metric else r["subject"],
                "peak": fmt_value(r["peak"]),
                "last": fmt_value(r["last_value"]),
                "ticket_id": r["ticket_id"],
                "ticket_number": r["ticket_number"] or "",
                "acknowledged_by": r["acknowledged_by"] or "",
                "cleared": i18n.format_time(r["cleared_at"], tz, seconds=False) if r["cleared_at"] else "",
                "clear_note": r["clear_note"] or "",
            }
        )
    return {"alarms": items, "total": total, "shown": len(items), "now": i18n.format_time(clock.now(), tz, date=False)}


# --- inspection rounds -------------------------------------------------------------------------------------

ROUND_CSS = {"satisfied": "ok", "done": "done", "manual_due": "warn", "missed": "bad", "open": "grey"}


def _evidence_lines(evidence: Mapping[str, Any], points: Mapping[int, tuple[str, str, str]], lang: Lang) -> list[str]:
    out = []
    for pid, ev in sorted((evidence.get("points") or {}).items(), key=lambda kv: str(kv[0])):
        try:
            metric, plabel, unit = points[int(pid)]
        except (KeyError, ValueError):
            metric, plabel, unit = str(pid), "", ""
        name = i18n.point_label(metric, plabel, lang)
        if isinstance(ev, Mapping) and ev.get("reason"):
            reason = i18n.lookup(i18n.STRINGS, f"ev_{ev['reason']}", lang, fallback=str(ev["reason"]))
            value = f" {fmt_value(ev['value'])}{unit}" if isinstance(ev.get("value"), int | float) else ""
            out.append(f"✗ {name}{value}: {reason}")
        elif isinstance(ev, Mapping):
            value = fmt_value(ev["value"]) if isinstance(ev.get("value"), int | float) else "—"
            out.append(f"✓ {name} {value}{unit}")
    return out


def _interval(minutes: int, lang: Lang) -> str:
    """A schedule's cadence as the SOP says it: 2 小时, 4 天, 90 分钟."""
    for size, zh, en in ((1440, "天", "days"), (60, "小时", "h"), (1, "分钟", "min")):
        if minutes % size == 0:
            n = minutes // size
            return f"{n} {en}" if lang == "en" else f"{n} {zh}"
    return f"{minutes} min"


def rounds_calendar(session: Session, room: Room, lang: Lang, tz: ZoneInfo, *, selected: int | None) -> dict[str, Any]:
    """The room's schedules, each with its windows of the last two days as cells coloured by status."""
    now = clock.now()
    lo = now - ROUND_SPAN
    schedules = list(
        session.scalars(select(RoundSchedule).where(RoundSchedule.room_id == room.id).order_by(RoundSchedule.code))
    )
    rounds = list(
        session.scalars(
            select(InspectionRound)
            .where(InspectionRound.room_id == room.id, InspectionRound.window_end > lo)
            .order_by(InspectionRound.window_start)
        )
    )
    points = {
        int(pid): (metric, plabel or "", unit or "")
        for pid, metric, plabel, unit in session.execute(
            select(Point.id, Point.metric, Point.label, Point.unit)
            .join(Device, Device.id == Point.device_id)
            .where(Device.room_id == room.id)
        ).all()
    }
    tickets = dict(
        session.execute(
            select(Ticket.id, Ticket.number).where(Ticket.id.in_({r.ticket_id for r in rounds if r.ticket_id}))
        ).all()
    )
    names = staff_names(session, {r.performed_by for r in rounds if r.performed_by})
    by_schedule: dict[int, list[dict[str, Any]]] = {s.id: [] for s in schedules}
    chosen = None
    for r in rounds:
        evidence = r.evidence or {}
        status_label = label(ROUND_STATUS_LABELS, r.status, lang)
        start = r.window_start.astimezone(tz)
        end = r.window_end.astimezone(tz)
        lines = _evidence_lines(evidence, points, lang)
        if r.status == "done":
            lines.insert(0, i18n.t("done_by", lang, who=names.get(r.performed_by or "", r.performed_by or "")))
        summary = ""
        if "required" in evidence:
            summary = i18n.t("evidence_ok", lang, ok=evidence.get("ok", 0), n=evidence["required"])
        cell = {
            "id": r.id,
            "status": r.status,
            "css": ROUND_CSS.get(r.status, "grey"),
            "status_label": status_label,
            "window": f"{start:%m-%d %H:%M}–{end:%H:%M}",
            "day": f"{start:%m-%d}",
            "hour": f"{start:%H:%M}",
            "summary": summary,
            "tooltip": "\n".join([f"{start:%m-%d %H:%M}–{end:%H:%M} {status_label}", summary, *lines[:12]]).strip(),
            "lines": lines,
            "ticket_id": r.ticket_id,
            "ticket_number": tickets.get(r.ticket_id, "") if r.ticket_id else "",
            "performed_by": names.get(r.performed_by or "", r.performed_by or ""),
            "performed_at": i18n.format_time(r.performed_at, tz, seconds=False) if r.performed_at else "",
            "readings": r.readings or {},
            "notes": r.notes or "",
            "recordable": r.status in ("open", "manual_due", "missed"),
        }
        if r.schedule_id in by_schedule:
            by_schedule[r.schedule_id].append(cell)
        if r.id == selected:
            chosen = cell
    rows = [
        {
            "id": s.id,
            "name": s.name_en if lang == "en" and s.name_en else s.name_zh,
            "every": i18n.t("every_n", lang, span=_interval(s.interval_minutes, lang)),
            "cells": by_schedule[s.id],
        }
        for s in schedules
    ]
    counts: dict[str, int] = {}
    for r in rounds:
        counts[r.status] = counts.get(r.status, 0) + 1
    legend = [
        {"status": k, "css": ROUND_CSS[k], "label": label(ROUND_STATUS_LABELS, k, lang), "n": counts.get(k, 0)}
        for k in ("satisfied", "done", "manual_due", "missed", "open")
    ]
    return {"schedules": rows, "selected": chosen, "legend": legend}


def round_room_id(session: Session, round_id: int) -> tuple[int, int] | None:
    row = session.execute(
        select(InspectionRound.room_id, InspectionRound.estate_id).where(InspectionRound.id == round_id)
    ).first()
    return (int(row[0]), int(row[1])) if row else None


# --- change detection for /live/tickets ----------------------------------------------------------------------

_GLOBAL_EVENT = text("SELECT coalesce(max(id), 0) FROM ticket_events")
_SCOPED_EVENT = text(
    "SELECT max(ev.id) FROM ticket_events ev JOIN tickets t ON t.id = ev.ticket_id "
    "WHERE ev.id > :after AND t.estate_id = ANY(:v)"
)
_ALARMS = text(
    "SELECT (SELECT coalesce(max(id), 0) FROM alarms WHERE estate_id = ANY(:v)), "
    "count(*) FILTER (WHERE state <> 'cleared'), count(*) FILTER (WHERE state = 'active') "
    "FROM alarms WHERE estate_id = ANY(:v) AND state <> 'cleared'"
)


class ChangeMark:
    """What the viewer's board and alarm list depend on, read cheaply: the newest ticket event of their
    estates (found incrementally from the global newest event, which is one index probe), the newest
    alarm, and the counts of open and unacknowledged alarms. Pages re-render only when this changes."""

    def __init__(self) -> None:
        self.global_event = -1
        self.scoped_event = 0

    def read(self, session: Session, visible: AbstractSet[int]) -> tuple[int, int, int, int]:
        v = sorted(visible)
        newest = int(session.execute(_GLOBAL_EVENT).scalar_one())
        if newest != self.global_event:
            after = self.global_event if self.global_event >= 0 else 0
            if self.global_event < 0:
                found = session.execute(
                    text(
                        "SELECT coalesce(max(ev.id), 0) FROM ticket_events ev JOIN tickets t ON t.id = ev.ticket_id "
                        "WHERE t.estate_id = ANY(:v)"
                    ),
                    {"v": v},
                ).scalar_one()
            else:
                found = session.execute(_SCOPED_EVENT, {"after": after, "v": v}).scalar_one()
            if found is not None:
                self.scoped_event = max(self.scoped_event, int(found))
            self.global_event = newest
        max_alarm, open_n, active_n = session.execute(_ALARMS, {"v": v}).one()
        return (self.scoped_event, int(max_alarm), int(open_n), int(active_n))


__all__ = [
    "BOARD_COLUMNS",
    "ChangeMark",
    "alarm_list",
    "board",
    "clock_state",
    "countdown_text",
    "dispatch_candidates",
    "rounds_calendar",
    "ticket_detail",
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
    "reopened": ("返修", "Reopened"),
    "escalated": ("超时升级", "Escalated"),
    "alarm_attached": ("关联告警", "Alarm attached"),
    "priority_raised": ("提升优先级", "Priority raised"),
    "warranty_routed": ("转保修", "Sent to warranty"),
    "feedback": ("投诉反馈", "Complaint feedback"),
    "comment": ("备注", "Comment"),
}
