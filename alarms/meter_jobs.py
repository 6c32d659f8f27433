"""Meter anomalies that need days of history: night leak, continuous flow, stuck meter, building balance.

`detect_periodic` is a worker job (hourly is plenty: every rule here looks at hours or days). It is
set-based: one query narrows the meters to those that could show an anomaly (SQL aggregates over
the (device_id, ts) key, no rows shipped), one query loads the readings of those candidates and of
every meter with an open alarm of these rules, then the pure detectors of `alarms.anomalies` judge
each one with its effective params (estate < room < device overrides) and `alarms.store` raises and
clears. The same watermark as in `alarms.meter_evaluator` applies: a finding raises only when no
alarm of that (rule, subject) is open and its evidence is newer than the last raise or clear, so
running the job twice, or late, never opens a second episode for the same nights, hours or day.

Subjects: ``device:<id>`` for one meter; ``building:<id>`` for a building's master-vs-sub-meters
balance (``device:<master id>`` for an estate-wide master such as the hot-water plant's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from alarms.anomalies import (
    DEFAULTS,
    AnomalyDefaults,
    AnomalyKind,
    Finding,
    building_balance,
    continuous_flow,
    night_leak,
    stuck,
    total_between,
)
from alarms.meter_evaluator import (
    Applied,
    MeterDevice,
    apply_rules,
    load_meter_devices,
    load_meter_rules,
    new_alarm,
    to_reading,
)
from alarms.meter_pack import PERIODIC
from alarms.overrides import OverrideIndex
from alarms.store import NewAlarm, OnRaised, clear_open, device_subject, insert_alarms
from facility.meters import Consumption, Reading, intervals

log = logging.getLogger(__name__)

_FLOW = (AnomalyKind.night_leak, AnomalyKind.continuous_flow)
_SLACK = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class _Mark:
    open: bool
    mark: datetime | None


def _night_window(now: datetime, dev: MeterDevice, d: AnomalyDefaults) -> tuple[datetime, datetime]:
    """The latest night window (local night_start → night_end) that has ended by ``now``."""
    local = now.astimezone(dev.tz)
    day = local.date() if local.time() >= d.night_end else local.date() - timedelta(days=1)
    return datetime.combine(day, d.night_start, dev.tz), datetime.combine(day, d.night_end, dev.tz)


def _history(d: AnomalyDefaults, anomaly: AnomalyKind) -> timedelta:
    match anomaly:
        case AnomalyKind.night_leak:
            return timedelta(days=d.night_nights + 1)
        case AnomalyKind.continuous_flow:
            return d.continuous_for + timedelta(hours=2)
        case AnomalyKind.stuck:
            return d.stuck_for + timedelta(days=1)
        case _:
            return timedelta(days=1)


def detect_periodic(session: Session, now: datetime, on_raised: OnRaised | None = None) -> int:
    """Run the history-based meter rules as of ``now``; returns how many alarms were raised. Flushes, never commits."""
    conn = session.connection()
    rules = load_meter_rules(conn, PERIODIC)
    if not rules:
        return 0
    devices = load_meter_devices(conn, {r.device_kind for r in rules})
    applied = apply_rules(rules, devices, OverrideIndex.load(conn))
    marks = _marks(conn, sorted({r.id for r in rules}))
    job = _Job(conn, now, devices, applied, marks)
    job.per_meter()
    job.balance()
    for (rule_id, at), subjects in sorted(job.clears.items()):
        clear_open(conn, rule_id, subjects, at)
    ids = insert_alarms(conn, job.raises, on_raised) if job.raises else []
    session.flush()
    if ids or job.clears:
        log.info("meter jobs: %d alarms raised, %d cleared", len(ids), sum(map(len, job.clears.values())))
    return len(ids)


def _marks(conn: Connection, rule_ids: list[int]) -> dict[tuple[int, str], _Mark]:
    rows = conn.execute(
        text(
            "SELECT rule_id, subject, bool_or(state <> 'cleared') AS open, "
            "max(greatest(raised_at, cleared_at)) AS mark FROM alarms "
            "WHERE rule_id = ANY(CAST(:r AS int[])) GROUP BY rule_id, subject"
        ),
        {"r": rule_ids},
    )
    return {(r.rule_id, r.subject): _Mark(bool(r.open), r.mark) for r in rows}


class _Job:
    def __init__(
        self,
        conn: Connection,
        now: datetime,
        devices: Mapping[int, MeterDevice],
        applied: Mapping[int, list[Applied]],
        marks: Mapping[tuple[int, str], _Mark],
    ) -> None:
        self.conn, self.now, self.devices, self.applied, self.marks = conn, now, devices, applied, marks
        self.raises: list[NewAlarm] = []
        self.clears: dict[tuple[int, datetime], list[str]] = {}

    def _decide(
        self, a: Applied, dev: MeterDevice, subject: str, finding: Finding | None, ended: bool, at: datetime
    ) -> None:
        m = self.marks.get((a.rule.id, subject), _Mark(False, None))
        if finding is not None and not m.open and (m.mark is None or finding.at > m.mark):
            self.raises.append(new_alarm(a, dev, finding, subject))
        elif ended and m.open:
            self.clears.setdefault((a.rule.id, at), []).append(subject)

    def _is_open(self, a: Applied, subject: str) -> bool:
        m = self.marks.get((a.rule.id, subject))
        return m is not None and m.open

    # --- one meter at a time: night leak, continuous flow, stuck ----------------------------------

    def per_meter(self) -> None:
        # Unit meters only: a plant or master meter legitimately runs all night and never idles a week.
        watched: dict[int, list[Applied]] = {
            dev_id: [a for a in rules if a.rule.anomaly in (*_FLOW, AnomalyKind.stuck)]
            for dev_id, rules in self.applied.items()
            if self.devices[dev_id].unit_id is not None and self.devices[dev_id].master_of is None
        }
        watched = {k: v for k, v in watched.items() if v}
        if not watched:
            return
        candidates = self._candidates(watched)
        load = {
            dev_id
            for dev_id, rules in watched.items()
            if dev_id in candidates or any(self._is_open(a, device_subject(dev_id)) for a in rules)
        }
        if not load:
            return
        since = min(self.now - _history(a.defaults, a.rule.anomaly) for d in load for a in watched[d])
        readings, occupancy = self._load(sorted(load), since)
        for dev_id in sorted(load):
            dev, rows = self.devices[dev_id], readings.get(dev_id, [])
            if len(rows) < 2:
                continue
            occ = occupancy.get(dev_id)
            items: list[Consumption] = intervals(
                rows, register_max=dev.register_max, resolution=dev.resolution, multiplier=dev.multiplier
            )
            subject, latest = device_subject(dev_id), rows[-1].ts
            for a in watched[dev_id]:
                ctx = dev.context(occ, False, a.capacity)
                window_start = self.now - _history(a.defaults, a.rule.anomaly)
                match a.rule.anomaly:
                    case AnomalyKind.night_leak:
                        found = night_leak([c for c in items if c.from_ts >= window_start], ctx, a.defaults)
                    case AnomalyKind.continuous_flow:
                        found = continuous_flow([c for c in items if c.from_ts >= window_start], ctx, a.defaults)
                    case _:
                        found = stuck([r for r in rows if r.ts >= window_start], ctx, a.defaults)
                self._decide(a, dev, subject, found, found is None, latest)

    def _candidates(self, watched: Mapping[int, list[Applied]]) -> set[int]:
        """Meters that could show a finding: water through the latest night, or a register idle for stuck_for."""
        flow_d, flow_s, flow_e, stuck_d, stuck_s, stuck_r = [], [], [], [], [], []
        for dev_id, rules in watched.items():
            dev = self.devices[dev_id]
            flows = [a for a in rules if a.rule.anomaly in _FLOW]
            if flows:
                # A night leak needs flow in every hour of the latest night; 24 h of continuous flow
                # include the latest night too. Either way the register rose during that night.
                leak = next((a.defaults for a in flows if a.rule.anomaly is AnomalyKind.night_leak), DEFAULTS)
                start, end = _night_window(self.now, dev, leak)
                flow_d.append(dev_id)
                flow_s.append(start)
                flow_e.append(end)
            for a in rules:
                if a.rule.anomaly is AnomalyKind.stuck:
                    stuck_d.append(dev_id)
                    stuck_s.append(self.now - a.defaults.stuck_for)
                    stuck_r.append(dev.resolution)
        rows = self.conn.execute(
            text(
                """
                SELECT k.d FROM unnest(CAST(:fd AS int[]), CAST(:fs AS timestamptz[]), CAST(:fe AS timestamptz[]))
                     AS k(d, s, e)
                CROSS JOIN LATERAL (SELECT max(register) - min(register) AS rise FROM meter_readings
                                    WHERE device_id = k.d AND ts BETWEEN k.s AND k.e) r
                WHERE r.rise > 0
                UNION
                SELECT k.d FROM unnest(CAST(:sd AS int[]), CAST(:ss AS timestamptz[]), CAST(:sr AS numeric[]))
                     AS k(d, s, res)
                CROSS JOIN LATERAL (SELECT max(register) - min(register) AS rise, count(*) AS n FROM meter_readings
                                    WHERE device_id = k.d AND ts >= k.s AND ts <= CAST(:now AS timestamptz)) r
                WHERE r.n > 0 AND r.rise < k.res
                  AND EXISTS (SELECT 1 FROM meter_readings o WHERE o.device_id = k.d AND o.ts < k.s)
                """
            ),
            {
                "fd": flow_d,
                "fs": flow_s,
                "fe": flow_e,
                "sd": stuck_d,
                "ss": stuck_s,
                "sr": stuck_r,
                "now": self.now,
            },
        )
        return {int(r[0]) for r in rows}

    def _load(self, device_ids: Sequence[int], since: datetime) -> tuple[dict[int, list[Reading]], dict[int, str]]:
        readings: dict[int, list[Reading]] = {}
        for dev_id, ts, reg, rev, flags in self.conn.execute(
            text(
                "SELECT device_id, ts, register, reverse_register, array_to_string(flags, ',') FROM meter_readings "
                "WHERE device_id = ANY(CAST(:d AS int[])) AND ts >= :since AND ts <= :now ORDER BY device_id, ts"
            ),
            {"d": list(device_ids), "since": since, "now": self.now},
        ):
            readings.setdefault(dev_id, []).append(to_reading(ts, reg, rev, flags))
        occupancy = {
            int(d): str(o)
            for d, o in self.conn.execute(
                text(
                    "SELECT d.id, u.occupancy FROM devices d JOIN units u ON u.id = d.unit_id "
                    "WHERE d.id = ANY(CAST(:d AS int[]))"
                ),
                {"d": list(device_ids)},
            )
        }
        return readings, occupancy

    # --- building balance ----------------------------------------------------------------------------

    def balance(self) -> None:
        masters = [
            (self.devices[dev_id], a)
            for dev_id, rules in self.applied.items()
            for a in rules
            if a.rule.anomaly is AnomalyKind.building_balance and self.devices[dev_id].master_of is not None
        ]
        if not masters:
            return
        buildings = {
            (int(e), str(c)): int(i) for i, e, c in self.conn.execute(text("SELECT id, estate_id, code FROM buildings"))
        }
        groups: list[tuple[MeterDevice, Applied, list[int], datetime, datetime, str]] = []
        for master, a in masters:
            subs = [
                d.id
                for d in self.devices.values()
                if d.kind == master.master_of
                and d.estate_id == master.estate_id
                and d.unit_id is not None
                and d.master_of is None
                and (master.building is None or d.building == master.building)
            ]
            if not subs:
                continue
            end = datetime.combine(self.now.astimezone(master.tz).date(), time(0), master.tz)
            building_id = buildings.get((master.estate_id, master.building)) if master.building else None
            subject = f"building:{building_id}" if building_id is not None else device_subject(master.id)
            groups.append((master, a, subs, end - timedelta(days=1), end, subject))
        if not groups:
            return
        tol = max(a.defaults.balance_sync_tolerance for _, a, *_ in groups)
        since = min(g[3] for g in groups) - tol - _SLACK
        until = max(g[4] for g in groups) + tol + _SLACK
        ids = sorted({g[0].id for g in groups} | {s for g in groups for s in g[2]})
        readings: dict[int, list[Reading]] = {}
        for dev_id, ts, reg in self.conn.execute(
            text(
                "SELECT device_id, ts, register FROM meter_readings WHERE device_id = ANY(CAST(:d AS int[])) "
                "AND ts >= :since AND ts <= :until ORDER BY device_id, ts"
            ),
            {"d": ids, "since": since, "until": until},
        ):
            readings.setdefault(dev_id, []).append(Reading(ts, reg))
        cache: dict[int, list[Consumption]] = {}

        def items(dev_id: int) -> list[Consumption]:
            if dev_id not in cache:
                d = self.devices[dev_id]
                cache[dev_id] = intervals(
                    readings.get(dev_id, []),
                    register_max=d.register_max,
                    resolution=d.resolution,
                    multiplier=d.multiplier,
                )
            return cache[dev_id]

        for master, a, subs, start, end, subject in groups:
            sub_items = {self.devices[s].code: items(s) for s in subs}
            found = building_balance(items(master.id), sub_items, start=start, end=end, defaults=a.defaults)
            tol = a.defaults.balance_sync_tolerance
            # No verdict without synchronised reads of every meter: then the episode neither opens nor ends.
            complete = all(
                total_between(x, start, end, tolerance=tol) is not None for x in (items(master.id), *sub_items.values())
            )
            self._decide(a, master, subject, found, found is None and complete, end)


__all__ = ["detect_periodic"]
