"""Reads of alarms, shared by the JSON API (api/routes/alarms.py) and the pages (dashboards/alarms.py).

Rows are ``AlarmRow`` dataclasses with the columns of ``_ALARM_SELECT`` (estate, rule, subject and ticket
resolved to codes).
``ChangeMark`` tells the live alarm list and ticket board when what they show has changed.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select, text
from sqlalchemy.orm import Session

from storage.models import Estate, Room

_ALARM_SELECT = """
SELECT a.id, e.code AS estate_code, r.code AS rule_code, r.title_zh, r.title_en, a.severity, a.state,
       a.subject, d.code AS device_code, d.name AS device_name, rm.code AS room_code, u.code AS unit_code,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.metric END AS metric,
       a.raised_at, a.acknowledged_at, a.acknowledged_by, a.cleared_at, a.clear_reason, a.cleared_by,
       a.clear_note, a.peak, a.last_value, a.detail, a.ticket_id, t.number AS ticket_number
FROM alarms a
JOIN estates e ON e.id = a.estate_id
JOIN alarm_rules r ON r.id = a.rule_id
LEFT JOIN devices d ON d.id = a.device_id
LEFT JOIN rooms rm ON rm.id = coalesce(a.room_id, d.room_id)
LEFT JOIN units u ON u.id = coalesce(a.unit_id, d.unit_id)
LEFT JOIN points p ON p.id = a.point_id
LEFT JOIN tickets t ON t.id = a.ticket_id
"""
# A multi-point alarm's point_id is only its state's anchor (alarms/multipoint_evaluator.py): no metric is
# shown for it, the page names the check from the alarm's detail instead.


@dataclass(frozen=True)
class AlarmRow:
    """One alarm with its estate, rule, subject and ticket named (the columns of ``_ALARM_SELECT``)."""

    id: int
    estate_code: str
    rule_code: str
    title_zh: str
    title_en: str
    severity: str
    state: str
    subject: str
    device_code: str | None
    device_name: str | None
    room_code: str | None
    unit_code: str | None
    metric: str | None
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    clear_reason: str | None
    cleared_by: str | None
    clear_note: str | None
    peak: float | None
    last_value: float | None
    detail: dict[str, Any]
    ticket_id: int | None
    ticket_number: str | None


_ALARM_FIELDS = tuple(f.name for f in fields(AlarmRow))


def _alarm_row(row: RowMapping) -> AlarmRow:
    return AlarmRow(**{name: row[name] for name in _ALARM_FIELDS})


SEVERITY_ORDER = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'alarm' THEN 1 ELSE 2 END"


def query_alarms(
    session: Session,
    visible: set[int],
    *,
    estate: str | None = None,
    state: str | None = None,
    severity: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AlarmRow], int]:
    """Alarms the caller may see, open ones by severity then newest first (shared with the alarm page)."""
    where = ["a.estate_id = ANY(:visible)"]
    params: dict[str, Any] = {"visible": sorted(visible), "limit": limit, "offset": offset}
    if estate:
        where.append("e.code = :estate")
        params["estate"] = estate
    if state == "open":
        where.append("a.state <> 'cleared'")
    elif state:
        where.append("a.state = :state")
        params["state"] = state
    if severity:
        where.append("a.severity = :severity")
        params["severity"] = severity
    cond = " AND ".join(where)
    total = session.execute(
        text(f"SELECT count(*) FROM alarms a JOIN estates e ON e.id = a.estate_id WHERE {cond}"), params
    ).scalar_one()
    rows = session.execute(
        text(
            f"{_ALARM_SELECT} WHERE {cond} ORDER BY (a.state = 'cleared'), {SEVERITY_ORDER}, "
            "a.raised_at DESC, a.id DESC LIMIT :limit OFFSET :offset"
        ),
        params,
    ).mappings()
    return [_alarm_row(r) for r in rows], int(total)


def alarm_row(session: Session, alarm_id: int, visible: set[int]) -> AlarmRow | None:
    """One alarm of the caller's estates, or None (missing and not visible are the same answer)."""
    row = (
        session.execute(
            text(f"{_ALARM_SELECT} WHERE a.id = :id AND a.estate_id = ANY(:visible)"),
            {"id": alarm_id, "visible": sorted(visible)},
        )
        .mappings()
        .first()
    )
    return None if row is None else _alarm_row(row)


def room_ids(session: Session, visible: Set[int]) -> dict[tuple[str, str], int]:
    """(estate code, room code) → room id for the rooms of these estates (alarm rows name rooms by code)."""
    return {
        (str(e), str(c)): int(i)
        for e, c, i in session.execute(
            select(Estate.code, Room.code, Room.id)
            .join(Estate, Estate.id == Room.estate_id)
            .where(Room.estate_id.in_(visible))
        ).all()
    }


def day_alarm_counts(
    session: Session, estate_id: int, start: datetime, end: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """The estate's alarms by severity: raised in [start, end), and open at `end` (raised before it, not cleared by
    then)."""
    raised, still_open = session.execute(
        text(
            "SELECT coalesce(jsonb_object_agg(severity, n) FILTER (WHERE kind = 'raised'), '{}'),"
            " coalesce(jsonb_object_agg(severity, n) FILTER (WHERE kind = 'open'), '{}') FROM ("
            " SELECT 'raised' AS kind, severity, count(*) AS n FROM alarms"
            "  WHERE estate_id = :estate AND raised_at >= :start AND raised_at < :end GROUP BY severity"
            " UNION ALL"
            " SELECT 'open', severity, count(*) FROM alarms WHERE estate_id = :estate AND raised_at < :end"
            "  AND (state <> 'cleared' OR cleared_at >= :end) GROUP BY severity) c"
        ),
        {"estate": estate_id, "start": start, "end": end},
    ).one()
    return {str(k): int(v) for k, v in raised.items()}, {str(k): int(v) for k, v in still_open.items()}


# --- change detection for the live alarm list and ticket board --------------------------------------------------

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

    def read(self, session: Session, visible: Set[int]) -> tuple[int, int, int, int]:
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


# --- a shift's alarms (alarms/handover.py) -------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftAlarm:
    """An alarm as a shift record names it: where (room, device, the point's own label) and how it went."""

    id: int
    title_zh: str
    title_en: str
    severity: str
    state: str
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    clear_reason: str | None
    cleared_by: str | None
    peak: float | None
    last_value: float | None
    metric: str | None
    point_label: str | None
    point_unit: str | None
    device_name: str | None
    device_code: str | None
    room_name: str | None
    room_code: str | None
    unit_code: str | None
    ticket_number: str | None


_SHIFT_ALARM_FIELDS = tuple(f.name for f in fields(ShiftAlarm))
# A shift's record lists at most this many alarms (a storm of thousands is summarised by its counts instead).
SHIFT_ALARMS_MAX = 500


_PLACED_ALARM_SELECT = """
SELECT a.id, r.title_zh, r.title_en, a.severity, a.state, a.raised_at, a.acknowledged_at, a.acknowledged_by,
       a.cleared_at, a.clear_reason, a.cleared_by, a.peak, a.last_value,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.metric END AS metric,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.label END AS point_label,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.unit END AS point_unit,
       d.name AS device_name, d.code AS device_code, rm.name AS room_name, rm.code AS room_code,
       u.code AS unit_code, t.number AS ticket_number
FROM alarms a
JOIN alarm_rules r ON r.id = a.rule_id
LEFT JOIN devices d ON d.id = a.device_id
LEFT JOIN rooms rm ON rm.id = coalesce(a.room_id, d.room_id)
LEFT JOIN units u ON u.id = coalesce(a.unit_id, d.unit_id)
LEFT JOIN points p ON p.id = a.point_id
LEFT JOIN tickets t ON t.id = a.ticket_id
"""


def _placed(rows: Any) -> list[ShiftAlarm]:
    return [ShiftAlarm(**{name: row[name] for name in _SHIFT_ALARM_FIELDS}) for row in rows]


def shift_alarms(session: Session, estate_id: int, start: datetime, end: datetime) -> list[ShiftAlarm]:
    """The estate's alarms a shift handover speaks of: raised or cleared in [start, end), and every alarm still
    open now. Most severe first, then oldest."""
    rows = session.execute(
        text(
            _PLACED_ALARM_SELECT + " WHERE a.estate_id = :estate AND ((a.raised_at >= :start AND a.raised_at < :end)"
            " OR (a.cleared_at >= :start AND a.cleared_at < :end) OR a.state <> 'cleared')"
            f" ORDER BY {SEVERITY_ORDER}, a.raised_at, a.id LIMIT :limit"
        ),
        {"estate": estate_id, "start": start, "end": end, "limit": SHIFT_ALARMS_MAX},
    ).mappings()
    return _placed(rows)


def open_alarms(session: Session, estate_id: int, *, limit: int) -> list[ShiftAlarm]:
    """The estate's open alarms, most severe first, unacknowledged before acknowledged, then oldest (the wall
    display's banner)."""
    rows = session.execute(
        text(
            _PLACED_ALARM_SELECT + " WHERE a.estate_id = :estate AND a.state <> 'cleared'"
            f" ORDER BY {SEVERITY_ORDER}, (a.state = 'acknowledged'), a.raised_at, a.id LIMIT :limit"
        ),
        {"estate": estate_id, "limit": limit},
    ).mappings()
    return _placed(rows)


def open_alarm_counts(session: Session, estate_id: int) -> dict[str, int]:
    """Open alarms of the estate by severity."""
    rows = session.execute(
        text("SELECT severity, count(*) FROM alarms WHERE estate_id = :estate AND state <> 'cleared' GROUP BY 1"),
        {"estate": estate_id},
    ).all()
    return {str(sev): int(n) for sev, n in rows}
