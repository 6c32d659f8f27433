"""Open alarms aggregated per point, device, room and estate: what every tile, card and overview shows (issue 15 §1).

``alarm_states`` is one statement: the open alarms of the estates (found through the partial index
``ix_alarms_open_estate``, which holds only open rows, so the years of cleared history never enter the plan)
grouped by GROUPING SETS into the four levels at once, each with its worst severity, how many are open,
how many nobody acknowledged yet and the oldest of those (time and rule title).

``point_limits`` is the second: the level each point in alarm has crossed (the threshold of its rule at the
alarm's severity, with the estate / room / device overrides the evaluator applies), so a tile can read
"172.2 °C ≥ 150 °C".

``banner_alarms`` / ``banner_mark`` feed the alarm banner: the unacknowledged alarms at or above a severity,
and a cheap fingerprint of them so a live stream re-renders only when they change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from alarms.const import SEVERITY_RANK, Direction, Severity
from alarms.overrides import OverrideIndex, Subject

_RANK_SQL = "CASE a.severity WHEN 'critical' THEN 3 WHEN 'alarm' THEN 2 ELSE 1 END"
_SEVERITY_OF_RANK = {rank: str(sev) for sev, rank in SEVERITY_RANK.items()}


@dataclass(frozen=True, slots=True)
class OpenAlarms:
    """The open alarms of one point, device, room or estate."""

    severity: str  # the worst one's: warning | alarm | critical
    count: int  # open (unacknowledged + acknowledged)
    unacknowledged: int
    oldest_id: int | None  # the oldest unacknowledged one, if any
    oldest_at: datetime | None
    oldest_title_zh: str
    oldest_title_en: str


@dataclass(frozen=True, slots=True)
class AlarmStates:
    """Open alarms by level; a key that is missing has none."""

    estates: dict[int, OpenAlarms] = field(default_factory=dict)
    rooms: dict[int, OpenAlarms] = field(default_factory=dict)
    devices: dict[int, OpenAlarms] = field(default_factory=dict)
    points: dict[int, OpenAlarms] = field(default_factory=dict)


_STATES = """
WITH o AS (
    SELECT a.id, a.estate_id, a.point_id, coalesce(a.device_id, p.device_id) AS device_id,
           coalesce(a.room_id, d.room_id) AS room_id, {rank} AS rank, a.state = 'active' AS unacked,
           a.raised_at, r.title_zh, r.title_en
    FROM alarms a
    JOIN alarm_rules r ON r.id = a.rule_id
    LEFT JOIN points p ON p.id = a.point_id
    LEFT JOIN devices d ON d.id = coalesce(a.device_id, p.device_id)
    WHERE a.estate_id = ANY(:estates) AND a.state <> 'cleared' {narrow}
)
SELECT GROUPING(room_id) AS g_room, GROUPING(device_id) AS g_device, GROUPING(point_id) AS g_point,
       estate_id, room_id, device_id, point_id, max(rank) AS worst, count(*) AS n,
       count(*) FILTER (WHERE unacked) AS unacked,
       min(raised_at) FILTER (WHERE unacked) AS oldest_at,
       -- one ordered aggregate (one sort per group) for the oldest one's id and titles
       (array_agg(ARRAY[id::text, title_zh, title_en] ORDER BY raised_at, id) FILTER (WHERE unacked))[1:1] AS oldest
FROM o
GROUP BY GROUPING SETS ((estate_id), (estate_id, room_id), (estate_id, device_id), (estate_id, point_id))
"""


def alarm_states(
    session: Session, estate_ids: Collection[int], *, device_ids: Collection[int] | None = None
) -> AlarmStates:
    """Open alarms of these estates aggregated per estate, room, device and point (one statement).

    With ``device_ids`` only those devices' alarms count (a room or device page): the estate and room
    figures are then those devices' share, which such a page does not show anyway.
    """
    out = AlarmStates()
    if not estate_ids:
        return out
    params: dict[str, Any] = {"estates": sorted(estate_ids)}
    narrow = ""
    if device_ids is not None:
        if not device_ids:
            return out
        narrow = "AND coalesce(a.device_id, p.device_id) = ANY(:devices)"
        params["devices"] = sorted(device_ids)
    rows = session.execute(text(_STATES.format(rank=_RANK_SQL, narrow=narrow)), params).mappings()
    for r in rows:
        oldest = r["oldest"][0] if r["oldest"] else None
        state = OpenAlarms(
            severity=_SEVERITY_OF_RANK[int(r["worst"])],
            count=int(r["n"]),
            unacknowledged=int(r["unacked"]),
            oldest_id=None if oldest is None else int(oldest[0]),
            oldest_at=r["oldest_at"],
            oldest_title_zh=(oldest[1] if oldest else "") or "",
            oldest_title_en=(oldest[2] if oldest else "") or "",
        )
        if not r["g_point"]:
            if r["point_id"] is not None:
                out.points[int(r["point_id"])] = state
        elif not r["g_device"]:
            if r["device_id"] is not None:
                out.devices[int(r["device_id"])] = state
        elif not r["g_room"]:
            if r["room_id"] is not None:
                out.rooms[int(r["room_id"])] = state
        else:
            out.estates[int(r["estate_id"])] = state
    return out


# --- the limit beside a value in alarm ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    """The level a point's reading crossed: ``value op level`` ("≥ 150" above, "≤ 0.15" below)."""

    point_id: int
    severity: str
    op: str  # "≥" | "≤"
    level: float


_LIMITS = """
SELECT a.point_id, a.severity, a.estate_id, p.device_id, coalesce(a.room_id, d.room_id) AS room_id,
       r.id AS rule_id, r.kind, r.params
FROM alarms a
JOIN alarm_rules r ON r.id = a.rule_id
JOIN points p ON p.id = a.point_id
JOIN devices d ON d.id = p.device_id
WHERE a.estate_id = ANY(:estates) AND a.state <> 'cleared' AND r.kind IN ('threshold', 'repeat') {narrow}
"""


def point_limits(
    session: Session, estate_ids: Collection[int], *, device_ids: Collection[int] | None = None
) -> dict[int, Limit]:
    """Per point in alarm, the level its worst open threshold or repeat alarm crossed (overrides applied)."""
    if not estate_ids or (device_ids is not None and not device_ids):
        return {}
    params: dict[str, Any] = {"estates": sorted(estate_ids)}
    narrow = ""
    if device_ids is not None:
        narrow = "AND p.device_id = ANY(:devices)"
        params["devices"] = sorted(device_ids)
    rows = session.execute(text(_LIMITS.format(narrow=narrow)), params).mappings().all()
    if not rows:
        return {}
    overrides = OverrideIndex.load(session.connection())
    out: dict[int, Limit] = {}
    for r in rows:
        subject = Subject(int(r["estate_id"]), r["room_id"], int(r["device_id"]))
        merged, _ = overrides.effective(int(r["rule_id"]), r["params"] or {}, True, subject)
        limit = _limit_of(int(r["point_id"]), str(r["kind"]), str(r["severity"]), merged)
        if limit is None:
            continue
        held = out.get(limit.point_id)
        if held is None or SEVERITY_RANK[Severity(limit.severity)] > SEVERITY_RANK[Severity(held.severity)]:
            out[limit.point_id] = limit
    return out


def _limit_of(point_id: int, kind: str, severity: str, params: Mapping[str, Any]) -> Limit | None:
    above = params.get("direction", str(Direction.above)) == str(Direction.above)
    level: object
    if kind == "repeat":
        level = params.get("level")
    else:
        # The level of the alarm's severity; an alarm escalated past every configured level (or a rule
        # changed since) falls back to the highest configured level at or below its severity.
        level = None
        for sev in (Severity.critical, Severity.alarm, Severity.warning):
            if SEVERITY_RANK[sev] <= SEVERITY_RANK[Severity(severity)] and params.get(str(sev)) is not None:
                level = params[str(sev)]
                break
    if not isinstance(level, int | float) or isinstance(level, bool):
        return None
    return Limit(point_id, severity, "≥" if above else "≤", float(level))


# --- the banner -------------------------------------------------------------------------------------------------


def severities_from(minimum: str) -> list[str]:
    """The severities at or above ``minimum`` (the banner's per-user threshold)."""
    floor = SEVERITY_RANK[Severity(minimum)]
    return [str(s) for s, rank in SEVERITY_RANK.items() if rank >= floor]


@dataclass(frozen=True, slots=True)
class BannerAlarm:
    """One unacknowledged alarm as the banner names it: rule title, where, the value and its point."""

    id: int
    severity: str
    raised_at: datetime
    title_zh: str
    title_en: str
    subject: str
    detail: dict[str, Any]
    estate_id: int
    estate_code: str
    estate_tz: str
    room_id: int | None
    room_code: str | None
    room_name: str | None
    room_kind: str | None
    device_id: int | None
    device_code: str | None
    device_name: str | None
    device_kind: str | None
    point_id: int | None
    metric: str | None
    point_label: str | None
    unit: str | None
    last_value: float | None
    ticket_id: int | None
    ticket_number: str | None


_BANNER = f"""
SELECT a.id, a.severity, a.raised_at, r.title_zh, r.title_en, a.subject, a.detail, a.estate_id,
       e.code AS estate_code, e.timezone AS estate_tz,
       rm.id AS room_id, rm.code AS room_code, rm.name AS room_name, rm.kind AS room_kind,
       d.id AS device_id, d.code AS device_code, d.name AS device_name, d.kind AS device_kind,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.id END AS point_id,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.metric END AS metric,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.label END AS point_label,
       CASE WHEN r.kind = 'composite' THEN NULL ELSE p.unit END AS unit,
       a.last_value, a.ticket_id, t.number AS ticket_number
FROM alarms a
JOIN estates e ON e.id = a.estate_id
JOIN alarm_rules r ON r.id = a.rule_id
LEFT JOIN points p ON p.id = a.point_id
LEFT JOIN devices d ON d.id = coalesce(a.device_id, p.device_id)
LEFT JOIN rooms rm ON rm.id = coalesce(a.room_id, d.room_id)
LEFT JOIN tickets t ON t.id = a.ticket_id
WHERE a.estate_id = ANY(:visible) AND a.state = 'active' AND a.severity = ANY(:sev)
ORDER BY {_RANK_SQL} DESC, a.raised_at DESC, a.id DESC
LIMIT :limit
"""
_BANNER_FIELDS = BannerAlarm.__slots__

_BANNER_MARK = text(
    "SELECT count(*), coalesce(max(a.id), 0), coalesce(sum(a.id * " + _RANK_SQL + "), 0) FROM alarms a "
    "WHERE a.estate_id = ANY(:visible) AND a.state = 'active' AND a.severity = ANY(:sev)"
)


def banner_alarms(
    session: Session, visible: Collection[int], minimum: str, *, limit: int = 5
) -> tuple[list[BannerAlarm], int]:
    """The unacknowledged alarms at or above ``minimum``, worst and newest first (at most ``limit``), and
    how many there are in all."""
    if not visible:
        return [], 0
    params = {"visible": sorted(visible), "sev": severities_from(minimum), "limit": limit}
    rows = session.execute(text(_BANNER), params).mappings().all()
    total = len(rows)
    if total >= limit:
        total = int(session.execute(_BANNER_MARK, params).one()[0])
    return [BannerAlarm(**{name: r[name] for name in _BANNER_FIELDS}) for r in rows], total


def banner_mark(session: Session, visible: Collection[int], minimum: str) -> tuple[int, int, int]:
    """Changes whenever an alarm enters or leaves the banner or escalates in it: (count, newest id, Σ id × rank)."""
    if not visible:
        return (0, 0, 0)
    n, newest, weighted = session.execute(
        _BANNER_MARK, {"visible": sorted(visible), "sev": severities_from(minimum)}
    ).one()
    return (int(n), int(newest), int(weighted))


__all__ = [
    "AlarmStates",
    "BannerAlarm",
    "Limit",
    "OpenAlarms",
    "alarm_states",
    "banner_alarms",
    "banner_mark",
    "point_limits",
    "severities_from",
]
