"""Write alarm episodes: the one place that inserts, clears and acknowledges `alarms` rows.

Every producer (the point-rule evaluator in ingest, the meter anomaly detectors, the stale-data
watchdog and the inspection-round job in the worker) raises through `insert_alarms`, so the
invariant "at most one open alarm per (rule, subject)" is enforced in one statement by the partial
unique index, and every new alarm goes through the same `on_raised` hook (tickets/).

Functions take a SQLAlchemy `Connection` (ingest works at that level; a `Session` caller passes
`session.connection()`), never commit, and are set-based: one statement per call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from alarms.const import AlarmState
from core.errors import Conflict, NotFound

# Called with the ids of alarms just inserted, inside the same transaction (tickets.from_alarms).
OnRaised = Callable[[Connection, list[int]], object]


def point_subject(point_id: int) -> str:
    return f"point:{point_id}"


def device_subject(device_id: int) -> str:
    return f"device:{device_id}"


@dataclass(frozen=True, slots=True)
class NewAlarm:
    rule_id: int
    subject: str
    estate_id: int
    severity: str
    raised_at: datetime
    point_id: int | None = None
    device_id: int | None = None
    room_id: int | None = None
    unit_id: int | None = None
    peak: float | None = None
    last_value: float | None = None
    # Already ended inside the batch that raised it (a short episode seen whole).
    cleared_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_INSERT = text(
    """
    INSERT INTO alarms (rule_id, subject, estate_id, severity, state, raised_at, cleared_at, clear_reason,
                        point_id, device_id, room_id, unit_id, peak, last_value, detail)
    SELECT r, s, e, sev, CASE WHEN cleared IS NULL THEN 'active' ELSE 'cleared' END, raised, cleared,
           CASE WHEN cleared IS NULL THEN NULL ELSE 'condition_ended' END,
           p, d, rm, u, peak, last, CAST(det AS jsonb)
    FROM unnest(CAST(:r AS int[]), CAST(:s AS text[]), CAST(:e AS int[]), CAST(:sev AS text[]),
                CAST(:raised AS timestamptz[]), CAST(:cleared AS timestamptz[]), CAST(:p AS int[]),
                CAST(:d AS int[]), CAST(:rm AS int[]), CAST(:u AS int[]), CAST(:peak AS float8[]),
                CAST(:last AS float8[]), CAST(:det AS text[]))
         AS v(r, s, e, sev, raised, cleared, p, d, rm, u, peak, last, det)
    ORDER BY r, s, raised
    ON CONFLICT (rule_id, subject) WHERE state <> 'cleared' DO NOTHING
    RETURNING id, state
    """
)


def insert_alarms(conn: Connection, alarms: Sequence[NewAlarm], on_raised: OnRaised | None = None) -> list[int]:
    """Insert episodes; one already open for the same (rule, subject) wins and the new one is dropped.

    Returns the ids inserted. `on_raised` gets the ids of those still open (an episode that began
    and ended inside one batch is recorded but opens no ticket).
    """
    if not alarms:
        return []
    rows = conn.execute(
        _INSERT,
        {
            "r": [a.rule_id for a in alarms],
            "s": [a.subject for a in alarms],
            "e": [a.estate_id for a in alarms],
            "sev": [a.severity for a in alarms],
            "raised": [a.raised_at for a in alarms],
            "cleared": [a.cleared_at for a in alarms],
            "p": [a.point_id for a in alarms],
            "d": [a.device_id for a in alarms],
            "rm": [a.room_id for a in alarms],
            "u": [a.unit_id for a in alarms],
            "peak": [a.peak for a in alarms],
            "last": [a.last_value for a in alarms],
            "det": [json.dumps(a.detail, ensure_ascii=False, default=str) for a in alarms],
        },
    ).all()
    ids = [int(r[0]) for r in rows]
    still_open = [int(r[0]) for r in rows if r[1] != AlarmState.cleared]
    if on_raised is not None and still_open:
        on_raised(conn, still_open)
    return ids


def clear_open(
    conn: Connection, rule_id: int, subjects: Sequence[str], at: datetime, reason: str = "condition_ended"
) -> int:
    """Clear the open alarms of `rule_id` on `subjects` (the condition ended); returns how many."""
    if not subjects:
        return 0
    res = conn.execute(
        text(
            "UPDATE alarms SET state = 'cleared', cleared_at = :at, clear_reason = :reason "
            "WHERE rule_id = :r AND subject = ANY(CAST(:s AS text[])) AND state <> 'cleared'"
        ),
        {"r": rule_id, "s": list(subjects), "at": at, "reason": reason},
    )
    return int(res.rowcount)


class AlarmNotFound(NotFound):
    pass


class AlarmTransitionError(Conflict):
    pass


def acknowledge(conn: Connection, alarm_id: int, actor: str, at: datetime) -> dict[str, Any]:
    """active → acknowledged (someone owns it; the condition may still hold). Acknowledging twice is a no-op."""
    row = _lock(conn, alarm_id)
    if row["state"] == AlarmState.cleared:
        raise AlarmTransitionError(f"alarm {alarm_id} is already cleared")
    if row["state"] == AlarmState.active:
        conn.execute(
            text(
                "UPDATE alarms SET state = 'acknowledged', acknowledged_at = :at, acknowledged_by = :by WHERE id = :id"
            ),
            {"id": alarm_id, "at": at, "by": actor},
        )
    return _lock(conn, alarm_id)


def clear_manually(conn: Connection, alarm_id: int, actor: str, at: datetime, note: str) -> dict[str, Any]:
    """Close an open alarm by hand; a reason is required, because the condition may still hold."""
    if not note.strip():
        raise AlarmTransitionError("a manual clear needs a reason")
    row = _lock(conn, alarm_id)
    if row["state"] == AlarmState.cleared:
        raise AlarmTransitionError(f"alarm {alarm_id} is already cleared")
    conn.execute(
        text(
            "UPDATE alarms SET state = 'cleared', cleared_at = :at, clear_reason = 'manual', cleared_by = :by, "
            "clear_note = :note WHERE id = :id"
        ),
        {"id": alarm_id, "at": at, "by": actor, "note": note.strip()},
    )
    if row["point_id"] is not None:
        # The evaluator's state must forget the episode too, or it would never raise again while
        # the value stays beyond the level; with the state gone the next crossing raises afresh.
        conn.execute(
            text("DELETE FROM alarm_states WHERE rule_id = :r AND point_id = :p"),
            {"r": row["rule_id"], "p": row["point_id"]},
        )
    return _lock(conn, alarm_id)


def _lock(conn: Connection, alarm_id: int) -> dict[str, Any]:
    row = conn.execute(text("SELECT * FROM alarms WHERE id = :id FOR UPDATE"), {"id": alarm_id}).mappings().first()
    if row is None:
        raise AlarmNotFound(f"no alarm {alarm_id}")
    return dict(row)


__all__ = [
    "AlarmNotFound",
    "AlarmTransitionError",
    "NewAlarm",
    "OnRaised",
    "acknowledge",
    "clear_manually",
    "clear_open",
    "device_subject",
    "insert_alarms",
    "point_subject",
]
