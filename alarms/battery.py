"""Low battery on battery-powered meters (issue 14 part 4), judged per ingest batch from status frames.

A meter is battery-powered when it reports ``battery_v`` in its ``status`` frames (a mains-powered
meter has no battery voltage to report); the ingest writer keeps only the latest in
``device_state.battery_v``, so the voltages are judged here, as the batch arrives, inside its
transaction. The rules are the meter pack's ``meter.<kind>.low_battery`` rows (``kind='meter'``,
``params.anomaly='low_battery'``, ``battery_low_v`` and ``battery_clear_band_v``, tunable per estate,
room or device through `alarm_rule_overrides`).

An episode: a reading below ``battery_low_v`` raises (warning, a "replace the battery" ticket); it
stays open until a reading at or above ``battery_low_v + battery_clear_band_v`` (a new cell), which
clears it at that reading's device time. Exactly once, as the meter evaluator does it: a reading is
judged only if its device time is after the *watermark* — the device time of the last raise or clear
of that (rule, meter) — so a late, duplicate or redelivered status frame can neither raise an episode
again nor reopen a cleared one; the partial unique index on open alarms backs this up. Concurrent
batches of one meter (a standby ingest taking over a partition) are serialised by a transaction-level
advisory lock per meter, ``(BATTERY_LOCK_CLASS, device id)``, taken before the watermark is read.

`transitions` is the pure rule (no database, no clock); `BatteryEvaluator` is the `Pipeline` hook.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, text

from alarms.anomalies import AnomalyKind
from alarms.const import Severity
from alarms.meter_evaluator import MeterDevice, MeterRule, load_meter_devices, load_meter_rules
from alarms.meter_pack import FROM_STATUS
from alarms.overrides import OverrideIndex, Subject
from alarms.store import NewAlarm, OnRaised, clear_open, device_subject, insert_alarms

log = logging.getLogger(__name__)

# The two-key advisory lock space of this hook, spelled like billing's (billing/const.py): "batt".
BATTERY_LOCK_CLASS = 0x62617474
RELOAD_COOLDOWN_S = 5.0
REFRESH_EVERY_S = 60.0


class StatusColumns(Protocol):
    """What the hook needs of a batch (ingest's DecodedBatch): (device, ts, online, battery_v) rows."""

    statuses: list[tuple[int, datetime, bool, float | None]]


@dataclass(frozen=True, slots=True)
class BatteryLevels:
    low_v: float
    clear_v: float

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BatteryLevels:
        low = float(Decimal(str(params["battery_low_v"])))
        band = float(Decimal(str(params.get("battery_clear_band_v", "0.2"))))
        if not (math.isfinite(low) and math.isfinite(band)) or low <= 0 or band < 0:
            raise ValueError("battery_low_v must be > 0 and battery_clear_band_v >= 0")
        return cls(low, low + band)


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Literal["raise", "clear"]
    at: datetime
    volts: float


def transitions(
    readings: Iterable[tuple[datetime, float]], levels: BatteryLevels, *, open_: bool, mark: datetime | None
) -> list[Transition]:
    """Raise/clear transitions of one meter's battery readings, given the episode open now and the watermark.

    Readings at or before ``mark`` (the device time of the last raise or clear) are ignored; the rest
    are taken in device-time order, the first arrival of a timestamp winning. Non-finite volts are ignored.
    """
    seen: dict[datetime, float] = {}
    for ts, v in readings:
        if math.isfinite(v) and (mark is None or ts > mark):
            seen.setdefault(ts, v)
    out: list[Transition] = []
    for ts in sorted(seen):
        v = seen[ts]
        if not open_ and v < levels.low_v:
            out.append(Transition("raise", ts, v))
            open_ = True
        elif open_ and v >= levels.clear_v:
            out.append(Transition("clear", ts, v))
            open_ = False
    return out


_MARKS_SQL = text(
    """
    SELECT al.device_id, bool_or(al.state <> 'cleared') AS open,
           max(greatest(al.raised_at, al.cleared_at)) AS mark
    FROM alarms al
    WHERE al.rule_id = :r AND al.device_id = ANY(CAST(:d AS int[]))
      AND al.subject = 'device:' || al.device_id
    GROUP BY al.device_id
    """
)


@dataclass(frozen=True, slots=True)
class _Watched:
    rule: MeterRule
    device: MeterDevice
    levels: BatteryLevels


class BatteryEvaluator:
    """Pipeline hook: battery voltages in status frames → low-battery alarms (once per episode)."""

    def __init__(self, on_raised: OnRaised | None = None) -> None:
        self.on_raised = on_raised
        self._watched: dict[int, _Watched] = {}
        self._known: set[int] = set()
        self._loaded_at = float("-inf")

    def load(self, conn: Connection) -> None:
        rules = load_meter_rules(conn, FROM_STATUS)
        devices = load_meter_devices(conn, {r.device_kind for r in rules})
        overrides = OverrideIndex.load(conn)
        by_kind: dict[str, list[MeterRule]] = {}
        for r in rules:
            by_kind.setdefault(r.device_kind, []).append(r)
        watched: dict[int, _Watched] = {}
        bad: set[str] = set()
        for dev in devices.values():
            for rule in by_kind.get(dev.kind, ()):
                params, enabled = overrides.effective(
                    rule.id, rule.params, rule.enabled, Subject(dev.estate_id, dev.room_id, dev.id)
                )
                if not enabled:
                    continue
                try:
                    levels = BatteryLevels.from_params(params)
                except (ArithmeticError, KeyError, TypeError, ValueError) as exc:
                    if rule.code not in bad:
                        log.error("battery rule %s has bad params for device %s, skipped: %s", rule.code, dev.code, exc)
                    bad.add(rule.code)
                    continue
                watched[dev.id] = _Watched(rule, dev, levels)  # one low-battery rule per meter kind
        self._watched = watched
        self._known = set(conn.execute(text("SELECT id FROM devices")).scalars())
        self._loaded_at = time.monotonic()
        log.info("battery evaluator: %d meters watched", len(watched))

    def _refresh(self, conn: Connection, device_ids: set[int]) -> None:
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_EVERY_S or (age > RELOAD_COOLDOWN_S and not self._known >= device_ids):
            self.load(conn)

    def __call__(self, conn: Connection, decoded: StatusColumns, result: object = None) -> list[int]:
        rows = [(d, ts, float(v)) for d, ts, _, v in decoded.statuses if v is not None]
        if not rows:
            return []
        self._refresh(conn, {d for d, _, _ in rows})
        by_device: dict[int, list[tuple[datetime, float]]] = {}
        for d, ts, v in rows:
            if d in self._watched:
                by_device.setdefault(d, []).append((ts, v))
        if not by_device:
            return []
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:c, d) FROM unnest(CAST(:d AS int[])) AS d ORDER BY d"),
            {"c": BATTERY_LOCK_CLASS, "d": sorted(by_device)},
        )
        by_rule: dict[int, list[int]] = {}
        for d in by_device:
            by_rule.setdefault(self._watched[d].rule.id, []).append(d)
        ids: list[int] = []
        for rule_id, devices in sorted(by_rule.items()):
            marks = {
                int(r.device_id): (bool(r.open), r.mark)
                for r in conn.execute(_MARKS_SQL, {"r": rule_id, "d": sorted(devices)})
            }
            for d in sorted(devices):
                w = self._watched[d]
                open_, mark = marks.get(d, (False, None))
                for t in transitions(by_device[d], w.levels, open_=open_, mark=mark):
                    if t.kind == "clear":
                        clear_open(conn, rule_id, [device_subject(d)], t.at)
                    else:
                        # Inserted at once: a clear later in the same batch must find it open.
                        ids += insert_alarms(conn, [_alarm(w, t)], self.on_raised)
        return ids


def _alarm(w: _Watched, t: Transition) -> NewAlarm:
    return NewAlarm(
        rule_id=w.rule.id,
        subject=device_subject(w.device.id),
        estate_id=w.device.estate_id,
        severity=str(Severity.warning),
        raised_at=t.at,
        device_id=w.device.id,
        room_id=w.device.room_id,
        unit_id=w.device.unit_id,
        detail={
            "anomaly": str(AnomalyKind.low_battery),
            "rule": w.rule.code,
            "message": f"Battery at {t.volts:.2f} V, below {w.levels.low_v:.2f} V: replace the battery.",
            "evidence": {"battery_v": f"{t.volts:.2f}", "low_v": f"{w.levels.low_v:.2f}", "at": t.at.isoformat()},
            "hold_billing": False,
            "close_valve": False,
        },
    )


__all__ = ["BatteryEvaluator", "BatteryLevels", "Transition", "transitions"]
