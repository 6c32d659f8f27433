"""Evaluate point rules over an ingest batch, inside the batch transaction, with state in PostgreSQL.

Usable as a `Pipeline` hook: `hook(conn, decoded, result)`, run after the batch's rows are written.

Only non-idle states have a row in `alarm_states` (an open episode, a min-duration run in
progress, a repeat count, a rate-of-change window). A healthy estate therefore costs, per batch,
one pass over the samples in Python and one indexed read of a small table; no state is written.
Per batch:

1. for each sample of a watched point, compare it with the most sensitive entry level of the
   point's threshold and repeat rules (`rules.entry_condition`): only a reading beyond it can move
   an idle state (0.5 µs a sample); rate-of-change rules always count;
2. read which (rule, point) of the batch's points have a state row;
3. the keys to evaluate are the crossings, the rate rules and the existing rows. If there are none
   the batch is done. Otherwise insert missing rows and lock all of them with `SELECT … FOR UPDATE`,
   both in key order, so two writers on the same (rule, point) serialise and cannot deadlock;
4. a freshly created row has no `last_ts`. The reference for "late" is then the point's newest
   sample stored *before* this transaction (`xmin` differs from ours): exactly the `last_ts` an
   always-stored state would hold, so a late or redelivered crossing raises nothing;
5. run `rules.evaluate` per key over its readings in device-time order, fold the transitions into
   at most one update of the alarm open before the batch plus the episodes begun in it;
6. write back: idle states are deleted, others updated; alarm updates in one statement; new
   episodes through `alarms.store.insert_alarms`, which calls `on_raised` (tickets) for open ones.

A concurrency note: a quiet reading whose key has no row is skipped without a lock. If another
ingest process is at that moment creating the row for the same key, the quiet reading is not
applied to it (it only could have reset a min-duration run). Both processes still agree on at
most one open alarm per (rule, point); with one ingest process per shared subscription group a
point's readings arrive through one process anyway.

Never commits: the caller owns the transaction, so a failed batch rolls back readings, states and
alarms together and the redelivered batch is evaluated again from the old state.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, text

from alarms.overrides import OverrideIndex, Subject
from alarms.packs import build_rule
from alarms.rules import (
    Clear,
    Escalate,
    PointRule,
    Raise,
    Reading,
    RuleState,
    StaleRule,
    UpdatePeak,
    entry_condition,
    evaluate,
)
from alarms.store import NewAlarm, OnRaised, insert_alarms, point_subject

log = logging.getLogger(__name__)

# An unknown point may trigger a reload at most this often (a new estate was imported); rules and
# points are also reloaded on this period so rule edits take effect without a restart.
RELOAD_COOLDOWN_S = 5.0
REFRESH_EVERY_S = 60.0

POINT_RULE_KINDS = ("threshold", "repeat", "rate_of_change")  # stale rules are the worker's (alarms/stale.py)


class SampleColumns(Protocol):
    """What the evaluator needs of a batch (ingest's DecodedBatch); alarms never import ingest."""

    sample_ts: list[datetime]
    sample_point: list[int]
    sample_value: list[float]


@dataclass(frozen=True, slots=True)
class PointInfo:
    device_id: int
    estate_id: int
    room_id: int | None


@dataclass(frozen=True, slots=True)
class Watch:
    """The rules on one point, split by how a reading can matter to them."""

    # (rule id, level, above): only a reading beyond the level can move an idle state.
    gated: tuple[tuple[int, float, bool], ...]
    # Rules every reading matters to (rate of change).
    always: tuple[int, ...]
    rules: dict[int, PointRule]


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
    def __init__(self, on_raised: OnRaised | None = None) -> None:
        self.on_raised = on_raised
        self._watch: dict[int, Watch] = {}
        self._gate: dict[int, tuple[float, float]] = {}
        self._always_points: set[int] = set()
        self._points: dict[int, PointInfo] = {}
        self._loaded_at = float("-inf")

    # --- cache -------------------------------------------------------------------------------

    def load(self, conn: Connection) -> None:
        rules = conn.execute(
            text(
                "SELECT id, code, kind, metric, device_kind, room_kind, params FROM alarm_rules "
                "WHERE enabled AND kind = ANY(CAST(:k AS text[]))"
            ),
            {"k": list(POINT_RULE_KINDS)},
        ).all()
        by_metric: dict[str, list[Any]] = {}
        for row in rules:
            by_metric.setdefault(row.metric, []).append(row)
        overrides = OverrideIndex.load(conn)
        built: dict[tuple[int, str], PointRule | None] = {}
        points: dict[int, PointInfo] = {}
        watch: dict[int, Watch] = {}
        for point_id, metric, device_id, estate_id, device_kind, room_id, room_kind in conn.execute(
            text(
                "SELECT p.id, p.metric, d.id, d.estate_id, d.kind, d.room_id, r.kind FROM points p "
                "JOIN devices d ON d.id = p.device_id LEFT JOIN rooms r ON r.id = d.room_id"
            )
        ):
            points[point_id] = PointInfo(device_id, estate_id, room_id)
            subject = Subject(estate_id, room_id, device_id)
            gated: list[tuple[int, float, bool]] = []
            always: list[int] = []
            point_rules: dict[int, PointRule] = {}
            for row in by_metric.get(metric, ()):
                if (row.device_kind and row.device_kind != device_kind) or (
                    row.room_kind and row.room_kind != room_kind
                ):
                    continue
                params, enabled = overrides.effective(row.id, row.params or {}, True, subject)
                if not enabled:
                    continue
                key = (row.id, json.dumps(params, sort_keys=True))
                if key not in built:
                    built[key] = _build(row.code, row.kind, params)
                rule = built[key]
                if rule is None or isinstance(rule, StaleRule):
                    continue
                point_rules[row.id] = rule
                entry = entry_condition(rule)
                if entry is None:
                    always.append(row.id)
                else:
                    gated.append((row.id, *entry))
            if point_rules:
                watch[point_id] = Watch(tuple(gated), tuple(always), point_rules)
        self._points, self._watch = points, watch
        # Per point, the most sensitive entry levels: (lowest "above" level, highest "below" level).
        self._gate = {
            p: (
                min((lv for _, lv, above in w.gated if above), default=math.inf),
                max((lv for _, lv, above in w.gated if not above), default=-math.inf),
            )
            for p, w in watch.items()
            if w.gated
        }
        self._always_points = {p for p, w in watch.items() if w.always}
        self._loaded_at = time.monotonic()
        log.info("alarm evaluator: %d rules, %d of %d points watched", len(rules), len(watch), len(points))

    def _refresh(self, conn: Connection, point_ids: set[int]) -> None:
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_EVERY_S or (age > RELOAD_COOLDOWN_S and not self._points.keys() >= point_ids):
            self.load(conn)

    # --- the hook ----------------------------------------------------------------------------

    def __call__(self, conn: Connection, decoded: SampleColumns, result: object = None) -> None:
        if not decoded.sample_point:
            return
        points, values = decoded.sample_point, decoded.sample_value
        in_batch = set(points)
        self._refresh(conn, in_batch)
        watch, gate = self._watch, self._gate
        # Pass 1, the hot loop: one dict lookup and two comparisons per sample. A point is a
        # candidate when a reading is beyond the most sensitive entry level of its gated rules.
        # (NaN compares false both ways, so it never counts as a crossing; rules ignore it too.)
        crossing: set[int] = set()
        for point_id, value in zip(points, values, strict=True):
            g = gate.get(point_id)
            if g is not None and (value > g[0] or value < g[1]):
                crossing.add(point_id)
        keys = {(rule_id, p) for p in crossing for rule_id, _, _ in watch[p].gated}
        keys.update((rule_id, p) for p in in_batch & self._always_points for rule_id in watch[p].always)
        # The whole table: it holds only non-idle states (open alarms, pending runs), so it is small,
        # and reading it needs no parameter (a 10,000-id array costs more to send than these rows).
        for rule_id, point_id in conn.execute(text("SELECT rule_id, point_id FROM alarm_states")):
            if point_id in in_batch and (w := watch.get(point_id)) is not None and rule_id in w.rules:
                keys.add((rule_id, point_id))
        if not keys:
            return
        # Pass 2, only when something needs evaluating: the readings of those points.
        wanted = {p for _, p in keys}
        by_point: dict[int, list[int]] = {p: [] for p in wanted}
        for i, point_id in enumerate(points):
            if point_id in wanted:
                by_point[point_id].append(i)
        ordered = sorted(keys)
        states = self._lock_states(conn, ordered)
        results: dict[tuple[int, int], GroupResult] = {}
        ts = decoded.sample_ts
        for key in ordered:
            rule_id, point_id = key
            readings = sorted((Reading(ts[i], values[i]) for i in by_point[point_id]), key=lambda r: r.ts)
            results[key] = _run(watch[point_id].rules[rule_id], states[key], readings)
        self._write(conn, results)

    # --- SQL ---------------------------------------------------------------------------------

    def _lock_states(self, conn: Connection, keys: list[tuple[int, int]]) -> dict[tuple[int, int], RuleState]:
        params = {"r": [k[0] for k in keys], "p": [k[1] for k in keys]}
        conn.execute(
            text(
                "INSERT INTO alarm_states (rule_id, point_id, state) "
                "SELECT r, p, '{\"new\": true}' FROM unnest(CAST(:r AS int[]), CAST(:p AS int[])) AS k(r, p) "
                "ORDER BY r, p ON CONFLICT DO NOTHING"
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
        ).all()
        states: dict[tuple[int, int], RuleState] = {}
        fresh: dict[tuple[int, int], None] = {}
        for r, p, state in rows:
            if state.get("new"):
                fresh[(r, p)] = None
            else:
                states[(r, p)] = RuleState.from_json(state)
        if fresh:
            # The newest sample of each point written before this transaction: the last_ts the
            # state would hold had it been stored all along. Our own rows (xmin = our xid) are
            # this batch's, which the evaluation itself orders.
            prior: dict[int, datetime | None] = dict(
                conn.execute(
                    text(
                        "SELECT k.p, (SELECT s.ts FROM samples s WHERE s.point_id = k.p "
                        "AND s.xmin <> pg_current_xact_id()::xid ORDER BY s.ts DESC LIMIT 1) "
                        "FROM unnest(CAST(:p AS int[])) AS k(p)"
                    ),
                    {"p": sorted({p for _, p in fresh})},
                ).all()
            )
            for r, p in fresh:
                states[(r, p)] = RuleState(last_ts=prior.get(p))
        return states

    def _write(self, conn: Connection, results: dict[tuple[int, int], GroupResult]) -> None:
        idle = [k for k, res in results.items() if res.state.idle]
        if idle:
            conn.execute(
                text(
                    "DELETE FROM alarm_states s USING unnest(CAST(:r AS int[]), CAST(:p AS int[])) AS v(r, p) "
                    "WHERE s.rule_id = v.r AND s.point_id = v.p"
                ),
                {"r": [k[0] for k in idle], "p": [k[1] for k in idle]},
            )
        kept = [(k, res.state) for k, res in results.items() if not res.state.idle]
        if kept:
            conn.execute(
                text(
                    "UPDATE alarm_states s SET state = CAST(v.state AS jsonb), updated_at = now() "
                    "FROM unnest(CAST(:r AS int[]), CAST(:p AS int[]), CAST(:s AS text[])) AS v(r, p, state) "
                    "WHERE s.rule_id = v.r AND s.point_id = v.p"
                ),
                {
                    "r": [k[0] for k, _ in kept],
                    "p": [k[1] for k, _ in kept],
                    "s": [json.dumps(st.to_json()) for _, st in kept],
                },
            )
        updates = [(k, res.existing) for k, res in results.items() if res.existing is not None]
        if updates:
            # Update (or close) the alarm that was open before the batch; it must be closed before
            # a new episode of the same (rule, point) is inserted, or the unique index refuses it.
            # An alarm that escalated (a warning that became an alarm) goes to on_raised like a new
            # one: its new severity may now call for a ticket.
            escalated = conn.execute(
                text(
                    "UPDATE alarms a SET severity = COALESCE(v.severity, a.severity), "
                    "peak = COALESCE(v.peak, a.peak), last_value = COALESCE(v.last_value, a.last_value), "
                    "state = CASE WHEN v.cleared_at IS NULL THEN a.state ELSE 'cleared' END, "
                    "cleared_at = v.cleared_at, "
                    "clear_reason = CASE WHEN v.cleared_at IS NULL THEN NULL ELSE 'condition_ended' END "
                    "FROM unnest(CAST(:r AS int[]), CAST(:s AS text[]), CAST(:sev AS text[]), "
                    "CAST(:peak AS float8[]), CAST(:last AS float8[]), CAST(:cleared AS timestamptz[])) "
                    "AS v(r, subject, severity, peak, last_value, cleared_at) "
                    "WHERE a.rule_id = v.r AND a.subject = v.subject AND a.state <> 'cleared' "
                    "RETURNING a.id, v.severity IS NOT NULL AND v.cleared_at IS NULL"
                ),
                {
                    "r": [k[0] for k, _ in updates],
                    "s": [point_subject(k[1]) for k, _ in updates],
                    "sev": [e.severity for _, e in updates],
                    "peak": [e.peak for _, e in updates],
                    "last": [e.last_value for _, e in updates],
                    "cleared": [e.cleared_at for _, e in updates],
                },
            ).all()
            if self.on_raised is not None and (ids := [int(i) for i, up in escalated if up]):
                self.on_raised(conn, ids)
        inserts = [(k, e) for k, res in results.items() for e in res.new]
        if inserts:
            info = self._points
            insert_alarms(
                conn,
                [
                    NewAlarm(
                        rule_id=r,
                        subject=point_subject(p),
                        estate_id=info[p].estate_id,
                        severity=e.severity or "alarm",
                        raised_at=_raised_at(e),
                        point_id=p,
                        device_id=info[p].device_id,
                        room_id=info[p].room_id,
                        peak=e.peak,
                        last_value=e.last_value,
                        cleared_at=e.cleared_at,
                    )
                    for (r, p), e in inserts
                ],
                self.on_raised,
            )


def _raised_at(e: Episode) -> datetime:
    if e.raised_at is None:  # _run creates new episodes only from a Raise, which carries its time
        raise AssertionError("new episode without raised_at")
    return e.raised_at


def _build(code: str, kind: str, params: dict[str, Any]) -> PointRule | None:
    try:
        rule = build_rule(code, kind, params)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("alarm rule %s has bad params, skipped: %s", code, exc)
        return None
    return rule


def _run(rule: PointRule, state: RuleState, readings: list[Reading]) -> GroupResult:
    """Apply one group's readings (sorted by ts) and fold the transitions into alarm-row changes."""
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


def open_alarms(conn: Connection, point_ids: list[int]) -> list[dict[str, Any]]:
    """Open alarms of some points (helper for tests and the API)."""
    rows = conn.execute(
        text("SELECT * FROM alarms WHERE point_id = ANY(CAST(:p AS int[])) AND state <> 'cleared' ORDER BY id"),
        {"p": point_ids},
    )
    return [dict(r._mapping) for r in rows]


__all__ = ["AlarmEvaluator", "SampleColumns", "open_alarms"]
