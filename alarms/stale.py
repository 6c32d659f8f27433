"""The stale-data watchdog: a point that stopped reporting raises an alarm; a report clears it.

Run by the worker every 30 s. For every enabled `alarm_rules` row of kind ``stale`` one set-based
statement finds the points whose state changed: stale without an open alarm (raise) or fresh with one
(clear). A point matches a rule by `metric` (``*`` = every metric), narrowed by the rule's
`device_kind` / `room_kind` columns and, with ``params.room_equipment_only``, to devices in an
equipment room (household meters are judged by the meter rules, not here).

**How "latest report" is judged.** The device's ``device_state.last_ts`` (device time of its newest
message, kept by ingest) stands in for the point's newest sample: one row per device instead of a
scan of `samples`, which on a busy estate would read every sample of the last interval every 30 s.
The price: a device that keeps reporting some metrics but drops one is not caught here (the round
evidence, which reads samples per point, catches it). A device that never reported is judged from
its ``installed_at``; with neither, it is not judged at all, so importing an estate before the
devices are switched on raises nothing (an engineer sees "no data" on the room page and in rounds).

Params (merged with `alarm_rule_overrides`, device over room over estate, in SQL):
``expected_interval_s`` (or ``use_device_interval: true`` for `devices.expected_interval_s`),
``factor`` (default `alarms.const.STALE_FACTOR` = 1.5), ``severity``, ``room_equipment_only``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from alarms.const import STALE_FACTOR, RuleKind, Severity
from alarms.packs import RuleSpec, ensure_default_rules
from alarms.store import NewAlarm, OnRaised, clear_open, insert_alarms
from core import clock
from storage.models import WatchdogState

log = logging.getLogger(__name__)

ANY_METRIC = "*"
# A watchdog run later than this after the previous one means nobody was watching in between.
WATCH_GAP = timedelta(minutes=2)
WATCHING_ALL_ALONG = datetime(2000, 1, 1, tzinfo=UTC)


# Equipment rooms are inspected every 2 h and their sensors report every 10–60 s: a silent sensor is
# itself an inspection failure (domain-defaults §2). `expected_interval_s` is only the fallback for
# the alarm evaluator's rule builder; each device's own interval is used.
DEFAULT_STALE_RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        code="equipment.stale",
        metric=ANY_METRIC,
        kind=RuleKind.stale,
        params={
            "use_device_interval": True,
            "expected_interval_s": 60,
            "factor": STALE_FACTOR,
            "severity": Severity.warning.value,
            "room_equipment_only": True,
        },
        title_zh="设备数据中断",
        title_en="Equipment data stale",
        # A silent equipment sensor is an inspection failure: someone goes to look, the same day.
        ticket_policy={"min_severity": "warning", "priority": {"warning": "normal"}},
    ),
)


def ensure_default_stale_rules(session: Session, specs: tuple[RuleSpec, ...] = DEFAULT_STALE_RULES) -> int:
    """Insert the default stale rules or refresh them by code (`alarms.packs.ensure_default_rules`)."""
    return ensure_default_rules(session, specs)


# Subjects of one rule whose stale flag differs from "has an open alarm of this rule". A rule on every
# metric ('*') is judged per device (the reference is the device's last report anyway): one alarm and
# one ticket for a silent sensor, not one per point; a rule on one metric is judged per point.
_CHANGED = text(
    """
    WITH pts AS (
      SELECT CASE WHEN :per_device THEN 'device:' || d.id ELSE 'point:' || p.id END AS subject,
             p.id AS point_id, d.id AS device_id, d.estate_id, d.room_id, ds.last_ts,
             coalesce(ds.last_ts, d.installed_at) AS ref,
             CAST(:params AS jsonb) || coalesce(oe.params, '{}') || coalesce(orm.params, '{}')
                                    || coalesce(od.params, '{}') AS params,
             coalesce(od.enabled, orm.enabled, oe.enabled, true) AS enabled,
             d.expected_interval_s
      FROM points p
      JOIN devices d ON d.id = p.device_id
      LEFT JOIN rooms r ON r.id = d.room_id
      LEFT JOIN device_state ds ON ds.device_id = d.id
      LEFT JOIN alarm_rule_overrides oe ON oe.rule_id = :rule AND oe.scope = 'estate' AND oe.scope_id = d.estate_id
      LEFT JOIN alarm_rule_overrides orm ON orm.rule_id = :rule AND orm.scope = 'room' AND orm.scope_id = d.room_id
      LEFT JOIN alarm_rule_overrides od ON od.rule_id = :rule AND od.scope = 'device' AND od.scope_id = d.id
      WHERE (:metric = '*' OR p.metric = :metric)
        AND (CAST(:device_kind AS text) IS NULL OR d.kind = :device_kind)
        AND (CAST(:room_kind AS text) IS NULL OR r.kind = :room_kind)
        AND (NOT :room_only OR d.room_id IS NOT NULL)
        AND d.replaced_by_id IS NULL
    ), judged AS (
      SELECT pts.*,
             CASE WHEN coalesce((params ->> 'use_device_interval')::boolean, false) THEN expected_interval_s::float8
                  ELSE (params ->> 'expected_interval_s')::float8 END
               * coalesce((params ->> 'factor')::float8, :default_factor) AS limit_s,
             coalesce(params ->> 'severity', 'warning') AS severity
      FROM pts
    ), flagged AS (
      SELECT judged.*,
             coalesce(enabled AND ref IS NOT NULL AND limit_s > 0
                      AND CAST(:now AS timestamptz) - ref > limit_s * interval '1 second', false) AS stale,
             -- Raise only what the watchdog had the time to see: a full limit since it resumed watching.
             coalesce(CAST(:watching_since AS timestamptz) IS NULL
                      OR CAST(:now AS timestamptz) - CAST(:watching_since AS timestamptz)
                         > limit_s * interval '1 second', true) AS watched_enough,
             a.id AS open_alarm_id
      FROM judged
      LEFT JOIN alarms a ON a.rule_id = :rule AND a.subject = judged.subject AND a.state <> 'cleared'
    )
    SELECT DISTINCT ON (subject) subject, point_id, device_id, estate_id, room_id, last_ts, ref, limit_s, severity,
           stale, open_alarm_id IS NOT NULL AS open
    FROM flagged
    WHERE stale IS DISTINCT FROM (open_alarm_id IS NOT NULL)
      AND (stale OR ref IS NOT NULL OR NOT enabled)
      AND (NOT stale OR watched_enough)
    ORDER BY subject, point_id
    """
)


@dataclass(frozen=True, slots=True)
class StaleResult:
    raised: int
    cleared: int


def watching_since(session: Session, now: datetime, name: str = "stale") -> datetime:
    """Since when the watchdog ``name`` has run without a gap longer than ``WATCH_GAP``, noting this run.

    The first run ever counts as watching all along: a new installation judges by its data. After a
    gap (worker or platform down, or a demo restarted on yesterday's data) watching starts again now:
    a device silent during the gap gets one full limit to report before it is called stale. An alarm
    already open stays open; only raising waits."""
    row = session.get(WatchdogState, name, with_for_update=True)
    if row is None:
        session.add(WatchdogState(name=name, watching_since=WATCHING_ALL_ALONG, last_run_at=now))
        session.flush()
        return WATCHING_ALL_ALONG
    if now - row.last_run_at > WATCH_GAP:
        log.info("%s watchdog: no run for %s; watching afresh from %s", name, now - row.last_run_at, now)
        row.watching_since = now
    row.last_run_at = max(row.last_run_at, now)
    session.flush()
    return row.watching_since


def restart_watching(session: Session, now: datetime, name: str = "stale") -> None:
    """The platform was down until ``now`` (a restart its operator knows of): watch afresh from now.

    The worker notices a gap only when it exceeds ``WATCH_GAP``; a platform restarted sooner (the demo
    run again half a minute later) would otherwise call every 15-second sensor silent at once. Before
    the first run ever it starts watching now too (the caller knows the estate has data)."""
    row = session.get(WatchdogState, name, with_for_update=True)
    if row is None:
        session.add(WatchdogState(name=name, watching_since=now, last_run_at=now))
    else:
        row.watching_since = max(row.watching_since, now)
        row.last_run_at = max(row.last_run_at, now)
    session.flush()


def check_stale(
    session: Session,
    now: datetime | None = None,
    on_raised: OnRaised | None = None,
    watching_since: datetime | None = None,
) -> StaleResult:
    """Raise stale alarms for silent points and clear them for points that report again (all stale rules).

    With ``watching_since`` (the worker passes `watching_since(...)`), a point is raised only once the
    watchdog has watched it for a full limit; clearing never waits."""
    now = now or clock.now()
    conn = session.connection()
    rules = conn.execute(
        text(
            "SELECT id, code, metric, device_kind, room_kind, params FROM alarm_rules "
            "WHERE enabled AND kind = 'stale' ORDER BY id"
        )
    ).all()
    raised = cleared = 0
    for rule_id, code, metric, device_kind, room_kind, params in rules:
        try:
            # A rule with bad params (or a bad override) must not stop the other rules.
            with session.begin_nested():
                r, c = _check_rule(
                    conn, rule_id, metric, device_kind, room_kind, params or {}, now, on_raised, watching_since
                )
        except Exception:
            log.exception("stale rule %s failed; the other rules continue", code)
            continue
        raised += r
        cleared += c
    if raised or cleared:
        log.info("stale watchdog: %d raised, %d cleared", raised, cleared)
    return StaleResult(raised, cleared)


def _check_rule(
    conn: Connection,
    rule_id: int,
    metric: str,
    device_kind: str | None,
    room_kind: str | None,
    params: dict[str, Any],
    now: datetime,
    on_raised: OnRaised | None,
    watching_since: datetime | None = None,
) -> tuple[int, int]:
    rows = conn.execute(
        _CHANGED,
        {
            "rule": rule_id,
            "params": json.dumps(params),
            "metric": metric,
            "device_kind": device_kind,
            "room_kind": room_kind,
            "room_only": bool(params.get("room_equipment_only", False)),
            "per_device": metric == ANY_METRIC,
            "default_factor": STALE_FACTOR,
            "now": now,
            "watching_since": watching_since,
        },
    ).mappings()
    to_raise: list[NewAlarm] = []
    to_clear: list[str] = []
    for row in rows:
        if row["stale"]:
            severity = row["severity"] if row["severity"] in Severity.__members__ else Severity.warning.value
            to_raise.append(
                NewAlarm(
                    rule_id=rule_id,
                    subject=row["subject"],
                    estate_id=row["estate_id"],
                    severity=severity,
                    raised_at=now,
                    point_id=None if metric == ANY_METRIC else row["point_id"],
                    device_id=row["device_id"],
                    room_id=row["room_id"],
                    detail={
                        "last_ts": row["last_ts"].isoformat() if row["last_ts"] else None,
                        "reference": "device_state.last_ts" if row["last_ts"] else "devices.installed_at",
                        "limit_s": row["limit_s"],
                    },
                )
            )
        else:
            to_clear.append(row["subject"])
    new = insert_alarms(conn, to_raise, on_raised=on_raised)
    gone = clear_open(conn, rule_id, to_clear, now)
    return len(new), gone


__all__ = [
    "ANY_METRIC",
    "DEFAULT_STALE_RULES",
    "StaleResult",
    "check_stale",
    "ensure_default_stale_rules",
    "watching_since",
]
