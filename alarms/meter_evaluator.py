"""Meter anomalies judged per ingest batch (vacant flow, reverse energy, spike, reset/replacement).

Usable as a `Pipeline` hook: `hook(conn, decoded, result)`, inside the batch transaction after the
rows are written. Per batch with meter readings of watched meters, ONE query:

* finds which of the batch's (device, ts) rows this transaction really inserted — the row's
  ``xmin`` equals our own transaction id (``pg_current_xact_id()::xid``). The writer's result only
  counts rows; ``xmin`` names them, so a redelivered or duplicate reading (``ON CONFLICT DO
  NOTHING``) is not "new" and its device is not evaluated at all. The pipeline writes without
  savepoints; a caller that inserts inside a savepoint would make its rows look not-new (safe side:
  nothing raised);
* loads the last `HISTORY_READINGS` readings of each such device (one LATERAL scan per device on
  the (device_id, ts) key) and, per watched meter rule, whether an alarm is open and the device time
  of its last episode's raise/clear (the *watermark*).

Then the detectors run on each device's window with its effective params (rule params merged with
estate < room < device overrides, `alarms.overrides`). A finding raises through `alarms.store` only
when no alarm of that (rule, device) is open **and** its evidence is newer than the watermark, so a
late reading can never re-raise an episode that was already raised or cleared. An open alarm whose
condition ended is cleared at the device time of the latest reading.

Rules, overrides and device context are cached (reloaded every `REFRESH_EVERY_S`, or after
`RELOAD_COOLDOWN_S` when a meter the cache does not know reports); occupancy and PV are read live
in the batch query, so a unit switched to "occupied" stops (and clears) its vacant-flow alarm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from alarms.anomalies import (
    VACANT,
    AnomalyDefaults,
    AnomalyKind,
    Finding,
    MeterContext,
    reset_or_replacement,
    reverse_energy,
    spike,
    vacant_flow,
)
from alarms.const import Severity
from alarms.meter_pack import (
    METER_RULE_KIND,
    PER_READING,
    capacity_from_params,
    defaults_from_params,
    severity_from_params,
)
from alarms.overrides import OverrideIndex, Subject
from alarms.store import NewAlarm, OnRaised, clear_open, device_subject, insert_alarms
from facility.meters import Consumption, Reading, intervals
from protocol.estate_file import METER_UNIT

log = logging.getLogger(__name__)

RELOAD_COOLDOWN_S = 5.0
REFRESH_EVERY_S = 60.0
# Two days of 15-minute reads: enough for the spike rule's p95 (≥ 24 intervals) and a day of reverse register.
HISTORY_READINGS = 192
REVERSE_WINDOW = timedelta(days=1)
_DEFAULT_RESOLUTION = {"kWh": Decimal("0.01"), "m3": Decimal("0.001")}


class MeterColumns(Protocol):
    """What the evaluator needs of a batch (ingest's DecodedBatch); alarms never import ingest."""

    meters: list[tuple[datetime, int, Decimal, Decimal | None, str | None, list[str], int | None, datetime]]


# --- cached configuration (shared with alarms.meter_jobs) -------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterRule:
    id: int
    code: str
    anomaly: AnomalyKind
    device_kind: str
    params: Mapping[str, Any]
    enabled: bool


@dataclass(frozen=True, slots=True)
class MeterDevice:
    id: int
    code: str
    kind: str
    estate_id: int
    unit_id: int | None
    room_id: int | None
    unit: Literal["kWh", "m3"]
    resolution: Decimal
    multiplier: Decimal
    register_max: Decimal | None
    has_valve: bool
    tz: tzinfo
    master_of: str | None  # a master meter sums the meters of this kind (attrs.master_of)
    building: str | None  # building code (attrs.building), None for estate-wide devices

    def context(self, occupancy: str | None, has_pv: bool, capacity: Decimal | None = None) -> MeterContext:
        return MeterContext(
            unit=self.unit,
            resolution=self.resolution,
            tz=self.tz,
            # A meter without a unit (plant, master) is never "vacant": there is nobody to be absent.
            occupancy=occupancy or "occupied",
            has_pv=has_pv,
            has_valve=self.has_valve,
            multiplier=self.multiplier,
            register_max=self.register_max,
            capacity_per_hour=capacity,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """One rule as it applies to one device: effective params already merged and parsed."""

    rule: MeterRule
    params: Mapping[str, Any]
    defaults: AnomalyDefaults
    severity: Severity | None
    capacity: Decimal | None


def load_meter_rules(conn: Connection, anomalies: Iterable[AnomalyKind]) -> list[MeterRule]:
    """Every meter rule of these anomalies (disabled ones too: an override may switch one back on)."""
    wanted = {str(a) for a in anomalies}
    out = []
    for rule_id, code, device_kind, params, enabled in conn.execute(
        text("SELECT id, code, device_kind, params, enabled FROM alarm_rules WHERE kind = :k ORDER BY id"),
        {"k": str(METER_RULE_KIND)},
    ):
        anomaly = (params or {}).get("anomaly")
        if anomaly not in wanted or not device_kind:
            continue
        out.append(MeterRule(rule_id, code, AnomalyKind(anomaly), device_kind, params or {}, bool(enabled)))
    return out


def load_meter_devices(conn: Connection, kinds: Iterable[str]) -> dict[int, MeterDevice]:
    kinds = sorted(set(kinds) & METER_UNIT.keys())
    if not kinds:
        return {}
    zones: dict[str, tzinfo] = {}
    out: dict[int, MeterDevice] = {}
    for r in conn.execute(
        text(
            "SELECT d.id, d.code, d.kind, d.estate_id, d.unit_id, d.room_id, d.resolution, d.multiplier, "
            "d.register_max, d.has_valve, d.attrs->>'master_of' AS master_of, d.attrs->>'building' AS building, "
            "e.timezone FROM devices d JOIN estates e ON e.id = d.estate_id WHERE d.kind = ANY(CAST(:k AS text[]))"
        ),
        {"k": kinds},
    ):
        unit: Literal["kWh", "m3"] = "kWh" if METER_UNIT[r.kind] == "kWh" else "m3"
        tz = zones.get(r.timezone)
        if tz is None:
            tz = zones[r.timezone] = ZoneInfo(r.timezone)
        out[r.id] = MeterDevice(
            id=r.id,
            code=r.code,
            kind=r.kind,
            estate_id=r.estate_id,
            unit_id=r.unit_id,
            room_id=r.room_id,
            unit=unit,
            resolution=_clean(r.resolution) if r.resolution and r.resolution > 0 else _DEFAULT_RESOLUTION[unit],
            multiplier=_clean(r.multiplier) if r.multiplier and r.multiplier > 0 else Decimal(1),
            register_max=None if r.register_max is None else _clean(r.register_max),
            has_valve=bool(r.has_valve),
            tz=tz,
            master_of=r.master_of,
            building=r.building,
        )
    return out


def _clean(d: Decimal) -> Decimal:
    # numeric(12,4) comes back as 1.0000: strip the scale so volumes read 0.015, not 0.0150000000.
    n = d.normalize()
    return n if int(n.as_tuple().exponent) <= 0 else n.quantize(Decimal(1))


def apply_rules(
    rules: Sequence[MeterRule], devices: Mapping[int, MeterDevice], overrides: OverrideIndex
) -> dict[int, list[Applied]]:
    """Each device's enabled rules with effective params; rules with bad params are logged and skipped."""
    by_kind: dict[str, list[MeterRule]] = {}
    for rule in rules:
        by_kind.setdefault(rule.device_kind, []).append(rule)
    out: dict[int, list[Applied]] = {}
    bad: set[str] = set()
    for dev in devices.values():
        for rule in by_kind.get(dev.kind, ()):
            subject = Subject(dev.estate_id, dev.room_id, dev.id)
            params, enabled = overrides.effective(rule.id, rule.params, rule.enabled, subject)
            if not enabled:
                continue
            try:
                applied = Applied(
                    rule,
                    params,
                    defaults_from_params(params),
                    severity_from_params(params),
                    capacity_from_params(params),
                )
            except (ArithmeticError, TypeError, ValueError) as exc:
                if rule.code not in bad:
                    log.error("meter rule %s has bad params for device %s, skipped: %s", rule.code, dev.code, exc)
                bad.add(rule.code)
                continue
            out.setdefault(dev.id, []).append(applied)
    return out


def alarm_detail(rule: MeterRule, finding: Finding) -> dict[str, Any]:
    """What goes into `alarms.detail`: the finding's text and evidence plus the actions it calls for."""
    return {
        "anomaly": str(finding.kind),
        "rule": rule.code,
        "message": finding.detail,
        "evidence": dict(finding.evidence),
        "hold_billing": finding.hold_billing,
        "close_valve": finding.close_valve,
    }


def new_alarm(a: Applied, dev: MeterDevice, finding: Finding, subject: str | None = None) -> NewAlarm:
    return NewAlarm(
        rule_id=a.rule.id,
        subject=subject or device_subject(dev.id),
        estate_id=dev.estate_id,
        severity=str(a.severity or finding.severity),
        raised_at=finding.at,
        device_id=dev.id,
        room_id=dev.room_id,
        unit_id=dev.unit_id,
        detail=alarm_detail(a.rule, finding),
    )


def to_reading(ts: datetime, register: Decimal, reverse: Decimal | None, flags: str | None) -> Reading:
    return Reading(ts, register, reverse, None, tuple(f for f in (flags or "").split(",") if f))


# --- the hook ------------------------------------------------------------------------------------------

_BATCH_SQL = text(
    """
    WITH k AS (
      SELECT DISTINCT d, t FROM unnest(CAST(:d AS int[]), CAST(:t AS timestamptz[])) AS k(d, t)
    ), new AS (
      SELECT m.device_id, min(m.ts) AS first_new FROM meter_readings m JOIN k ON m.device_id = k.d AND m.ts = k.t
      WHERE m.xmin = pg_current_xact_id()::xid
      GROUP BY m.device_id
    )
    SELECT n.device_id, n.first_new, u.occupancy, coalesce(u.has_pv, false) AS has_pv,
           w.ts, w.reg, w.rev, w.flags, a.rules, a.open, a.marks
    FROM new n
    JOIN devices dv ON dv.id = n.device_id
    LEFT JOIN units u ON u.id = dv.unit_id
    CROSS JOIN LATERAL (
      SELECT array_agg(s.ts ORDER BY s.ts) AS ts, array_agg(s.register ORDER BY s.ts) AS reg,
             array_agg(s.reverse_register ORDER BY s.ts) AS rev,
             array_agg(array_to_string(s.flags, ',') ORDER BY s.ts) AS flags
      FROM (SELECT r.ts, r.register, r.reverse_register, r.flags FROM meter_readings r
            WHERE r.device_id = n.device_id ORDER BY r.ts DESC LIMIT :lim) s
    ) w
    LEFT JOIN LATERAL (
      SELECT array_agg(q.rule_id) AS rules, array_agg(q.open) AS open, array_agg(q.mark) AS marks
      FROM (SELECT al.rule_id, bool_or(al.state <> 'cleared') AS open,
                   max(greatest(al.raised_at, al.cleared_at)) AS mark
            FROM alarms al
            WHERE al.device_id = n.device_id AND al.subject = 'device:' || n.device_id
              AND al.rule_id = ANY(CAST(:rules AS int[]))
            GROUP BY al.rule_id) q
    ) a ON true
    """
)


@dataclass(frozen=True, slots=True)
class EpisodeMark:
    open: bool
    mark: datetime | None  # device time of the last raise or clear of this (rule, device)


class MeterAnomalyEvaluator:
    """Pipeline hook: per-reading meter anomalies → alarms (raise once per episode, clear when it ends)."""

    def __init__(self, on_raised: OnRaised | None = None, *, history: int = HISTORY_READINGS) -> None:
        self.on_raised = on_raised
        self.history = history
        self._devices: dict[int, MeterDevice] = {}
        self._applied: dict[int, list[Applied]] = {}
        self._known: set[int] = set()
        self._rule_ids: list[int] = []
        self._loaded_at = float("-inf")

    # --- cache -------------------------------------------------------------------------------

    def load(self, conn: Connection) -> None:
        rules = load_meter_rules(conn, PER_READING)
        devices = load_meter_devices(conn, {r.device_kind for r in rules})
        self._applied = apply_rules(rules, devices, OverrideIndex.load(conn))
        self._devices = devices
        self._rule_ids = sorted({r.id for r in rules})
        # Every meter id counts as known, watched or not, so an unwatched meter never forces reloads.
        self._known = set(conn.execute(text("SELECT id FROM devices")).scalars())
        self._loaded_at = time.monotonic()
        log.info("meter anomaly evaluator: %d rules, %d meters watched", len(rules), len(self._applied))

    def _refresh(self, conn: Connection, device_ids: Iterable[int]) -> None:
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_EVERY_S or (age > RELOAD_COOLDOWN_S and not self._known.issuperset(device_ids)):
            self.load(conn)

    # --- per batch ---------------------------------------------------------------------------

    def __call__(self, conn: Connection, decoded: MeterColumns, result: object = None) -> list[int]:
        """Evaluate the batch's meters; returns the ids of alarms raised."""
        if not decoded.meters:
            return []
        self._refresh(conn, {m[1] for m in decoded.meters})
        watched = self._applied
        keys = [(m[1], m[0]) for m in decoded.meters if m[1] in watched]
        if not keys:
            return []
        rows = conn.execute(
            _BATCH_SQL,
            {"d": [k[0] for k in keys], "t": [k[1] for k in keys], "lim": self.history, "rules": self._rule_ids},
        ).all()
        raises: list[NewAlarm] = []
        clears: dict[tuple[int, datetime], list[str]] = {}
        for row in rows:
            dev = self._devices[row.device_id]
            readings = [to_reading(*r) for r in zip(row.ts, row.reg, row.rev, row.flags, strict=True)]
            marks = {
                rule_id: EpisodeMark(bool(is_open), mark)
                for rule_id, is_open, mark in zip(row.rules or (), row.open or (), row.marks or (), strict=True)
            }
            for applied, finding, ended in self._judge(dev, row.occupancy, row.has_pv, readings, row.first_new):
                m = marks.get(applied.rule.id, EpisodeMark(False, None))
                if finding is not None and not m.open and (m.mark is None or finding.at > m.mark):
                    raises.append(new_alarm(applied, dev, finding))
                elif ended and m.open:
                    clears.setdefault((applied.rule.id, readings[-1].ts), []).append(device_subject(dev.id))
        for (rule_id, at), subjects in sorted(clears.items()):
            clear_open(conn, rule_id, subjects, at)
        return insert_alarms(conn, raises, self.on_raised) if raises else []

    def _judge(
        self, dev: MeterDevice, occupancy: str | None, has_pv: bool, readings: list[Reading], first_new: datetime
    ) -> Iterable[tuple[Applied, Finding | None, bool]]:
        """(rule, finding or None, whether an open episode has ended) for each watched rule of the device."""
        if len(readings) < 2:
            return
        latest = readings[-1].ts
        items: list[Consumption] | None = None
        for a in self._applied.get(dev.id, ()):
            ctx = dev.context(occupancy, has_pv, a.capacity)
            if items is None:
                items = intervals(
                    readings, register_max=dev.register_max, resolution=dev.resolution, multiplier=dev.multiplier
                )
            match a.rule.anomaly:
                case AnomalyKind.vacant_flow:
                    found = vacant_flow(items, ctx, a.defaults)
                    # Hysteresis: one dry reading amid a running leak does not end the episode; it
                    # ends when none of the last N intervals moved the register, or the unit is let.
                    step = ctx.resolution * ctx.multiplier
                    recent = items[-a.defaults.vacant_consecutive :]
                    dry = bool(recent) and all(c.volume < step for c in recent)
                    yield a, found, found is None and (dry or ctx.occupancy != VACANT)
                case AnomalyKind.reverse_energy:
                    day = [r for r in readings if r.ts >= latest - REVERSE_WINDOW]
                    found = reverse_energy(day, ctx, a.defaults)
                    yield a, found, found is None
                case AnomalyKind.spike:
                    # A spike is one interval: judge every interval this batch added (a backlog can
                    # bring several readings of one meter), each against the history before it.
                    found = None
                    for i, c in enumerate(items):
                        if c.to_ts >= first_new:
                            found = spike(items[: i + 1], ctx, a.defaults) or found
                    yield a, found, found is None and _auto_clear(a)
                case AnomalyKind.reset_or_replacement:
                    found = reset_or_replacement(items)
                    yield a, found, found is None and _auto_clear(a)


def _auto_clear(a: Applied) -> bool:
    # A spike or a reset holds billing: the alarm is a task (check the interval, record the old
    # final and new initial reading) and stays open until someone closes it, unless the rule (or an
    # override) sets `auto_clear`. The watermark keeps the same interval from raising it again.
    return bool(a.params.get("auto_clear", False))


__all__ = [
    "HISTORY_READINGS",
    "Applied",
    "MeterAnomalyEvaluator",
    "MeterColumns",
    "MeterDevice",
    "MeterRule",
    "alarm_detail",
    "apply_rules",
    "load_meter_devices",
    "load_meter_rules",
    "new_alarm",
    "to_reading",
]
