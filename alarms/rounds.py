"""Inspection rounds (巡检): schedules per room, one round per window, satisfied by telemetry or by hand.

Customer-service rounds (schedules of a whole estate, `kind` other than 'equipment') share the tables, the
missed step (3.) and its alarm; their windows and tasks are alarms/service_rounds.py's, which the same worker job
runs after this one. Steps 1 and 2 below are the equipment rounds' only.

A schedule cuts time into windows ``[anchor + k·interval, anchor + (k+1)·interval)``. The worker
calls `evaluate_rounds` every minute:

1. **create** a round row for every window that has begun since the schedule's latest round (the
   first time only the current window: rounds are never invented for time before the schedule was
   watched; after downtime at most `MAX_CATCHUP` windows, ≤ 7 days, are filled in). The unique
   (schedule_id, window_start) makes this idempotent;
2. **decide** every open round whose window has ended: *satisfied by telemetry* when every required
   point (points of the room's devices of the schedule's `device_kinds`) reported inside the window,
   its latest in-window value is not beyond the entry level of any enabled threshold rule on its
   metric, and it had no open alarm at the window's end. Evidence per point is kept either way.
   Otherwise the round is *manual_due* and an inspection ticket (a task for the on-duty engineer)
   is opened, ``source_key = round:<id>``;
3. **miss** every open/manual_due round whose grace period after the window has passed: status
   *missed* and an alarm (rule ``inspection.round_missed``, subject ``round:<schedule id>``) through
   `alarms.store.insert_alarms`, so at most one missed-round alarm is open per schedule.

The missed alarm of a schedule clears (condition ended) when a round of that schedule that is not
older than any missed one is satisfied or done, i.e. while the latest decided round is missed the
alarm stays open. `record_manual_round` records an engineer's round (also late, on a missed round:
the missed status is replaced but the alarm episode stays in the history).

Services flush, never commit: the worker job / HTTP request owns the transaction.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, RowMapping, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.const import Direction, Severity
from alarms.packs import build_rule
from alarms.round_defaults import DEFAULT_SCHEDULES, ROOM_CATEGORY
from alarms.rules import ThresholdRule
from alarms.store import NewAlarm, OnRaised, clear_open, insert_alarms
from core import clock, glossary
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import AlarmRuleRow, Estate, InspectionRound, Room, RoundSchedule

log = logging.getLogger(__name__)

ROUND_MISSED_RULE = "inspection.round_missed"
# round_schedules.kind / inspection_rounds.kind of an equipment room's inspection (the others: service rounds).
EQUIPMENT = "equipment"
# Catch-up after worker downtime: at most this many windows per schedule and run, none older than 7 days.
MAX_CATCHUP = 84
CATCHUP_MINUTES = 7 * 24 * 60
# Rounds decided per run (the rest wait for the next run a minute later).
BATCH = 2000
# A manual record may be dated this far in the future (phone clocks).
CLOCK_SKEW = timedelta(minutes=5)
MAX_READINGS = 200


class RoundStatus:
    open = "open"
    satisfied = "satisfied"
    manual_due = "manual_due"
    done = "done"
    missed = "missed"


_ROUND_STATUSES = (
    RoundStatus.open,
    RoundStatus.satisfied,
    RoundStatus.manual_due,
    RoundStatus.done,
    RoundStatus.missed,
)
STATUS_LABELS = {status: glossary.ROUND_STATUS[status] for status in _ROUND_STATUSES}
# The rule's title before the staff's vocabulary (core/glossary.py); a row still carrying it is retitled, a title
# an operator chose is left alone.
_OLD_MISSED_TITLE_ZH = "巡检漏检"


class RoundNotFound(NotFound):
    pass


class RoundTransitionError(Conflict):
    pass


class RoundTimeError(Conflict):
    """A manual record's time does not fit the round (before its window, or in the future)."""


def round_subject(schedule_id: int) -> str:
    return f"round:{schedule_id}"


# --- rule row and default schedules --------------------------------------------------------------


def ensure_round_rule(session: Session) -> int:
    """The `inspection.round_missed` rule row (kind 'round'), created if missing; returns its id.

    An existing row is left as it is (an operator may have retitled it or changed its ticket policy), except that
    the old default title 巡检漏检 becomes the staff's 未按时巡检 (core/glossary.py).
    """
    conn = session.connection()
    rule_id = conn.execute(text("SELECT id FROM alarm_rules WHERE code = :c"), {"c": ROUND_MISSED_RULE}).scalar()
    if rule_id is not None:
        conn.execute(
            text("UPDATE alarm_rules SET title_zh = :new WHERE id = :id AND title_zh = :old"),
            {"id": rule_id, "new": glossary.ROUND_MISSED_TITLE[0], "old": _OLD_MISSED_TITLE_ZH},
        )
        return int(rule_id)
    stmt = (
        insert(AlarmRuleRow)
        .values(
            code=ROUND_MISSED_RULE,
            kind="round",
            metric="-",
            title_zh=glossary.ROUND_MISSED_TITLE[0],
            title_en=glossary.ROUND_MISSED_TITLE[1],
            params={"severity": Severity.alarm.value},
            # The manual-round ticket already exists for most missed rounds (linked to the alarm);
            # `tickets.from_alarms` decides for the others.
            ticket_policy={"min_severity": Severity.alarm.value, "priority": {"alarm": "high"}},
            enabled=True,
        )
        .on_conflict_do_nothing(index_elements=[AlarmRuleRow.code])
    )
    session.execute(stmt)
    return int(conn.execute(text("SELECT id FROM alarm_rules WHERE code = :c"), {"c": ROUND_MISSED_RULE}).scalar_one())


def local_midnight(at: datetime, tz: str) -> datetime:
    """Midnight of `at`'s calendar day in timezone `tz` (an aware datetime)."""
    local = at.astimezone(ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def ensure_default_schedules(session: Session, estate_id: int, *, now: datetime | None = None) -> int:
    """Create the default round schedules of every equipment room of the estate; returns how many were new.

    Anchored at local midnight (estate timezone) of `now`'s day, so 2 h windows fall on even local hours.
    Idempotent: existing schedules (by room and code) are left alone, tuning included.
    """
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound(f"no estate {estate_id}")
    anchor = local_midnight(now or clock.now(), estate.timezone or "Asia/Shanghai")
    rows: list[dict[str, Any]] = []
    for room in session.scalars(select(Room).where(Room.estate_id == estate_id).order_by(Room.id)):
        for spec in DEFAULT_SCHEDULES.get(room.kind, ()):
            rows.append(
                {
                    "estate_id": estate_id,
                    "room_id": room.id,
                    "code": spec.code,
                    "name_zh": spec.name_zh,
                    "name_en": spec.name_en,
                    "interval_minutes": spec.interval_minutes,
                    "device_kinds": list(spec.device_kinds) if spec.device_kinds is not None else None,
                    "grace_minutes": spec.grace_minutes,
                    "anchor": anchor,
                    "enabled": True,
                }
            )
    if not rows:
        return 0
    stmt = insert(RoundSchedule).values(rows).on_conflict_do_nothing(index_elements=["room_id", "code"])
    created = session.execute(stmt.returning(RoundSchedule.id)).all()
    session.flush()
    return len(created)


# --- the periodic evaluation ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundsResult:
    created: int
    satisfied: int
    manual_due: int
    missed: int
    alarms: int


_CREATE = text(
    """
    WITH s AS (
      SELECT id, estate_id, room_id, anchor, interval_minutes AS iv,
             floor(extract(epoch FROM (CAST(:now AS timestamptz) - anchor)) / (interval_minutes * 60.0))::bigint
               AS k_cur,
             (SELECT max(r.window_start) FROM inspection_rounds r WHERE r.schedule_id = round_schedules.id)
               AS last_start
      FROM round_schedules
      WHERE enabled AND kind = 'equipment' AND interval_minutes > 0 AND anchor <= CAST(:now AS timestamptz)
    ), ks AS (
      SELECT s.*,
             CASE WHEN last_start IS NULL THEN k_cur
                  ELSE greatest(floor(extract(epoch FROM (last_start - anchor)) / (iv * 60.0))::bigint + 1,
                                k_cur - least(:max_catchup - 1, floor(:catchup_minutes / iv))::bigint)
             END AS k_first
      FROM s
    )
    INSERT INTO inspection_rounds (schedule_id, estate_id, room_id, window_start, window_end, status, updated_at)
    SELECT id, estate_id, room_id, anchor + (k * iv) * interval '1 minute',
           anchor + ((k + 1) * iv) * interval '1 minute', 'open', CAST(:now AS timestamptz)
    FROM ks CROSS JOIN LATERAL generate_series(k_first, k_cur) AS k
    ON CONFLICT (schedule_id, window_start) DO NOTHING
    """
)

_ENDED = text(
    """
    SELECT r.id FROM inspection_rounds r
    WHERE r.status = 'open' AND r.window_end <= :now AND r.kind = 'equipment'
    ORDER BY r.window_end, r.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)

# One row per (round, required point): the latest in-window sample and whether an alarm on the
# point was open at the window's end (judged from alarm history, so a late evaluation is still right).
_EVIDENCE = text(
    """
    SELECT r.id AS round_id, p.id AS point_id, p.metric, d.id AS device_id, d.code AS device_code,
           d.kind AS device_kind, d.estate_id, rm.id AS room_id, rm.kind AS room_kind,
           last.ts, last.value,
           EXISTS (SELECT 1 FROM alarms a
                   WHERE a.point_id = p.id AND a.raised_at <= r.window_end
                     AND (a.cleared_at IS NULL OR a.cleared_at > r.window_end)) AS open_alarm
    FROM inspection_rounds r
    JOIN round_schedules s ON s.id = r.schedule_id
    JOIN rooms rm ON rm.id = r.room_id
    JOIN devices d ON d.room_id = r.room_id AND d.replaced_by_id IS NULL
                  AND (s.device_kinds IS NULL OR d.kind = ANY(s.device_kinds))
    JOIN points p ON p.device_id = d.id
    LEFT JOIN LATERAL (
      SELECT x.ts, x.value FROM samples x
      WHERE x.point_id = p.id AND x.ts >= r.window_start AND x.ts < r.window_end
      ORDER BY x.ts DESC LIMIT 1
    ) last ON true
    WHERE r.id = ANY(CAST(:ids AS bigint[]))
    ORDER BY r.id, d.code, p.metric
    """
)

_DUE_MISSED = text(
    """
    SELECT r.id, r.schedule_id, r.estate_id, r.room_id, r.window_start, r.window_end, r.ticket_id, r.kind,
           s.code, s.grace_minutes, rm.code AS room_code,
           EXISTS (SELECT 1 FROM inspection_rounds later
                   WHERE later.schedule_id = r.schedule_id AND later.window_start > r.window_start
                     AND later.status IN ('satisfied', 'done')) AS superseded
    FROM inspection_rounds r
    JOIN round_schedules s ON s.id = r.schedule_id
    LEFT JOIN rooms rm ON rm.id = r.room_id
    WHERE r.status IN ('open', 'manual_due')
      AND r.window_end + s.grace_minutes * interval '1 minute' <= :now
    ORDER BY r.schedule_id, r.window_start
    LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
    """
)


@dataclass(frozen=True, slots=True)
class _Level:
    """Entry level of one enabled threshold rule, with what it applies to."""

    code: str
    direction: Direction
    level: float
    device_kind: str | None
    room_kind: str | None


def _threshold_levels(conn: Connection) -> dict[str, list[_Level]]:
    levels: dict[str, list[_Level]] = {}
    for code, metric, device_kind, room_kind, params in conn.execute(
        text(
            "SELECT code, metric, device_kind, room_kind, params FROM alarm_rules WHERE enabled AND kind = 'threshold'"
        )
    ):
        try:
            rule = build_rule(code, "threshold", params)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("threshold rule %s has bad params, ignored for rounds: %s", code, exc)
            continue
        assert isinstance(rule, ThresholdRule)
        levels.setdefault(metric, []).append(_Level(code, rule.direction, rule.entry_level, device_kind, room_kind))
    return levels


def _beyond(direction: Direction, value: float, level: float) -> bool:
    return value > level if direction is Direction.above else value < level


def _judge(row: RowMapping, levels: Mapping[str, list[_Level]]) -> dict[str, Any]:
    """Evidence of one required point: value and ts, plus `reason` when it does not satisfy the round."""
    ev: dict[str, Any] = {"metric": row["metric"], "device": row["device_code"]}
    if row["ts"] is None:
        ev["reason"] = "no_data"
        return ev
    value = float(row["value"])
    ev["ts"] = row["ts"].isoformat()
    ev["value"] = value if math.isfinite(value) else None
    if not math.isfinite(value):
        ev["reason"] = "out_of_range"
        return ev
    for lv in levels.get(row["metric"], ()):
        if lv.device_kind is not None and lv.device_kind != row["device_kind"]:
            continue
        if lv.room_kind is not None and lv.room_kind != row["room_kind"]:
            continue
        if _beyond(lv.direction, value, lv.level):
            ev["reason"] = "out_of_range"
            ev["rule"] = lv.code
            ev["level"] = lv.level
            return ev
    if row["open_alarm"]:
        ev["reason"] = "open_alarm"
    return ev


def _evidence(conn: Connection, round_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per round: {"points": {point_id: evidence}, "required": n, "ok": m} (empty points: nothing to judge)."""
    levels = _threshold_levels(conn)
    out: dict[int, dict[str, Any]] = {rid: {"points": {}, "required": 0, "ok": 0} for rid in round_ids}
    for row in conn.execute(_EVIDENCE, {"ids": list(round_ids)}).mappings():
        ev = _judge(row, levels)
        entry = out[int(row["round_id"])]
        entry["points"][str(row["point_id"])] = ev
        entry["required"] += 1
        entry["ok"] += "reason" not in ev
    for entry in out.values():
        if entry["required"] == 0:
            entry["reason"] = "no_points"  # no telemetry covers this round: only a manual round can
    return out


def _satisfied(entry: Mapping[str, Any]) -> bool:
    return bool(entry["required"]) and entry["ok"] == entry["required"]


def evaluate_rounds(session: Session, now: datetime | None = None, on_raised: OnRaised | None = None) -> RoundsResult:
    """Create due windows, decide ended ones (telemetry or manual round ticket), mark missed ones (alarm)."""
    now = now or clock.now()
    conn = session.connection()
    created = conn.execute(
        _CREATE, {"now": now, "max_catchup": MAX_CATCHUP, "catchup_minutes": CATCHUP_MINUTES}
    ).rowcount

    # 2. decide ended windows
    ended = [int(r[0]) for r in conn.execute(_ENDED, {"now": now, "limit": BATCH})]
    satisfied: list[int] = []
    manual: list[int] = []
    if ended:
        evidence = _evidence(conn, ended)
        for rid in ended:
            entry = evidence[rid]
            if _satisfied(entry):
                satisfied.append(rid)
            else:
                manual.append(rid)
        _set_status(conn, satisfied, RoundStatus.satisfied, now, evidence, satisfied_by="telemetry")
        _set_status(conn, manual, RoundStatus.manual_due, now, evidence)
    rule_id = ensure_round_rule(session) if (satisfied or manual) else None
    if satisfied:
        assert rule_id is not None
        clear_recovered(conn, rule_id, satisfied, now)

    # Manual round tickets for rounds still inside their grace period (a round decided after its
    # grace already passed, e.g. after worker downtime, goes straight to missed below).
    if manual:
        _open_round_tickets(session, manual, now)

    # 3. missed rounds
    missed_rows = list(conn.execute(_DUE_MISSED, {"now": now, "limit": BATCH}).mappings())
    raised = 0
    if missed_rows:
        rule_id = rule_id or ensure_round_rule(session)
        raised = _miss(session, rule_id, missed_rows, now, on_raised)
    session.flush()
    result = RoundsResult(int(created or 0), len(satisfied), len(manual), len(missed_rows), raised)
    if created or ended or missed_rows:
        log.info("rounds: %s", result)
    return result


def _set_status(
    conn: Connection,
    ids: Sequence[int],
    status: str,
    now: datetime,
    evidence: Mapping[int, Mapping[str, Any]],
    *,
    satisfied_by: str | None = None,
) -> None:
    if not ids:
        return
    conn.execute(
        text(
            """
            UPDATE inspection_rounds r SET status = :status, satisfied_by = :by, updated_at = :now,
                   evidence = CAST(v.ev AS jsonb)
            FROM unnest(CAST(:ids AS bigint[]), CAST(:evs AS text[])) AS v(id, ev)
            WHERE r.id = v.id
            """
        ),
        {
            "status": status,
            "by": satisfied_by,
            "now": now,
            "ids": list(ids),
            "evs": [json.dumps(evidence[i], ensure_ascii=False) for i in ids],
        },
    )


def _point_names(conn: Connection, point_ids: Iterable[str]) -> dict[str, str]:
    """point id → "设备名 测点名" in Chinese (the estate file's names, else the glossary's), for a ticket's text."""
    ids = sorted({int(i) for i in point_ids if str(i).isdigit()})
    if not ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT p.id, p.metric, p.label, d.code, d.name, d.kind FROM points p JOIN devices d ON d.id = p.device_id "
            "WHERE p.id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": ids},
    ).mappings()
    out = {}
    for r in rows:
        device = r["name"] or glossary.DEVICE_KIND.get(r["kind"], (r["code"], ""))[0]
        point = r["label"] or glossary.POINT_LABEL.get(r["metric"], (r["metric"], ""))[0]
        out[str(r["id"])] = f"{device} {point}"
    return out


def _reason_zh(ev: Mapping[str, Any]) -> str:
    reason = str(ev["reason"])
    text_ = glossary.ROUND_REASON.get(reason, (reason, reason))[0]
    if reason == "out_of_range" and ev.get("level") is not None:
        return f"{text_}（{ev['level']:g}）"
    return text_


def round_ticket_description(
    window_start: datetime, window_end: datetime, tz: ZoneInfo, evidence: Mapping[str, Any], names: Mapping[str, str]
) -> str:
    """A manual-round ticket's text: the window in the estate's local time and each point that failed, by name."""
    start, end = window_start.astimezone(tz), window_end.astimezone(tz)
    lines = [f"巡检窗口 {start:%Y-%m-%d %H:%M} – {end:%H:%M}，遥测未能确认设备状态，请到现场巡检并录入巡检记录。"]
    for pid, ev in (evidence.get("points") or {}).items():
        if "reason" in ev:
            point = glossary.POINT_LABEL.get(ev.get("metric"), ("", ""))[0]
            name = names.get(str(pid)) or f"{ev.get('device')} {point}"
            lines.append(f"- {name.strip()}：{_reason_zh(ev)}")
    if evidence.get("reason") == "no_points":
        lines.append("- 该巡检项目没有遥测测点，需人工巡检")
    return "\n".join(lines)


def _open_round_tickets(session: Session, round_ids: Sequence[int], now: datetime) -> None:
    from tickets.service import open_ticket

    conn = session.connection()
    found = conn.execute(
        text(
            """
            SELECT r.id, r.estate_id, r.room_id, r.window_start, r.window_end, r.evidence,
                   s.name_zh, s.grace_minutes, rm.name AS room_name, rm.kind AS room_kind, e.timezone
            FROM inspection_rounds r
            JOIN round_schedules s ON s.id = r.schedule_id
            JOIN rooms rm ON rm.id = r.room_id
            JOIN estates e ON e.id = r.estate_id
            WHERE r.id = ANY(CAST(:ids AS bigint[]))
              AND r.window_end + s.grace_minutes * interval '1 minute' > :now
            ORDER BY r.id
            """
        ),
        {"ids": list(round_ids), "now": now},
    )
    rows = found.mappings().all()
    failed = [pid for r in rows for pid, ev in ((r["evidence"] or {}).get("points") or {}).items() if "reason" in ev]
    names = _point_names(conn, failed)
    links: list[tuple[int, int]] = []
    for row in rows:
        tz = ZoneInfo(row["timezone"] or "Asia/Shanghai")
        description = round_ticket_description(row["window_start"], row["window_end"], tz, row["evidence"] or {}, names)
        ticket = open_ticket(
            session,
            estate_id=row["estate_id"],
            source="inspection",
            category=ROOM_CATEGORY.get(row["room_kind"], "other"),
            priority="normal",
            title=f"{row['room_name']} {row['name_zh']} — 需人工巡检"[:200],
            description=description,
            room_id=row["room_id"],
            source_key=f"round:{row['id']}",
            received_by="system",
            received_at=now,
        )
        links.append((int(row["id"]), int(ticket.id)))
    if links:
        conn.execute(
            text(
                "UPDATE inspection_rounds r SET ticket_id = v.t "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:ts AS bigint[])) AS v(id, t) WHERE r.id = v.id"
            ),
            {"ids": [a for a, _ in links], "ts": [b for _, b in links]},
        )


def _miss(session: Session, rule_id: int, rows: Sequence[RowMapping], now: datetime, on_raised: OnRaised | None) -> int:
    conn = session.connection()
    ids = [int(r["id"]) for r in rows]
    conn.execute(
        text(
            "UPDATE inspection_rounds SET status = 'missed', updated_at = :now WHERE id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": ids, "now": now},
    )
    # One alarm per schedule: the latest missed round of each, unless a later round already succeeded.
    latest: dict[int, RowMapping] = {}
    for r in rows:
        if not r["superseded"]:
            latest[int(r["schedule_id"])] = r
    with_ticket: list[NewAlarm] = []
    without_ticket: list[NewAlarm] = []
    service: list[NewAlarm] = []
    for sid, r in latest.items():
        detail: dict[str, Any] = {
            "round_id": int(r["id"]),
            "schedule": r["code"],
            "room": r["room_code"],
            "window_start": r["window_start"].isoformat(),
            "window_end": r["window_end"].isoformat(),
            "grace_minutes": int(r["grace_minutes"]),
        }
        if r["kind"] != EQUIPMENT:
            detail["kind"] = r["kind"]
        alarm = NewAlarm(
            rule_id=rule_id,
            subject=round_subject(sid),
            estate_id=int(r["estate_id"]),
            severity=Severity.alarm.value,
            raised_at=r["window_end"] + timedelta(minutes=int(r["grace_minutes"])),
            room_id=int(r["room_id"]) if r["room_id"] is not None else None,
            detail=detail,
        )
        if r["kind"] != EQUIPMENT:
            service.append(alarm)
        else:
            (with_ticket if r["ticket_id"] is not None else without_ticket).append(alarm)
    # A round that already has its manual-round ticket links the alarm to it (one ticket per episode);
    # the others go through the on_raised hook (tickets.from_alarms).
    inserted = insert_alarms(conn, with_ticket)
    if inserted:
        conn.execute(
            text(
                """
                UPDATE alarms a SET ticket_id = r.ticket_id
                FROM inspection_rounds r
                WHERE a.id = ANY(CAST(:alarms AS bigint[])) AND a.ticket_id IS NULL
                  AND r.id = CAST(a.detail ->> 'round_id' AS bigint)
                """
            ),
            {"alarms": inserted},
        )
    inserted += insert_alarms(conn, without_ticket, on_raised=on_raised)
    # A missed customer-service round is the desk's to follow up (the alarm list, the service calendar), not a
    # repair: no ticket. Its findings open tickets task by task (alarms.service_rounds.record_task).
    inserted += insert_alarms(conn, service)
    # Every missed round points at its schedule's open alarm (new or already open).
    conn.execute(
        text(
            """
            UPDATE inspection_rounds r SET alarm_id = a.id
            FROM alarms a
            WHERE r.id = ANY(CAST(:ids AS bigint[])) AND a.rule_id = :rule
              AND a.subject = 'round:' || r.schedule_id AND a.state <> 'cleared'
            """
        ),
        {"ids": ids, "rule": rule_id},
    )
    return len(inserted)


def clear_recovered(conn: Connection, rule_id: int, round_ids: Iterable[int], at: datetime) -> int:
    """Clear the missed alarm of schedules whose round `round_ids` is at least as recent as every missed one."""
    subjects = [
        round_subject(int(sid))
        for (sid,) in conn.execute(
            text(
                """
                SELECT DISTINCT ok.schedule_id FROM inspection_rounds ok
                WHERE ok.id = ANY(CAST(:ids AS bigint[]))
                  AND NOT EXISTS (SELECT 1 FROM inspection_rounds m
                                  WHERE m.schedule_id = ok.schedule_id AND m.status = 'missed'
                                    AND m.window_start > ok.window_start)
                """
            ),
            {"ids": list(round_ids)},
        )
    ]
    return clear_open(conn, rule_id, subjects, at)


# --- manual rounds -------------------------------------------------------------------------------


def _check_readings(readings: Mapping[str, float | str]) -> dict[str, float | str]:
    if len(readings) > MAX_READINGS:
        raise InvalidInput(f"at most {MAX_READINGS} readings / 读数过多")
    out: dict[str, float | str] = {}
    for key, value in readings.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 64 or "\x00" in key:
            raise InvalidInput("reading names are 1–64 characters / 读数名称须为1–64个字符")
        if isinstance(value, bool):
            raise InvalidInput(f"reading {key}: a number or a short text / 读数须为数值或文字")
        if isinstance(value, int | float):
            if not math.isfinite(value):
                raise InvalidInput(f"reading {key} must be a finite number / 读数须为有限数值")
            out[key] = float(value)
        elif isinstance(value, str):
            if len(value) > 200 or "\x00" in value:
                raise InvalidInput(f"reading {key}: at most 200 characters / 读数文字过长")
            out[key] = value
        else:
            raise InvalidInput(f"reading {key}: a number or a short text / 读数须为数值或文字")
    return out


def record_manual_round(
    session: Session,
    round_id: int,
    performed_by: str,
    performed_at: datetime,
    readings: Mapping[str, float | str],
    notes: str | None = None,
) -> InspectionRound:
    """Record an engineer's round: status done, satisfied_by manual (open, manual_due or missed rounds).

    On a missed round the alarm episode stays in the history; the schedule's open missed alarm is
    cleared unless a later round of the schedule is missed too. The round's manual-round ticket, if
    still open, is completed by the record (on site at ``performed_at``, resolved, closed).
    """
    rnd = session.scalar(select(InspectionRound).where(InspectionRound.id == round_id).with_for_update())
    if rnd is None or rnd.kind != EQUIPMENT:  # a service round is done task by task (alarms.service_rounds)
        raise RoundNotFound(f"round {round_id} not found / 未找到该巡检")
    if rnd.status not in (RoundStatus.open, RoundStatus.manual_due, RoundStatus.missed):
        raise RoundTransitionError(f"round {round_id} is already {rnd.status} / 该巡检已完成")
    if performed_at.tzinfo is None:
        raise InvalidInput("performed_at needs a timezone / 巡检时间须带时区")
    now = clock.now()
    if performed_at > now + CLOCK_SKEW:
        raise RoundTimeError("performed_at is in the future / 巡检时间不能晚于当前时间")
    if performed_at < rnd.window_start:
        raise RoundTimeError("performed_at is before the round's window / 巡检时间早于巡检窗口")
    if not performed_by.strip():
        raise InvalidInput("performed_by is required / 须填写巡检人")
    clean = _check_readings(readings)
    was = rnd.status
    rnd.status = RoundStatus.done
    rnd.satisfied_by = "manual"
    rnd.performed_by = performed_by.strip()[:64]
    rnd.performed_at = performed_at
    rnd.readings = clean
    rnd.notes = notes
    rnd.updated_at = now
    session.flush()
    rule_id = session.scalar(select(AlarmRuleRow.id).where(AlarmRuleRow.code == ROUND_MISSED_RULE))
    if rule_id is not None:
        cleared = clear_recovered(session.connection(), int(rule_id), [rnd.id], now)
        if cleared:
            log.info("round %s done late (was %s): missed alarm cleared", rnd.id, was)
    if rnd.ticket_id is not None:
        # The manual-round ticket asked for exactly this round: the record completes it.
        from tickets.service import complete_by_record

        complete_by_record(
            session,
            rnd.ticket_id,
            rnd.performed_by,
            work_done=f"巡检已完成（巡检记录 #{rnd.id}）/ inspection round #{rnd.id} recorded",
            on_site_at=performed_at,
            at=now,
        )
    return rnd


__all__ = [
    "EQUIPMENT",
    "MAX_CATCHUP",
    "ROUND_MISSED_RULE",
    "STATUS_LABELS",
    "RoundNotFound",
    "RoundStatus",
    "RoundTimeError",
    "RoundTransitionError",
    "RoundsResult",
    "clear_recovered",
    "ensure_default_schedules",
    "ensure_round_rule",
    "evaluate_rounds",
    "local_midnight",
    "record_manual_round",
    "round_subject",
]
