"""Reads of alarms, shared by the JSON API (api/routes/alarms.py) and the pages (dashboards/alarms.py).

Rows are mappings with the columns of ``_ALARM_SELECT`` (estate, rule, subject and ticket resolved to codes).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_ALARM_SELECT = """
SELECT a.id, e.code AS estate_code, r.code AS rule_code, r.title_zh, r.title_en, a.severity, a.state,
       a.subject, d.code AS device_code, d.name AS device_name, rm.code AS room_code, u.code AS unit_code,
       p.metric, a.raised_at, a.acknowledged_at, a.acknowledged_by, a.cleared_at, a.clear_reason, a.cleared_by,
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
) -> tuple[list[dict[str, Any]], int]:
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
    return [dict(r) for r in rows], int(total)


def alarm_row(session: Session, alarm_id: int, visible: set[int]) -> dict[str, Any] | None:
    """One alarm of the caller's estates, or None (missing and not visible are the same answer)."""
    row = (
        session.execute(
            text(f"{_ALARM_SELECT} WHERE a.id = :id AND a.estate_id = ANY(:visible)"),
            {"id": alarm_id, "visible": sorted(visible)},
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)
