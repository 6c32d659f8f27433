"""Evaluate multi-point rules (alarms/multipoint.py) over an ingest batch, inside the batch transaction.

Usable as a `Pipeline` hook: `hook(conn, decoded, result)`, after the batch's rows are written, like
`alarms.evaluator.AlarmEvaluator` (whose locking and lateness pattern this follows):

1. the cache binds every enabled ``composite`` rule with a ``check`` to the devices of its device and
   room kind (effective params after estate < room < device overrides, `alarms.overrides`); a device
   that cannot fill a role is *not configured* for the rule and is skipped (see `coverage`);
2. per batch, one dict lookup per sample finds the bound (rule, device) pairs it touches; nothing
   else happens when there are none;
3. states live in `alarm_states` keyed (rule, anchor point) — the binding's first point, which is
   also the alarm's ``point_id``, so a manual clear (`alarms.store.clear_manually`) resets the state
   too. Missing rows are inserted and all rows locked ``FOR UPDATE`` in key order (no deadlock). The
   state is always stored (it carries the latest value of every bound point and the jockey pump's
   start times); these are a handful of devices per estate;
4. a fresh row's reference for "late" is the newest sample of its points written *before* this
   transaction (``xmin`` differs from ours), as in the point evaluator;
5. per pair, the batch's readings grouped by device ts (the first arrival of a (point, ts) wins, as
   the writer's ``ON CONFLICT DO NOTHING`` keeps it) are applied in ts order; transitions fold into
   one update of the alarm open before the batch plus the episodes begun in it;
6. alarms are ``device:<id>`` subjects, inserted through `alarms.store.insert_alarms` (tickets).

Never commits: a failed batch rolls back readings, states and alarms together.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from alarms.const import RuleKind
from alarms.evaluator import Episode, SampleColumns
from alarms.multipoint import Binding, Check, MultiPointRule, MultiState, apply, bind, build_multipoint, station_params
from alarms.overrides import OverrideIndex, Subject
from alarms.rules import Clear, Raise, UpdatePeak
from alarms.store import NewAlarm, OnRaised, device_subject, insert_alarms

log = logging.getLogger(__name__)

RELOAD_COOLDOWN_S = 5.0
REFRESH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Bound:
    """One multi-point rule on one device."""

    rule_id: int
    code: str
    rule: MultiPointRule
    binding: Binding
    device_id: int
    device_code: str
    estate_id: int
    room_id: int | None

    @property
    def key(self) -> tuple[int, int]:
        return self.rule_id, self.binding.anchor


def load_bound(conn: Connection) -> list[Bound]:
    """Every enabled multi-point rule on every device of its kinds, configured or not (sorted by rule, device)."""
    rules = conn.execute(
        text(
            "SELECT id, code, params, device_kind, room_kind FROM alarm_rules "
            "WHERE enabled AND kind = :k AND params ? 'check' ORDER BY code"
        ),
        {"k": str(RuleKind.composite)},
    ).all()
    if not rules:
        return []
    overrides = OverrideIndex.load(conn)
    devices: dict[int, dict[str, Any]] = {}
    room_points: dict[int, dict[str, list[int]]] = {}
    estate_points: dict[int, dict[str, list[int]]] = {}
    for point_id, metric, device_id, code, estate_id, kind, room_id, room_kind, attrs in conn.execute(
        text(
            "SELECT p.id, p.metric, d.id, d.code, d.estate_id, d.kind, d.room_id, r.kind, d.attrs FROM devices d "
            "LEFT JOIN points p ON p.device_id = d.id LEFT JOIN rooms r ON r.id = d.room_id ORDER BY d.id, p.id"
        )
    ):
        dev = devices.setdefault(
            device_id,
            {
                "code": code,
                "estate": estate_id,
                "kind": kind,
                "room": room_id,
                "room_kind": room_kind,
                "attrs": attrs or {},
                "points": {},
            },
        )
        if point_id is not None:
            dev["points"][metric] = point_id
            estate_points.setdefault(estate_id, {}).setdefault(metric, []).append(point_id)
            if room_id is not None:
                room_points.setdefault(room_id, {}).setdefault(metric, []).append(point_id)
    out: list[Bound] = []
    for row in rules:
        for device_id, dev in devices.items():
            if (row.device_kind and row.device_kind != dev["kind"]) or (
                row.room_kind and row.room_kind != dev["room_kind"]
            ):
                continue
            params, enabled = overrides.effective(
                row.id, row.params or {}, True, Subject(dev["estate"], dev["room"], device_id)
            )
            if not enabled:
                continue
            try:
                # Curve and emitter cap come from the station's attrs in the estate model (emitter, supply_curve).
                rule = build_multipoint(row.code, station_params(params, dev["attrs"]))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("multi-point rule %s has bad params on device %s, skipped: %s", row.code, dev["code"], exc)
                continue
            binding = bind(
                rule,
                dev["points"],
                room_points.get(dev["room"]) if dev["room"] is not None else None,
                estate_points.get(dev["estate"]),
            )
            out.append(Bound(row.id, row.code, rule, binding, device_id, dev["code"], dev["estate"], dev["room"]))
    return out


def coverage(conn: Connection) -> list[dict[str, Any]]:
    """Per multi-point rule and device of its kinds: configured (已配置) or not (未配置, with the missing roles).

    What `steward rules show` and the install report print, so a rule that cannot judge a device (no
    fire-signal point) says so instead of seeming to watch it.
    """
    codes: dict[int, str] = {int(r[0]): str(r[1]) for r in conn.execute(text("SELECT id, code FROM estates"))}
    return [
        {
            "rule": b.code,
            "estate": codes.get(b.estate_id),
            "device": b.device_code,
            "configured": b.binding.configured,
            "missing": list(b.binding.missing),
            "status_zh": "已配置" if b.binding.configured else "未配置",
            "status_en": "configured" if b.binding.configured else "not configured",
        }
        for b in load_bound(conn)
    ]


class MultiPointEvaluator:
    def __init__(self, on_raised: OnRaised | None = None) -> None:
        self.on_raised = on_raised
        self._bound: list[Bound] = []
        self._by_point: dict[int, tuple[int, ...]] = {}
        self._known: set[int] = set()
        self._loaded_at = float("-inf")

    def load(self, conn: Connection) -> None:
        bound = [b for b in load_bound(conn) if b.binding.configured]
        by_point: dict[int, list[int]] = {}
        for i, b in enumerate(bound):
            for p in b.binding.points:
                by_point.setdefault(p, []).append(i)
        self._bound = bound
        self._by_point = {p: tuple(ix) for p, ix in by_point.items()}
        self._known = set(conn.execute(text("SELECT id FROM points")).scalars())
        self._loaded_at = time.monotonic()
        log.info("multi-point evaluator: %d rule bindings", len(bound))

    def _refresh(self, conn: Connection, point_ids: set[int]) -> None:
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_EVERY_S or (age > RELOAD_COOLDOWN_S and not self._known >= point_ids):
            self.load(conn)

    def __call__(self, conn: Connection, decoded: SampleColumns, result: object = None) -> None:
        points = decoded.sample_point
        if not points:
            return
        self._refresh(conn, set(points))
        by_point = self._by_point
        touched: dict[int, list[int]] = {}
        for i, p in enumerate(points):
            ix = by_point.get(p)
            if ix is not None:
                for n in ix:
                    touched.setdefault(n, []).append(i)
        if not touched:
            return
        bound = sorted((self._bound[n] for n in touched), key=lambda b: b.key)
        samples = {self._bound[n].key: idx for n, idx in touched.items()}
        states = self._lock_states(conn, bound)
        ts, values = decoded.sample_ts, decoded.sample_value
        results: list[tuple[Bound, MultiState, Episode | None, list[Episode]]] = []
        for b in bound:
            by_ts: dict[datetime, dict[int, float]] = {}
            for i in samples[b.key]:
                by_ts.setdefault(ts[i], {}).setdefault(points[i], values[i])  # first arrival wins
            results.append((b, *_run(b, states[b.key], by_ts)))
        self._write(conn, results)

    def _lock_states(self, conn: Connection, bound: list[Bound]) -> dict[tuple[int, int], MultiState]:
        params = {"r": [b.key[0] for b in bound], "p": [b.key[1] for b in bound]}
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
        states: dict[tuple[int, int], MultiState] = {}
        fresh = []
        for r, p, state in rows:
            if state.get("new"):
                fresh.append((r, p))
            else:
                states[(r, p)] = MultiState.from_json(state)
        if fresh:
            # The newest sample of the binding's points written before this transaction: what last_ts
            # would be had the state been stored all along; our own rows are this batch's.
            keyed = {b.key: b for b in bound}
            kp = [(i, p) for i, k in enumerate(fresh) for p in sorted(keyed[k].binding.points)]
            prior: dict[int, datetime | None] = dict(
                conn.execute(
                    text(
                        "SELECT k.i, max(l.ts) FROM unnest(CAST(:i AS int[]), CAST(:p AS int[])) AS k(i, p) "
                        "LEFT JOIN LATERAL (SELECT s.ts FROM samples s WHERE s.point_id = k.p "
                        "AND s.xmin <> pg_current_xact_id()::xid ORDER BY s.ts DESC LIMIT 1) l ON true GROUP BY k.i"
                    ),
                    {"i": [i for i, _ in kp], "p": [p for _, p in kp]},
                ).all()
            )
            for i, k in enumerate(fresh):
                states[k] = MultiState(last_ts=prior.get(i))
        return states

    def _write(self, conn: Connection, results: list[tuple[Bound, MultiState, Episode | None, list[Episode]]]) -> None:
        conn.execute(
            text(
                "UPDATE alarm_states s SET state = CAST(v.state AS jsonb), updated_at = now() "
                "FROM unnest(CAST(:r AS int[]), CAST(:p AS int[]), CAST(:s AS text[])) AS v(r, p, state) "
                "WHERE s.rule_id = v.r AND s.point_id = v.p"
            ),
            {
                "r": [b.key[0] for b, *_ in results],
                "p": [b.key[1] for b, *_ in results],
                "s": [json.dumps(st.to_json()) for _, st, _, _ in results],
            },
        )
        updates = [
            (b, e)
            for b, _, e, _ in results
            if e is not None and (e.peak, e.last_value, e.cleared_at) != (None, None, None)
        ]
        if updates:
            # The alarm open before the batch: a new peak, or closed; closed before a new episode of the
            # same (rule, subject) is inserted, or the partial unique index would refuse it.
            conn.execute(
                text(
                    "UPDATE alarms a SET peak = COALESCE(v.peak, a.peak), "
                    "last_value = COALESCE(v.last_value, a.last_value), "
                    "state = CASE WHEN v.cleared_at IS NULL THEN a.state ELSE 'cleared' END, "
                    "cleared_at = v.cleared_at, "
                    "clear_reason = CASE WHEN v.cleared_at IS NULL THEN NULL ELSE 'condition_ended' END "
                    "FROM unnest(CAST(:r AS int[]), CAST(:s AS text[]), CAST(:peak AS float8[]), "
                    "CAST(:last AS float8[]), CAST(:cleared AS timestamptz[])) "
                    "AS v(r, subject, peak, last_value, cleared_at) "
                    "WHERE a.rule_id = v.r AND a.subject = v.subject AND a.state <> 'cleared'"
                ),
                {
                    "r": [b.rule_id for b, _ in updates],
                    "s": [device_subject(b.device_id) for b, _ in updates],
                    "peak": [e.peak for _, e in updates],
                    "last": [e.last_value for _, e in updates],
                    "cleared": [e.cleared_at for _, e in updates],
                },
            )
        inserts = [(b, e) for b, _, _, new in results for e in new]
        if inserts:
            insert_alarms(
                conn,
                [
                    NewAlarm(
                        rule_id=b.rule_id,
                        subject=device_subject(b.device_id),
                        estate_id=b.estate_id,
                        severity=e.severity or str(b.rule.severity),
                        raised_at=e.raised_at or _missing(b),
                        point_id=b.binding.anchor,
                        device_id=b.device_id,
                        room_id=b.room_id,
                        peak=e.peak,
                        last_value=e.last_value,
                        cleared_at=e.cleared_at,
                        detail={
                            "rule": b.code,
                            "check": str(b.rule.check),
                            "points": _roles(b.binding.roles),
                            **_levels(b.rule),
                        },
                    )
                    for b, e in inserts
                ],
                self.on_raised,
            )


def _missing(b: Bound) -> datetime:
    raise AssertionError(f"new episode of {b.code} without raised_at")  # _run opens episodes only from a Raise


def _levels(rule: MultiPointRule) -> dict[str, Any]:
    """What a curve or cap alarm was judged against: its level (margin or cap) and the curve."""
    if rule.check is Check.above_cap:
        return {"level": rule.level}
    if rule.check is Check.above_curve:
        return {"margin": rule.level, "curve": [list(p) for p in rule.curve]}
    return {}


def _roles(roles: Mapping[str, tuple[int, ...]]) -> dict[str, list[int]]:
    return {role: list(ids) for role, ids in roles.items()}


def _run(
    b: Bound, state: MultiState, by_ts: Mapping[datetime, Mapping[int, float]]
) -> tuple[MultiState, Episode | None, list[Episode]]:
    """Apply one pair's readings ts by ts; fold transitions into (state, open-before update, new episodes)."""
    existing = current = Episode() if state.active else None
    new: list[Episode] = []
    for ts in sorted(by_ts):
        state, transition = apply(b.rule, b.binding, state, ts, by_ts[ts])
        match transition:
            case Raise():
                current = Episode(str(transition.severity), transition.at, transition.value, transition.value)
                new.append(current)
            case Clear():
                if current is not None:
                    current.cleared_at, current.last_value = transition.at, transition.value
                current = None
            case UpdatePeak():
                if current is not None:
                    current.peak = current.last_value = transition.value
            case None:
                pass
    return state, existing, new


__all__ = ["Bound", "MultiPointEvaluator", "coverage", "load_bound"]
