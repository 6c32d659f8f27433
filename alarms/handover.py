"""Shift handover (交接班): a shift's facts, handing it over (交班) and the incoming engineer's sign-off (接班签字).

A shift's facts are read from the domains for [shift start, shift end): alarms raised and cleared (alarms), tickets
received and closed with every ticket still open and its running SLA clocks (tickets), inspection windows done and
missed (rounds) — plus the alarms still open, which the incoming engineer inherits. The outgoing engineer hands
over with notes; the facts are frozen into the record then (``snapshot``), so the printed record says what the
engineers saw when they signed. A different engineer of the estate signs once; after that the row is final (a
trigger refuses any UPDATE) and both steps are in the audit log.

Which shift is being handed over: the current one, or the one that just ended while it is not yet signed and
its end is less than HANDOVER_GRACE ago (the handover meeting runs over the boundary: at 20:05 the day shift is
still the one on the table).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import handover_queries, rounds_queries
from alarms import queries as alarm_queries
from alarms.shifts import ShiftWindow, definitions, previous_shift, shift_at
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import Estate, ShiftHandover, StaffUser
from tickets import queries as ticket_queries
from tickets.const import TicketStatus
from tickets.sla import running_clocks

HANDOVER_GRACE = timedelta(hours=2)
NOTES_MAX = 1000  # the record is one A4 page
SNAPSHOT_VERSION = 1
# Handovers of one estate take turns (two engineers pressing 交班 at once make one record, not an error).
HANDOVER_LOCK_SPACE = 0x5A1F
DONE_ROUNDS = frozenset({"satisfied", "done"})
PENDING_ROUNDS = frozenset({"open", "manual_due"})


def _zone(estate: Estate) -> ZoneInfo:
    try:
        return ZoneInfo(estate.timezone or "Asia/Shanghai")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Asia/Shanghai")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _name(user: StaffUser) -> str:
    return user.display_name or user.username


# --- which shift --------------------------------------------------------------------------------------------


def open_windows(session: Session, estate: Estate, now: datetime) -> list[ShiftWindow]:
    """The shifts that may be handed over now: the one that just ended (within the grace), then the current."""
    shifts = definitions(session, estate.id)
    tz = _zone(estate)
    current = shift_at(shifts, tz, now)
    previous = previous_shift(shifts, tz, current)
    return [previous, current] if now < previous.end + HANDOVER_GRACE else [current]


def due_window(session: Session, estate: Estate, now: datetime) -> ShiftWindow:
    """The shift the handover page is about now: the one that just ended while its record is unsigned and the
    grace runs, else the current one."""
    windows = open_windows(session, estate, now)
    if len(windows) == 2:
        rec = handover_queries.record_for(session, estate.id, windows[0].start)
        if rec is None or rec.signed_at is None:
            return windows[0]
    return windows[-1]


def window_of(session: Session, estate: Estate, shift_start: datetime, now: datetime) -> ShiftWindow:
    """The open shift that began at ``shift_start``, or 409 when it is no longer (or not yet) handed over."""
    for window in open_windows(session, estate, now):
        if window.start == shift_start:
            return window
    raise Conflict("that shift is not open for handover now / 该班次当前不在交接班时段")


# --- the facts ----------------------------------------------------------------------------------------------


def _alarm(a: alarm_queries.ShiftAlarm) -> dict[str, Any]:
    return {
        "id": a.id,
        "title_zh": a.title_zh,
        "title_en": a.title_en,
        "severity": a.severity,
        "state": a.state,
        "raised_at": _iso(a.raised_at),
        "acknowledged_at": _iso(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
        "cleared_at": _iso(a.cleared_at),
        "clear_reason": a.clear_reason,
        "cleared_by": a.cleared_by,
        "peak": a.peak,
        "last_value": a.last_value,
        "metric": a.metric,
        "point_label": a.point_label,
        "unit": a.point_unit,
        "device_name": a.device_name,
        "device_code": a.device_code,
        "room_name": a.room_name,
        "room_code": a.room_code,
        "unit_code": a.unit_code,
        "ticket_number": a.ticket_number,
    }


def _ticket(row: ticket_queries.TicketRow, now: datetime) -> dict[str, Any]:
    t = row.ticket
    clocks = [
        {"clock": clock.value, "due_at": _iso(due), "breached": now >= due}
        for clock, due in sorted(running_clocks(t).items(), key=lambda kv: kv[1])
    ]
    return {
        "id": t.id,
        "number": t.number,
        "title": t.title,
        "priority": t.priority,
        "status": t.status,
        "source": t.source,
        "category": t.category,
        "room_name": row.room_name,
        "room_code": row.room_code,
        "unit_code": row.unit_code,
        "device_name": row.device_name,
        "assignee": row.assignee_name or row.assignee_username,
        "received_at": _iso(t.received_at),
        "resolved_at": _iso(t.resolved_at),
        "closed_at": _iso(t.closed_at),
        "escalation_level": t.escalation_level,
        "clocks": clocks,
    }


def _round(r: rounds_queries.ShiftRound) -> dict[str, Any]:
    return {
        "id": r.id,
        "schedule_name_zh": r.schedule_name_zh,
        "schedule_name_en": r.schedule_name_en,
        "room_name": r.room_name,
        "room_code": r.room_code,
        "window_start": _iso(r.window_start),
        "window_end": _iso(r.window_end),
        "status": r.status,
        "satisfied_by": r.satisfied_by,
        "performed_by": r.performed_by,
        "performed_at": _iso(r.performed_at),
        "ticket_number": r.ticket_number,
    }


def _urgency(ticket: dict[str, Any]) -> tuple[bool, str]:
    """Open tickets with a breached clock first, then by their next due time (ISO UTC text sorts as time)."""
    clocks = ticket["clocks"]
    breached = any(c["breached"] for c in clocks)
    first_due = min((datetime.fromisoformat(c["due_at"]) for c in clocks), default=None)
    return (not breached, first_due.astimezone(UTC).isoformat() if first_due else "~")


def _in(window: ShiftWindow, at: datetime | None) -> bool:
    return at is not None and window.start <= at < window.end


def shift_facts(session: Session, estate: Estate, window: ShiftWindow, now: datetime) -> dict[str, Any]:
    """What happened in the shift and what is still open at ``now``, as plain JSON (the record's snapshot)."""
    alarms = alarm_queries.shift_alarms(session, estate.id, window.start, window.end)
    tickets = ticket_queries.shift_tickets(session, estate.id, window.start, window.end)
    rounds = rounds_queries.shift_rounds(session, estate.id, window.start, window.end)

    raised = [_alarm(a) for a in alarms if _in(window, a.raised_at)]
    cleared = [_alarm(a) for a in alarms if _in(window, a.cleared_at)]
    still_open = [_alarm(a) for a in alarms if a.state != "cleared"]
    opened = [_ticket(r, now) for r in tickets if _in(window, r.ticket.received_at)]
    closed = [_ticket(r, now) for r in tickets if _in(window, r.ticket.closed_at)]
    open_tickets = [_ticket(r, now) for r in tickets if r.ticket.status != TicketStatus.closed.value]
    open_tickets.sort(key=_urgency)
    done = [_round(r) for r in rounds if r.status in DONE_ROUNDS]
    missed = [_round(r) for r in rounds if r.status == "missed"]
    pending = [_round(r) for r in rounds if r.status in PENDING_ROUNDS]
    return {
        "v": SNAPSHOT_VERSION,
        "estate": {"code": estate.code, "name": estate.name, "timezone": estate.timezone},
        "shift": {
            "code": window.code,
            "name_zh": window.name_zh,
            "name_en": window.name_en,
            "start": _iso(window.start),
            "end": _iso(window.end),
        },
        "as_of": _iso(now),
        "counts": {
            "alarms_raised": len(raised),
            "alarms_cleared": len(cleared),
            "alarms_open": len(still_open),
            "alarms_open_critical": sum(1 for a in still_open if a["severity"] == "critical"),
            "alarms_open_unacknowledged": sum(1 for a in still_open if a["state"] == "active"),
            "tickets_opened": len(opened),
            "tickets_closed": len(closed),
            "tickets_open": len(open_tickets),
            "tickets_breached": sum(1 for t in open_tickets if any(c["breached"] for c in t["clocks"])),
            "rounds_total": len(rounds),
            "rounds_done": len(done),
            "rounds_missed": len(missed),
            "rounds_pending": len(pending),
        },
        "alarms": {"raised": raised, "cleared": cleared, "open": still_open},
        "tickets": {"opened": opened, "closed": closed, "open": open_tickets},
        "rounds": {"done": done, "missed": missed, "pending": pending},
    }


# --- handing over and signing -------------------------------------------------------------------------------


def clean_notes(notes: str) -> str:
    text = notes.replace("\r\n", "\n").strip()
    if "\x00" in text:
        raise InvalidInput("notes may not contain NUL / 交班记录含非法字符")
    if len(text) > NOTES_MAX:
        raise InvalidInput(f"notes exceed {NOTES_MAX} characters / 交班记录不能超过 {NOTES_MAX} 字")
    return text


def hand_over(
    session: Session,
    estate: Estate,
    user: StaffUser,
    *,
    notes: str,
    now: datetime,
    shift_start: datetime | None = None,
) -> ShiftHandover:
    """交班: record the shift with the outgoing engineer's notes and its facts as of now. The same engineer may
    hand over again (amended notes, fresh facts) until the incoming engineer has signed."""
    text = clean_notes(notes)
    session.execute(select(func.pg_advisory_xact_lock(HANDOVER_LOCK_SPACE, estate.id)))
    window = (
        window_of(session, estate, shift_start, now) if shift_start is not None else due_window(session, estate, now)
    )
    facts = shift_facts(session, estate, window, now)
    rec = handover_queries.record_for(session, estate.id, window.start)
    if rec is not None:
        if rec.signed_at is not None:
            raise Conflict(
                f"this shift was signed for by {rec.incoming_name} and is final / "
                f"该班次已由 {rec.incoming_name} 接班签字，记录不可更改"
            )
        if rec.outgoing_id != user.id:
            raise Conflict(f"this shift was handed over by {rec.outgoing_name} / 该班次已由 {rec.outgoing_name} 交班")
        rec.notes, rec.snapshot, rec.handed_over_at = text, facts, now
        action = "handover.amend"
    else:
        rec = ShiftHandover(
            estate_id=estate.id,
            shift_code=window.code,
            shift_name_zh=window.name_zh,
            shift_name_en=window.name_en,
            shift_start=window.start,
            shift_end=window.end,
            outgoing_id=user.id,
            outgoing_name=_name(user),
            notes=text,
            snapshot=facts,
            handed_over_at=now,
        )
        session.add(rec)
        action = "handover.hand_over"
    session.flush()
    accounts.audit(
        session,
        user,
        action,
        f"handover:{rec.id}",
        {"estate": estate.code, "shift": window.code, "start": _iso(window.start), "counts": facts["counts"]},
    )
    return rec


def sign(
    session: Session,
    handover_id: int,
    user: StaffUser,
    *,
    visible: Collection[int],
    now: datetime,
    note: str = "",
) -> ShiftHandover:
    """接班签字: the incoming engineer — anyone of the estate's handover roles but the outgoing one — signs, once."""
    text = clean_notes(note) if note else ""
    rec = session.scalar(select(ShiftHandover).where(ShiftHandover.id == handover_id).with_for_update())
    if rec is None or rec.estate_id not in set(visible):
        raise NotFound("handover record not found / 未找到该交接班记录")
    if rec.signed_at is not None:
        raise Conflict(f"already signed by {rec.incoming_name} / 已由 {rec.incoming_name} 接班签字")
    if rec.outgoing_id == user.id:
        raise Conflict(
            "the incoming engineer signs, not the one handing over / 接班签字须由接班人本人完成，交班人不能自签"
        )
    rec.incoming_id = user.id
    rec.incoming_name = _name(user)
    rec.incoming_note = text or None
    rec.signed_at = now
    session.flush()
    accounts.audit(
        session,
        user,
        "handover.sign",
        f"handover:{rec.id}",
        {"outgoing": rec.outgoing_name, "start": _iso(rec.shift_start)},
    )
    return rec
