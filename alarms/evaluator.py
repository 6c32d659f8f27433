"""Evaluate point rules over an ingest batch, inside the batch transaction, with state in PostgreSQL.

Usable as a `Pipeline` hook: `hook(conn, decoded, result)`. Per batch:

1. keep only samples whose point's metric has enabled rules (cached; a batch without any is a set
   lookup per sample and no query at all);
2. group them by (rule, point), sorted by device ts;
3. create missing `alarm_states` rows (`ON CONFLICT DO NOTHING`) and lock+load every state of the
   batch in one `SELECT … FOR UPDATE`, both in key order so two writers cannot deadlock. A second
   transaction on the same (rule, point) waits here and then sees the first one's committed state,
   so the readings it already applied are "late" and raise nothing;
4. run `rules.evaluate` and fold each group's transitions into at most one update of the alarm that
   was open before the batch plus the episodes that started in it;
5. write back states, alarm updates and new alarms in one statement each.

Never commits: the caller owns the transaction, so a failed batch rolls back readings, states and
alarms together and the redelivered batch is evaluated again from the old state.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, text

from alarms.const import Direction
from alarms.packs import build_rule
from alarms.rules import (
    Clear,
    Escalate,
    PointRule,
    Raise,
    Reading,
    RuleState,
    ThresholdRule,
    UpdatePeak,
    evaluate,
)

log = logging.getLogger(__name__)

# An unknown point may trigger a reload at most this often (a new estate was imported); rules and
# points are also reloaded on this period so rule edits take effect without a restart.
RELOAD_COOLDOWN_S = 5.0
REFRESH_EVERY_S = 60.0


class SampleColumns(Protocol):
    """What the evaluator needs of a batch (ingest's DecodedBatch); alarms never import ingest."""

    sample_ts: list[datetime]
    sample_point: list[int]
    sample_value: list[float]


@dataclass(frozen=True, slots=True)
class LoadedRule:
    id: int
    rule: PointRule


@dataclass(frozen=True, slots=True)
class PointInfo:
    device_id: int
    estate_id: int


@dataclass(slots=True)
class Episode:
    """Net effect of one batch on one alarm row."""

    severity: str | None = None
    raised_at: datetime | None = None
    peak: float | None = None
    last_value: float | None = None
    cleared_at: datetime | None = None


@dataclass(slots=True)
class GroupResult:
    state: RuleState
    # The alarm open before the batch (None if there was none or it saw no accepted reading).
    existing: Episode | None = None
    # Episodes raised in this batch, oldest first; all but possibly the last are already cleared.
    new: list[Episode] = field(default_factory=list)


class AlarmEvaluator:
    def __init__(self) -> None:
        self._rules_by_point: dict[int, tuple[LoadedRule, ...]] = {}
        self._points: dict[int, PointInfo] = {}
        self._loaded_at = float("-inf")

    # --- cache -------------------------------------------------------------------------------

    def load(self, conn: Connection) -> None:
        by_metric: dict[str, list[LoadedRule]] = {}
        for rule_id, code, kind, metric, params in conn.execute(
            text("SELECT id, code, kind, metric, params FROM alarm_rules WHERE enabled AND kind <> 'composite'")
        ):
            try:
                rule = build_rule(code, kind, params)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("alarm rule %s has bad params, skipped: %s", code, exc)
                continue
            by_metric.setdefault(metric, []).append(LoadedRule(rule_id, rule))
        points: dict[int, PointInfo] = {}
        rules_by_point: dict[int, tuple[LoadedRule, ...]] = {}
        for point_id, metric, device_id, estate_id in conn.execute(
            text("SELECT p.id, p.metric, d.id, d.estate_id FROM points p JOIN devices d ON d.id = p.device_id")
        ):
            points[point_id] = PointInfo(device_id, estate_id)
            if metric in by_metric:
                rules_by_point[point_id] = tuple(by_metric[metric])
        self._points, self._rules_by_point = points, rules_by_point
        self._loaded_at = time.monotonic()
        log.info(
            "alarm evaluator: %d rules, %d of %d points watched",
            sum(map(len, by_metric.values())),
            len(rules_by_point),
            len(points),
        )

    def _refresh(self, conn: Connection, point_ids: Iterable[int]) -> None:
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_EVERY_S or (age > RELOAD_COOLDOWN_S and not self._points.keys() >= set(point_ids)):
            self.load(conn)

    # --- the hook ----------------------------------------------------------------------------

    def __call__(self, conn: Connection, decoded: SampleColumns, result: object = None) -> None:
        if not decoded.sample_point:
            return
        self._refresh(conn, decoded.sample_point)
        watched = self._rules_by_point
        groups: dict[tuple[int, int], list[Reading]] = {}
        rules: dict[int, PointRule] = {}
        for ts, point_id, value in zip(decoded.sample_ts, decoded.sample_point, decoded.sample_value, strict=True):
            loaded = watched.get(point_id)
            if loaded is None:
                continue
            reading = Reading(ts, value)
            for lr in loaded:
                rules[lr.id] = lr.rule
                groups.setdefault((lr.id, point_id), []).append(reading)
        if not groups:
            return
        keys = sorted(groups)
        states = self._lock_states(conn, keys)
        results: dict[tuple[int, int], GroupResult] = {}
        for key in keys:
            readings = sorted(groups[key], key=lambda r: r.ts)
            before = states[key]
            res = _run(rules[key[0]], before, readings)
            if res.state != before or res.existing is not None or res.new:
                results[key] = res
        if results:
            self._write(conn, results)

    # --- SQL ---------------------------------------------------------------------------------

    def _lock_states(self, conn: Connection, keys: list[tuple[int, int]]) -> dict[tuple[int, int], RuleState]:
        params = {"r": [k[0] for k in keys], "p": [k[1] for k in keys]}
        conn.execute(
            text(
                "INSERT INTO alarm_states (rule_id, point_id) "
                "SELECT r, p FROM unnest(CAST(:r AS int[]), CAST(:p AS int[])) AS k(r, p) ORDER BY r, p "
                "ON CONFLICT DO NOTHING"
            ),
            params,
        )
        rows = conn.execute(
            text(
                "SELECT s.rule_id, s.point_id, s.state FROM alarm_states s "
                "JOIN unnest(CAST(:r AS int[]), CAST(:p AS int[])) AS k(r, p) ON s.rule_id = k.r AND s.point_id = k.p "
                "ORDER BY s.rule_id, s.point_id FOR UPDATE OF s"
            ),
            params,
        )
        return {(r, p): RuleState.from_json(state) for r, p, state in rows}

    def _write(self, conn: Connection, results: dict[tuple[int, int], GroupResult]) -> None:
        changed = [(k, res.state) for k, res in results.items()]
        conn.execute(
            text(
                "UPDATE alarm_states s SET state = CAST(v.state AS jsonb), updated_at = now() "
                "FROM unnest(CAST(:r AS int[]), CAST(:p AS int[]), CAST(:s AS text[])) AS v(r, p, state) "
                "WHERE s.rule_id = v.r AND s.point_id = v.p"
            ),
            {
                "r": [k[0] for k, _ in changed],
                "p": [k[1] for k, _ in changed],
                "s": [json.dumps(st.to_json()) for _, st in changed],
            },
        )
        updates = [(k, res.existing) for k, res in results.items() if res.existing is not None]
        if updates:
            # Update (or close) the alarm that was open before the batch; it must be closed before
            # a new episode of the same (rule, point) is inserted, or the unique index refuses it.
            conn.execute(
                text(
                    "UPDATE alarms a SET severity = COALESCE(v.severity, a.severity), "
                    "peak = COALESCE(v.peak, a.peak), last_value = COALESCE(v.last_value, a.last_value), "
                    "state = CASE WHEN v.cleared_at IS NULL THEN a.state ELSE 'cleared' END, "
                    "cleared_at = v.cleared_at, "
                    "clear_reason = CASE WHEN v.cleared_at IS NULL THEN NULL ELSE 'condition_ended' END "
                    "FROM unnest(CAST(:r AS int[]), CAST(:p AS int[]), CAST(:sev AS text[]), "
                    "CAST(:peak AS float8[]), CAST(:last AS float8[]), CAST(:cleared AS timestamptz[])) "
                    "AS v(r, p, severity, peak, last_value, cleared_at) "
                    "WHERE a.rule_id = v.r AND a.point_id = v.p AND a.state <> 'cleared'"
                ),
                {
                    "r": [k[0] for k, _ in updates],
                    "p": [k[1] for k, _ in updates],
                    "sev": [e.severity for _, e in updates],
                    "peak": [e.peak for _, e in updates],
                    "last": [e.last_value for _, e in updates],
                    "cleared": [e.cleared_at for _, e in updates],
                },
            )
        inserts = [(k, e) for k, res in results.items() for e in res.new]
        if inserts:
            info = self._points
            conn.execute(
                text(
                    "INSERT INTO alarms (rule_id, point_id, device_id, estate_id, severity, state, raised_at, "
                    "cleared_at, clear_reason, peak, last_value) "
                    "SELECT r, p, d, e, sev, CASE WHEN cleared IS NULL THEN 'active' ELSE 'cleared' END, raised, "
                    "cleared, CASE WHEN cleared IS NULL THEN NULL ELSE 'condition_ended' END, peak, last "
                    "FROM unnest(CAST(:r AS int[]), CAST(:p AS int[]), CAST(:d AS int[]), CAST(:e AS int[]), "
                    "CAST(:sev AS text[]), CAST(:raised AS timestamptz[]), CAST(:cleared AS timestamptz[]), "
                    "CAST(:peak AS float8[]), CAST(:last AS float8[])) "
                    "AS v(r, p, d, e, sev, raised, cleared, peak, last) "
                    "ORDER BY r, p, raised "
                    "ON CONFLICT (rule_id, point_id) WHERE state <> 'cleared' DO NOTHING"
                ),
                {
                    "r": [k[0] for k, _ in inserts],
                    "p": [k[1] for k, _ in inserts],
                    "d": [info[k[1]].device_id for k, _ in inserts],
                    "e": [info[k[1]].estate_id for k, _ in inserts],
                    "sev": [e.severity for _, e in inserts],
                    "raised": [e.raised_at for _, e in inserts],
                    "cleared": [e.cleared_at for _, e in inserts],
                    "peak": [e.peak for _, e in inserts],
                    "last": [e.last_value for _, e in inserts],
                },
            )


def _run(rule: PointRule, state: RuleState, readings: list[Reading]) -> GroupResult:
    """Apply one group's readings (sorted by ts) and fold the transitions into alarm-row changes."""
    quiet = _quiet_threshold(rule, state, readings)
    if quiet is not None:
        return GroupResult(quiet)
    res = GroupResult(state)
    current: Episode | None = None
    if state.active:
        current = res.existing = Episode()
    for reading in readings:
        prev = res.state
        new, transition = evaluate(rule, prev, reading)
        res.state = new
        if new.last_ts == prev.last_ts:
            continue  # late, duplicate or non-finite: ignored by the rule
        match transition:
            case Raise():
                current = Episode(str(transition.severity), transition.at, new.peak, transition.value)
                res.new.append(current)
            case Clear():
                if current is not None:
                    current.cleared_at, current.last_value = transition.at, transition.value
                current = None
            case Escalate() | UpdatePeak() | None:
                if current is not None:
                    current.last_value = reading.value
                    if isinstance(transition, Escalate):
                        current.severity = str(transition.severity)
                    if transition is not None:
                        current.peak = new.peak
    return res


def _quiet_threshold(rule: PointRule, state: RuleState, readings: list[Reading]) -> RuleState | None:
    """Fast path, exactly equal to evaluating one by one: an idle threshold rule whose readings all stay inside.

    Most readings of a healthy estate take this path, so it must not allocate per reading.
    """
    if not isinstance(rule, ThresholdRule) or state.active or state.condition_since:
        return None
    level, above = rule.entry_level, rule.direction is Direction.above
    last = state.last_ts
    newest = last
    for r in readings:
        if last is not None and r.ts <= last:
            continue
        v = r.value
        if not math.isfinite(v):
            continue
        if (v > level) if above else (v < level):
            return None
        if newest is None or r.ts > newest:
            newest = r.ts
    return state if newest == last else replace(state, last_ts=newest)


def open_alarms(conn: Connection, point_ids: list[int]) -> list[dict[str, Any]]:
    """Open alarms of some points (helper for tests and the API)."""
    rows = conn.execute(
        text("SELECT * FROM alarms WHERE point_id = ANY(CAST(:p AS int[])) AND state <> 'cleared' ORDER BY id"),
        {"p": point_ids},
    )
    return [dict(r._mapping) for r in rows]


__all__ = ["AlarmEvaluator", "SampleColumns", "open_alarms"]
