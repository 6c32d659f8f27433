"""Reads of customer-service rounds for the estate calendar, the task page and the JSON API, as typed rows."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.orm import Session

from alarms.rounds import EQUIPMENT


@dataclass(frozen=True)
class ServiceSchedule:
    id: int
    code: str
    kind: str
    role: str | None
    name_zh: str
    name_en: str
    interval_minutes: int
    calendar: str | None
    grace_minutes: int
    enabled: bool


@dataclass(frozen=True)
class ServiceRound:
    """One round of a service schedule with its task counts."""

    id: int
    schedule_id: int
    kind: str
    window_start: datetime
    window_end: datetime
    status: str
    satisfied_by: str | None
    alarm_id: int | None
    performed_by: str | None
    performed_at: datetime | None
    tasks: int
    done: int
    skipped: int
    pending: int
    findings: int


def service_schedules(session: Session, estate_id: int) -> list[ServiceSchedule]:
    rows = session.execute(
        text(
            "SELECT id, code, kind, role, name_zh, name_en, interval_minutes, calendar, grace_minutes, enabled "
            "FROM round_schedules WHERE estate_id = :e AND kind <> :eq ORDER BY interval_minutes = 0, "
            "interval_minutes, code"
        ),
        {"e": estate_id, "eq": EQUIPMENT},
    ).mappings()
    return [ServiceSchedule(**{f.name: r[f.name] for f in fields(ServiceSchedule)}) for r in rows]


def service_rounds_between(
    session: Session, estate_id: int, lo: datetime, hi: datetime, *, limit: int
) -> list[ServiceRound]:
    """The estate's service rounds whose window overlaps (lo, hi), by window start then schedule, at most `limit`."""
    rows = session.execute(
        text(
            """
            SELECT r.id, r.schedule_id, r.kind, r.window_start, r.window_end, r.status, r.satisfied_by, r.alarm_id,
                   r.performed_by, r.performed_at,
                   count(t.id) AS tasks,
                   count(t.id) FILTER (WHERE t.status = 'done') AS done,
                   count(t.id) FILTER (WHERE t.status = 'skipped') AS skipped,
                   count(t.id) FILTER (WHERE t.status = 'pending') AS pending,
                   count(t.id) FILTER (WHERE t.outcome = 'finding') AS findings
            FROM inspection_rounds r
            LEFT JOIN round_tasks t ON t.round_id = r.id
            WHERE r.estate_id = :e AND r.kind <> :eq AND r.window_end > :lo AND r.window_start < :hi
            GROUP BY r.id
            ORDER BY r.window_start, r.schedule_id
            LIMIT :limit
            """
        ),
        {"e": estate_id, "eq": EQUIPMENT, "lo": lo, "hi": hi, "limit": limit},
    ).mappings()
    return [ServiceRound(**{f.name: r[f.name] for f in fields(ServiceRound)}) for r in rows]


@dataclass(frozen=True)
class TaskRow:
    """One task with its round, schedule, unit or building, estate and ticket named."""

    id: int
    round_id: int
    estate_id: int
    estate_code: str
    estate_name: str
    timezone: str
    kind: str
    role: str | None
    schedule_name_zh: str
    schedule_name_en: str
    window_start: datetime
    window_end: datetime
    round_status: str
    unit_id: int | None
    unit_code: str | None
    building_id: int | None
    building_code: str | None
    building_name: str | None
    status: str
    performed_by: str | None
    performed_at: datetime | None
    outcome: str | None
    notes: str | None
    ticket_id: int | None
    ticket_number: str | None


_TASKS = """
SELECT t.id, t.round_id, t.estate_id, e.code AS estate_code, e.name AS estate_name, e.timezone, r.kind, s.role,
       s.name_zh AS schedule_name_zh, s.name_en AS schedule_name_en, r.window_start, r.window_end,
       r.status AS round_status, t.unit_id, u.code AS unit_code,
       coalesce(t.building_id, ub.id) AS building_id, coalesce(b.code, ub.code) AS building_code,
       coalesce(b.name, ub.name) AS building_name,
       t.status, t.performed_by, t.performed_at, t.outcome, t.notes, t.ticket_id, tk.number AS ticket_number
FROM round_tasks t
JOIN inspection_rounds r ON r.id = t.round_id
JOIN round_schedules s ON s.id = r.schedule_id
JOIN estates e ON e.id = t.estate_id
LEFT JOIN units u ON u.id = t.unit_id
LEFT JOIN buildings ub ON ub.id = u.building_id
LEFT JOIN buildings b ON b.id = t.building_id
LEFT JOIN tickets tk ON tk.id = t.ticket_id
"""
_TASK_FIELDS = tuple(f.name for f in fields(TaskRow))


def _task(row: RowMapping) -> TaskRow:
    return TaskRow(**{name: row[name] for name in _TASK_FIELDS})


def task_row(session: Session, task_id: int) -> TaskRow | None:
    row = session.execute(text(_TASKS + " WHERE t.id = :id"), {"id": task_id}).mappings().first()
    return None if row is None else _task(row)


def tasks_due(
    session: Session,
    estate_ids: Collection[int],
    now: datetime,
    *,
    roles: Collection[str] | None,
    include_recorded: bool = False,
    limit: int,
) -> list[TaskRow]:
    """Pending tasks of the rounds begun by `now` that are open (under way, or in their grace after the window) or
    missed (still worth doing late), in the given estates, of rounds done by `roles` (None: every role): the
    earliest window end first, then by place; then (when asked) the tasks recorded in the windows under way."""
    if not estate_ids:
        return []
    statuses = ["pending", "done", "skipped"] if include_recorded else ["pending"]
    rows = session.execute(
        text(
            _TASKS
            + """
            WHERE t.estate_id = ANY(CAST(:estates AS int[]))
              AND t.status = ANY(CAST(:statuses AS text[]))
              AND (CAST(:roles AS text[]) IS NULL OR s.role = ANY(CAST(:roles AS text[])))
              AND r.window_start <= :now
              AND ((t.status = 'pending' AND r.status IN ('open', 'missed'))
                   OR (t.status <> 'pending' AND r.window_end > :now))
            ORDER BY t.status <> 'pending', r.window_end, e.code, s.code,
                     coalesce(b.code, ub.code), u.code, t.id
            LIMIT :limit
            """
        ),
        {
            "estates": sorted(estate_ids),
            "statuses": statuses,
            "roles": sorted(roles) if roles is not None else None,
            "now": now,
            "limit": limit,
        },
    ).mappings()
    return [_task(r) for r in rows]


def round_tasks(session: Session, round_id: int) -> list[TaskRow]:
    rows = session.execute(
        text(_TASKS + " WHERE t.round_id = :r ORDER BY coalesce(b.code, ub.code), u.code, t.id"), {"r": round_id}
    ).mappings()
    return [_task(r) for r in rows]


__all__ = [
    "ServiceRound",
    "ServiceSchedule",
    "TaskRow",
    "round_tasks",
    "service_rounds_between",
    "service_schedules",
    "task_row",
    "tasks_due",
]
