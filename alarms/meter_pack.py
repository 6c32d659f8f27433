"""Default meter anomaly rules (domain-defaults §3): one `alarm_rules` row per anomaly and meter kind.

A meter rule row has ``kind='meter'``, ``metric='register'``, ``device_kind`` naming the meters it
watches and ``params = {"anomaly": <AnomalyKind>, ...}``; any other key of ``params`` overrides an
``AnomalyDefaults`` field (see `defaults_from_params`), so an estate, room or device override in
`alarm_rule_overrides` tunes one meter without a code change.

`METER_RULE_META` repeats each spec's device kind, titles and ticket policy by code (the values
the `RuleSpec` fields carry), for callers that look them up by code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from alarms.anomalies import DEFAULTS, AnomalyDefaults, AnomalyKind
from alarms.const import RuleKind, Severity
from alarms.packs import RuleSpec, ensure_default_rules
from core import glossary

# `RuleKind` has no `meter` member yet; the column's check constraint already allows the text.
METER_RULE_KIND = RuleKind.meter
METER_METRIC = "register"

# Anomalies judged per ingest batch (alarms.meter_evaluator) and by the periodic job (alarms.meter_jobs).
PER_READING = (
    AnomalyKind.vacant_flow,
    AnomalyKind.reverse_energy,
    AnomalyKind.spike,
    AnomalyKind.reset_or_replacement,
)
PERIODIC = (AnomalyKind.night_leak, AnomalyKind.continuous_flow, AnomalyKind.stuck, AnomalyKind.building_balance)
# Judged per ingest batch from the meters' status frames (battery_v), by alarms.battery.
FROM_STATUS = (AnomalyKind.low_battery,)

_WATER = (
    AnomalyKind.vacant_flow,
    AnomalyKind.night_leak,
    AnomalyKind.continuous_flow,
    AnomalyKind.spike,
    AnomalyKind.stuck,
    AnomalyKind.reset_or_replacement,
    AnomalyKind.building_balance,
    AnomalyKind.low_battery,
)
ANOMALIES_BY_DEVICE_KIND: dict[str, tuple[AnomalyKind, ...]] = {
    "electricity_meter": (
        AnomalyKind.reverse_energy,
        AnomalyKind.spike,
        AnomalyKind.stuck,
        AnomalyKind.reset_or_replacement,
        AnomalyKind.low_battery,
    ),
    "cold_water_meter": _WATER,
    "hot_water_meter": _WATER,
}
_SHORT = {"electricity_meter": "electricity", "cold_water_meter": "cold_water", "hot_water_meter": "hot_water"}
_CATEGORY = {"electricity_meter": "electrical", "cold_water_meter": "water", "hot_water_meter": "hot_water"}
_METER_ZH = {kind: glossary.DEVICE_KIND[kind][0] for kind in _SHORT}  # 电表, 冷水表, 热水表
_METER_EN = {kind: glossary.DEVICE_KIND[kind][1] for kind in _SHORT}

_TITLES: dict[AnomalyKind, tuple[str, str]] = {
    # 空置房水表走字 (core/glossary.VACANT_METER_RUNNING) with the meter named: 空置房冷水表走字. Never 走水 (a fire).
    AnomalyKind.vacant_flow: ("空置房{meter}走字（关闭阀门）", "running in a vacant unit (close the valve)"),
    AnomalyKind.reverse_energy: ("反转（检查接线/窃电）", "running backwards (check wiring / tampering)"),
    AnomalyKind.night_leak: ("夜间持续用水（疑似漏水）", "night-time flow (possible leak)"),
    AnomalyKind.continuous_flow: ("连续24小时用水", "continuous flow for 24 h"),
    AnomalyKind.spike: ("用量突增（暂停计费）", "consumption spike (billing held)"),
    AnomalyKind.stuck: ("7天读数不变（检查表具）", "register unchanged for 7 days (check meter)"),
    AnomalyKind.reset_or_replacement: (
        "表底回退/换表（暂停计费，登记新旧表底）",
        "reset or replacement (billing held; record old final / new initial reading)",
    ),
    AnomalyKind.building_balance: (
        "总分表差异超15%（疑似管网漏水）",
        "master vs sub-meters > 15 % (possible pipe leak)",
    ),
    AnomalyKind.low_battery: ("电池电压低（更换电池）", "battery low (replace the battery)"),
}

_ALL_LEVELS = (Severity.warning, Severity.alarm, Severity.critical)


def _policy(category: str, priority: str, *, min_severity: Severity = Severity.warning, **extra: Any) -> dict[str, Any]:
    return {
        "min_severity": str(min_severity),
        "category": category,
        "priority": {str(s): priority for s in _ALL_LEVELS if s.rank >= min_severity.rank},
        **extra,
    }


def _ticket_policy(device_kind: str, anomaly: AnomalyKind) -> dict[str, Any]:
    water = _CATEGORY[device_kind]
    match anomaly:
        case AnomalyKind.vacant_flow:
            # SOP (seeds/001 巡查): water running in an empty flat → close the valve before it floods.
            return _policy(water, "high", on_site_minutes=20, close_valve=True)
        case AnomalyKind.reverse_energy:
            return _policy("electrical", "normal", task="check wiring / tampering")
        case AnomalyKind.night_leak:
            p = _policy(water, "normal", resident_notice=True)
            p["priority"]["alarm"] = "high"  # > 30 L/h: a leak, not a maybe
            return p
        case AnomalyKind.continuous_flow:
            return _policy(water, "normal", resident_notice=True)
        case AnomalyKind.building_balance:
            return _policy(water, "high", task="possible pipe leak")
        case AnomalyKind.stuck:
            return _policy("meter", "normal", task="check meter")
        case AnomalyKind.low_battery:
            # Like the stuck meter: a visit to the meter, not an emergency — but before the cell dies and
            # the meter stops reading (and a prepaid valve can no longer be operated).
            return _policy("meter", "normal", task="replace the meter battery")
        case AnomalyKind.reset_or_replacement:
            return _policy("meter", "normal", task="record the old meter's final and the new meter's initial reading")
        case _:
            return _policy("meter", "normal")


# --- params → detector tunables ---------------------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(AnomalyDefaults)}


def _time(raw: object) -> time:
    if isinstance(raw, int):
        return time(raw)
    return time.fromisoformat(str(raw))


def defaults_from_params(params: Mapping[str, Any]) -> AnomalyDefaults:
    """Build the detector tunables from a rule's effective params; raises ValueError/TypeError on bad values.

    Keys are `AnomalyDefaults` field names; durations are seconds under ``<field>_s``
    (``continuous_for_s``, ``stuck_for_s``, …), night bounds ``"HH:MM"`` or an hour, volumes numbers
    or decimal strings. Other keys (``anomaly``, ``severity``, ``capacity_per_hour``, ``window_s``,
    ``auto_clear``, …) belong to the evaluator and are ignored here.
    """
    changes: dict[str, Any] = {}
    for name in _FIELDS:
        current = getattr(DEFAULTS, name)
        if isinstance(current, timedelta):
            if f"{name}_s" in params:
                changes[name] = timedelta(seconds=float(params[f"{name}_s"]))
            continue
        if name not in params:
            continue
        raw = params[name]
        if isinstance(current, str):
            changes[name] = str(raw)
        elif isinstance(current, int):
            changes[name] = int(raw)
        elif isinstance(current, Decimal):
            value = Decimal(str(raw))
            if not value.is_finite():
                raise ValueError(f"{name} must be finite")
            changes[name] = value
        elif isinstance(current, time):
            changes[name] = _time(raw)
    return dataclasses.replace(DEFAULTS, **changes) if changes else DEFAULTS


def severity_from_params(params: Mapping[str, Any]) -> Severity | None:
    """An operator's fixed severity for the rule (``params.severity``), or None to keep the detector's."""
    raw = params.get("severity")
    return None if raw is None else Severity(raw)


def capacity_from_params(params: Mapping[str, Any]) -> Decimal | None:
    """Pipe/breaker capacity per hour for the spike rule (``params.capacity_per_hour``), if configured."""
    raw = params.get("capacity_per_hour")
    return None if raw is None else Decimal(str(raw))


def rule_code(device_kind: str, anomaly: AnomalyKind | str) -> str:
    return f"meter.{_SHORT[device_kind]}.{anomaly}"


# What one flat's supply can physically deliver per hour, in the meter's units (tune per device with an
# override): a 60 A breaker at 220 V is 13.2 kWh/h; a DN20 cold-water branch at ~2 m/s about 2.5 m³/h;
# a DN15 hot-water branch about 1.5 m³/h. A reading above it is a meter or data fault, not use.
SUPPLY_CAPACITY_PER_HOUR = {"electricity_meter": "13.2", "cold_water_meter": "2.5", "hot_water_meter": "1.5"}
# The least interval use that can be a spike (issue 14 part 4), absolute, whatever the interval: above what
# one household uses in a busy hour — a filled bathtub (~200 L), a washing machine and showers stay under
# 0.5 m³ of cold or of hot water; an induction hob, a water heater and an air conditioner together under
# 8 kWh (60 % of the 60 A breaker for a full hour). Below it "3 × p95" is ordinary variation on hourly
# reads. The simulator's households (60 flats × 1–5 persons × 30 days of hourly reads) peak at 0.27 m³
# cold, 0.30 m³ hot and 5.6 kWh, and "3 × p95" alone fired on 622 and 3,493 of 201,600 healthy water
# intervals; with these floors on none. On reads shorter than an hour the supply capacity above is the
# tighter bound. Tune per device with an override (``spike_min_step``).
SPIKE_MIN_STEP = {"electricity_meter": "8", "cold_water_meter": "0.5", "hot_water_meter": "0.5"}
# Low battery, volts, per meter kind. domain-defaults has no figure, so from the cells these meters carry:
# NB-IoT/LoRa and IC-card water meters run on a 3.6 V lithium-thionyl-chloride cell (ER18505/ER26500),
# whose voltage stays flat near 3.6 V for most of its life and falls off only in the last few per cent
# of capacity; 3.3 V under no load is that knee, which is what the meters' own 欠压 flag uses. An
# electricity meter is mains-powered; the voltage it reports is its clock/readout battery (3.6 V ER or
# 3.0 V CR cell, DL/T 645's 时钟电池欠压 status), judged lower at 3.0 V. It clears at 0.2 V above (a
# fresh cell reads ≥ 3.5 V; a passivated one recovering a little after a valve operation does not clear).
BATTERY_LOW_V = {"electricity_meter": "3.0", "cold_water_meter": "3.3", "hot_water_meter": "3.3"}
BATTERY_CLEAR_BAND_V = "0.2"


def _specs() -> tuple[tuple[RuleSpec, ...], dict[str, dict[str, Any]]]:
    specs: list[RuleSpec] = []
    meta: dict[str, dict[str, Any]] = {}
    for device_kind, anomalies in ANOMALIES_BY_DEVICE_KIND.items():
        for anomaly in anomalies:
            code = rule_code(device_kind, anomaly)
            params: dict[str, Any] = {"anomaly": str(anomaly)}
            if anomaly is AnomalyKind.spike:
                # "…or above pipe/breaker capacity × Δt" (domain-defaults §3): without it a meter that is
                # usually idle (p95 = 0, e.g. hot water at 15-min reads) could never show a spike.
                params["capacity_per_hour"] = SUPPLY_CAPACITY_PER_HOUR[device_kind]
                params["spike_min_step"] = SPIKE_MIN_STEP[device_kind]
            if anomaly is AnomalyKind.low_battery:
                params["battery_low_v"] = BATTERY_LOW_V[device_kind]
                params["battery_clear_band_v"] = BATTERY_CLEAR_BAND_V
            defaults_from_params(params)  # validate the pack at import time
            zh, en = _TITLES[anomaly]
            meter_zh = _METER_ZH[device_kind]
            meta[code] = {
                "device_kind": device_kind,
                # A title names its meter: in its place ("空置房{meter}走字") or in front ("电表反转").
                "title_zh": zh.format(meter=meter_zh) if "{meter}" in zh else f"{meter_zh}{zh}",
                "title_en": f"{_METER_EN[device_kind]}: {en}",
                "ticket_policy": _ticket_policy(device_kind, anomaly),
            }
            specs.append(RuleSpec(code, METER_METRIC, METER_RULE_KIND, params, **meta[code]))
    return tuple(specs), meta


METER_RULES: tuple[RuleSpec, ...]
METER_RULE_META: dict[str, dict[str, Any]]
METER_RULES, METER_RULE_META = _specs()


def ensure_meter_rules(session: Session, specs: tuple[RuleSpec, ...] = METER_RULES) -> int:
    """Insert the meter rules or refresh existing ones by code (enabled left alone); returns the count. Flushes."""
    return ensure_default_rules(session, specs)


__all__ = [
    "ANOMALIES_BY_DEVICE_KIND",
    "BATTERY_LOW_V",
    "FROM_STATUS",
    "METER_METRIC",
    "METER_RULES",
    "METER_RULE_KIND",
    "METER_RULE_META",
    "PERIODIC",
    "PER_READING",
    "SPIKE_MIN_STEP",
    "capacity_from_params",
    "defaults_from_params",
    "ensure_meter_rules",
    "rule_code",
    "severity_from_params",
]
