"""Default rule packs (domain-defaults §2) and the mapping between `alarm_rules` rows and rule objects.

A rule row applies to every point whose metric equals `alarm_rules.metric`. `params` holds the rule
kind's fields as plain JSON (durations in seconds), so `build_rule` turns a row back into the pure
`alarms.rules` dataclass the evaluator runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.const import Direction, RuleKind, Severity, Trend
from alarms.rules import PointRule, RateOfChangeRule, RepeatRule, StaleRule, ThresholdRule
from storage.models import AlarmRuleRow


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One default rule: a stable code (the upsert key), the point metric it watches, kind and params.

    `device_kind` / `room_kind` narrow it to points of such devices / rooms (packs attach by kind);
    `ticket_policy` says which severities open a ticket and with what category and priority.
    """

    code: str
    metric: str
    kind: RuleKind
    params: dict[str, Any]
    severity_policy: dict[str, Any] = field(default_factory=dict)
    device_kind: str | None = None
    room_kind: str | None = None
    title_zh: str = ""
    title_en: str = ""
    ticket_policy: dict[str, Any] = field(default_factory=dict)


def _threshold(
    code: str,
    metric: str,
    *,
    direction: Direction = Direction.above,
    warning: float | None = None,
    alarm: float | None = None,
    critical: float | None = None,
    clear_band: float = 0.0,
    min_duration_s: float = 0.0,
    device_kind: str | None = None,
    room_kind: str | None = None,
    title: tuple[str, str] = ("", ""),
    category: str = "other",
    min_severity: Severity = Severity.alarm,
    group: str | None = None,
) -> RuleSpec:
    params: dict[str, Any] = {"direction": str(direction), "clear_band": clear_band, "min_duration_s": min_duration_s}
    for name, level in (("warning", warning), ("alarm", alarm), ("critical", critical)):
        if level is not None:
            params[name] = level
    spec = RuleSpec(
        code,
        metric,
        RuleKind.threshold,
        params,
        device_kind=device_kind,
        room_kind=room_kind,
        title_zh=title[0],
        title_en=title[1],
        ticket_policy={"min_severity": str(min_severity), "category": category} | ({"group": group} if group else {}),
    )
    build_rule(spec.code, spec.kind, spec.params)  # validate the pack at import time
    return spec


def build_rule(code: str, kind: str, params: Mapping[str, Any]) -> PointRule:
    """Rebuild the pure rule object of an `alarm_rules` row; raises ValueError/KeyError on bad params."""
    match RuleKind(kind):
        case RuleKind.threshold:
            return ThresholdRule(
                id=code,
                direction=Direction(params.get("direction", Direction.above)),
                warning=_opt_float(params.get("warning")),
                alarm=_opt_float(params.get("alarm")),
                critical=_opt_float(params.get("critical")),
                clear_band=float(params.get("clear_band", 0.0)),
                min_duration=timedelta(seconds=float(params.get("min_duration_s", 0.0))),
            )
        case RuleKind.repeat:
            return RepeatRule(
                id=code,
                direction=Direction(params.get("direction", Direction.above)),
                level=float(params["level"]),
                count=int(params["count"]),
                severity=Severity(params["severity"]),
                clear_band=float(params.get("clear_band", 0.0)),
            )
        case RuleKind.rate_of_change:
            return RateOfChangeRule(
                id=code,
                trend=Trend(params.get("trend", Trend.either)),
                max_delta=float(params["max_delta"]),
                window=timedelta(seconds=float(params["window_s"])),
                severity=Severity(params["severity"]),
                clear_band=float(params.get("clear_band", 0.0)),
            )
        case RuleKind.stale:
            return StaleRule(
                id=code,
                expected_interval=timedelta(seconds=float(params["expected_interval_s"])),
                severity=Severity(params["severity"]),
                **({"factor": float(params["factor"])} if "factor" in params else {}),
            )
        case RuleKind.composite | RuleKind.meter | RuleKind.round | RuleKind.command | RuleKind.access:
            raise ValueError(f"{kind} rules are not evaluated per point reading")


def _opt_float(raw: object) -> float | None:
    return None if raw is None else float(raw)  # type: ignore[arg-type]


# Metric names are the sample estate's (examples/estate.yaml); device kinds narrow rules whose
# metric names are generic (tank_level_m is a domestic tank, a fire pool and a hot-water tank).
# Levels that depend on a device's setpoint (booster outlet pressure, tank levels, heat-station
# static pressure) default to the sample estate's values; tune them per device with an override
# (`steward rules set CODE --device CODE alarm=…`). Temperature levels are instantaneous (min
# duration 0): the sensors already smooth, and a dry-type controller trips on the first reading
# past 170 °C, so waiting would only delay the alarm that matters most.
#
# The rules over several points of a device (three-phase current imbalance, heat-station ΔT < 5 K for
# 2 h, jockey pump starts per hour, "duty pump failed and standby did not start", "both sump pumps
# running > 30 min", "main fire pump running without a fire signal") are in alarms/multipoint_pack.py.
# Power factor is judged on a 1-hour run below 0.90 rather than the monthly mean the tariff uses.
ELECTRICAL, HEATING, WATER, FIRE, HOT_WATER = "electrical", "heating", "water", "fire", "hot_water"


def _tr(code: str, metric: str, zh: str, en: str, category: str, **kw: Any) -> RuleSpec:
    return _threshold(code, metric, title=(zh, en), category=category, **kw)


_BELOW = Direction.below

DEFAULT_RULES: tuple[RuleSpec, ...] = (
    # --- power room (配电房), domain-defaults §2 ---------------------------------------------------
    # Dry-type transformer winding temperature, class F insulation: 130 / 155 / 170 °C, 5 K band.
    *(
        _tr(
            f"dry_transformer.winding_temp_{phase}.high",
            f"winding_temp_{phase}_c",
            f"变压器{phase.upper()}相绕组温度高",
            f"Transformer winding {phase.upper()} temperature high",
            ELECTRICAL,
            warning=130.0,
            alarm=155.0,
            critical=170.0,
            clear_band=5.0,
            group="transformer.winding_temp",  # one ticket for the transformer, whichever phases run hot
        )
        for phase in ("a", "b", "c")
    ),
    # Oil-immersed transformer top-oil temperature (ONAN, DL/T 572 practice): 80 / 85 / 95 °C.
    _tr(
        "oil_transformer.top_oil_temp.high",
        "top_oil_temp_c",
        "变压器顶层油温高",
        "Transformer top-oil temperature high",
        ELECTRICAL,
        warning=80.0,
        alarm=85.0,
        critical=95.0,
        clear_band=3.0,
    ),
    # Transformer load factor: sustained > 85 % of rating is a warning, > 100 % an alarm.
    _tr(
        "transformer.load.high",
        "load_pct",
        "变压器负载率高",
        "Transformer load high",
        ELECTRICAL,
        warning=85.0,
        alarm=100.0,
        clear_band=5.0,
        min_duration_s=900.0,
    ),
    # LV voltage, GB/T 12325: phase (220 V) +7 % / −10 %; line (380 V) ±7 % warning, ±10 % alarm.
    *(
        spec
        for phase in ("a", "b", "c")
        for spec in (
            _tr(
                f"lv.voltage_{phase}.high",
                f"voltage_{phase}_v",
                f"{phase.upper()}相电压偏高",
                f"Phase {phase.upper()} voltage high",
                ELECTRICAL,
                warning=235.4,
                clear_band=2.0,
                min_duration_s=60.0,
            ),
            _tr(
                f"lv.voltage_{phase}.low",
                f"voltage_{phase}_v",
                f"{phase.upper()}相电压偏低",
                f"Phase {phase.upper()} voltage low",
                ELECTRICAL,
                direction=_BELOW,
                warning=198.0,
                clear_band=2.0,
                min_duration_s=60.0,
            ),
        )
    ),
    *(
        spec
        for pair in ("ab", "bc", "ca")
        for spec in (
            _tr(
                f"lv.voltage_{pair}.high",
                f"voltage_{pair}_v",
                f"{pair.upper()}线电压偏高",
                f"Line voltage {pair.upper()} high",
                ELECTRICAL,
                warning=406.6,
                alarm=418.0,
                clear_band=3.0,
                min_duration_s=60.0,
            ),
            _tr(
                f"lv.voltage_{pair}.low",
                f"voltage_{pair}_v",
                f"{pair.upper()}线电压偏低",
                f"Line voltage {pair.upper()} low",
                ELECTRICAL,
                direction=_BELOW,
                warning=353.4,
                alarm=342.0,
                clear_band=3.0,
                min_duration_s=60.0,
            ),
        )
    ),
    # Power factor below 0.90: check the capacitor steps (a warning that opens a ticket).
    _tr(
        "lv.power_factor.low",
        "power_factor",
        "功率因数偏低，检查电容器投切",
        "Power factor low: check capacitor steps",
        ELECTRICAL,
        direction=_BELOW,
        warning=0.90,
        clear_band=0.01,
        min_duration_s=3600.0,
        min_severity=Severity.warning,
    ),
    # Capacitor case temperature: alarm above 60 °C.
    _tr(
        "capacitor.case_temp.high",
        "case_temp_c",
        "电容器外壳温度高",
        "Capacitor case temperature high",
        ELECTRICAL,
        alarm=60.0,
        clear_band=3.0,
    ),
    # Distribution-room temperature (GB/T 7251.1 service conditions): 35 / 40 / 45 °C.
    _tr(
        "power_room.room_temp.high",
        "room_temp_c",
        "配电房温度高",
        "Power room temperature high",
        ELECTRICAL,
        warning=35.0,
        alarm=40.0,
        critical=45.0,
        clear_band=2.0,
    ),
    # Distribution-room humidity: warning above 80 % RH.
    _tr(
        "power_room.humidity.high",
        "humidity_pct",
        "配电房湿度高",
        "Power room humidity high",
        ELECTRICAL,
        warning=80.0,
        clear_band=5.0,
    ),
    # Water ingress and smoke are state points (0/1): any activation is critical.
    _tr(
        "power_room.water_ingress",
        "water_ingress",
        "配电房水浸报警",
        "Power room water ingress",
        ELECTRICAL,
        critical=0.5,
    ),
    _tr("power_room.smoke", "smoke", "配电房烟感报警", "Power room smoke detected", FIRE, critical=0.5),
    # --- heat-exchange station (热力站) ----------------------------------------------------------
    # Secondary supply (weather-compensation curve + 5 K, the emitter's cap) is judged per station in
    # alarms/multipoint_pack.py (SUPPLY_CURVE_RULE, SUPPLY_CAP_RULE): it needs the outdoor temperature
    # and the station's emitter type, which a one-point threshold cannot see.
    # Secondary return pressure below static pressure − 0.03 MPa (0.35 − 0.03): the system is losing water.
    _tr(
        "heat_station.return_pressure.low",
        "secondary_return_pressure_mpa",
        "二次回水压力低于静压",
        "Secondary return pressure below static",
        HEATING,
        direction=_BELOW,
        alarm=0.32,
        clear_band=0.01,
        min_duration_s=60.0,
    ),
    _tr("heat_station.circ_pump_fault", "circ_pump_fault", "循环泵故障", "Circulation pump fault", HEATING, alarm=0.5),
    # --- domestic water pump room (生活水泵房) -----------------------------------------------------
    # Outlet pressure setpoint 0.45 MPa: ±0.05 for > 60 s is a warning, −0.10 an alarm.
    _tr(
        "booster.outlet_pressure.low",
        "outlet_pressure_mpa",
        "供水出口压力低",
        "Booster outlet pressure low",
        WATER,
        direction=_BELOW,
        warning=0.40,
        alarm=0.35,
        clear_band=0.01,
        min_duration_s=60.0,
    ),
    _tr(
        "booster.outlet_pressure.high",
        "outlet_pressure_mpa",
        "供水出口压力高",
        "Booster outlet pressure high",
        WATER,
        warning=0.50,
        clear_band=0.01,
        min_duration_s=60.0,
    ),
    _tr(
        "booster.fault", "fault", "生活水泵故障", "Booster pump fault", WATER, alarm=0.5, device_kind="booster_pump_set"
    ),
    # Tank extra-high (overflow) and extra-low levels (GB 51348 §18.10.1).
    _tr(
        "water_tank.level.high",
        "tank_level_m",
        "水箱液位超高（溢流）",
        "Tank level extra-high (overflow)",
        WATER,
        alarm=3.4,
        clear_band=0.05,
        device_kind="water_tank",
        room_kind="pump_room",
    ),
    _tr(
        "water_tank.level.low",
        "tank_level_m",
        "水箱液位超低",
        "Tank level extra-low",
        WATER,
        direction=_BELOW,
        alarm=0.8,
        clear_band=0.05,
        device_kind="water_tank",
        room_kind="pump_room",
    ),
    # Sump pit extra-high level switch (集水坑超高水位): the drainage pumps are not keeping up.
    _tr("sump.level.high", "sump_high_level", "集水坑超高水位", "Sump pit level extra-high", WATER, alarm=0.5),
    # --- fire pump room (消防泵房): never a stop command to a fire pump; alarms only -----------------
    _tr(
        "fire.main_pressure.low",
        "fire_main_pressure_mpa",
        "消防管网压力低于主泵启动压力",
        "Fire main pressure below fire-pump start",
        FIRE,
        direction=_BELOW,
        alarm=0.55,
        clear_band=0.01,
    ),
    _tr(
        "fire.pump_running",
        "fire_pump_running",
        # Running at all is news (a test run, a fire, a leak); whether a fire signal is present is the
        # multi-point rule's to say (fire.pump_running_without_fire_signal), where a signal point exists.
        "消防主泵运行",
        "Main fire pump running",
        FIRE,
        critical=0.5,
    ),
    _tr("fire.pump_fault", "fire_pump_fault", "消防泵故障", "Fire pump fault", FIRE, alarm=0.5),
    _tr(
        "fire.pool_level.low",
        "fire_tank_level_m",
        "消防水池液位低",
        "Fire pool level low",
        FIRE,
        direction=_BELOW,
        alarm=2.5,
        clear_band=0.05,
    ),
    _tr(
        "fire.pool_level.high",
        "fire_tank_level_m",
        "消防水池液位超高",
        "Fire pool level extra-high",
        FIRE,
        alarm=4.2,
        clear_band=0.05,
    ),
    # --- domestic hot water (热水机房), GB 50015 practice --------------------------------------------
    _tr(
        "hot_water.supply_temp.high",
        "supply_temp_c",
        "热水供水温度过高（烫伤风险）",
        "Hot-water supply too hot",
        HOT_WATER,
        warning=65.0,
        clear_band=2.0,
        device_kind="hot_water_unit",
        min_severity=Severity.warning,
    ),
    _tr(
        "hot_water.supply_temp.low",
        "supply_temp_c",
        "热水供水温度低",
        "Hot-water supply too cold",
        HOT_WATER,
        direction=_BELOW,
        warning=50.0,
        clear_band=2.0,
        min_duration_s=1800.0,
        device_kind="hot_water_unit",
        min_severity=Severity.warning,
    ),
)


# Columns a pack owns and refreshes on upgrade; `enabled` is the operator's and is left alone.
_SPEC_COLUMNS = (
    "kind",
    "metric",
    "params",
    "severity_policy",
    "device_kind",
    "room_kind",
    "title_zh",
    "title_en",
    "ticket_policy",
)


def ensure_default_rules(session: Session, specs: tuple[RuleSpec, ...] = DEFAULT_RULES) -> int:
    """Insert the default rules, or refresh kind/metric/params of existing ones by code; returns the count.

    `enabled` is left alone on existing rows, so an operator who switched a default rule off keeps it off.
    Idempotent; flushes, never commits.
    """
    if not specs:
        return 0
    stmt = insert(AlarmRuleRow).values(
        [
            {
                "code": s.code,
                "kind": str(s.kind),
                "metric": s.metric,
                "params": s.params,
                "severity_policy": s.severity_policy,
                "device_kind": s.device_kind,
                "room_kind": s.room_kind,
                "title_zh": s.title_zh,
                "title_en": s.title_en,
                "ticket_policy": s.ticket_policy,
                "enabled": True,
            }
            for s in specs
        ]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[AlarmRuleRow.code],
        set_={c: getattr(stmt.excluded, c) for c in _SPEC_COLUMNS},
        # Skip the write (and the dead tuple) when nothing changed.
        where=func.row(*(getattr(AlarmRuleRow, c) for c in _SPEC_COLUMNS)).op("IS DISTINCT FROM")(
            func.row(*(getattr(stmt.excluded, c) for c in _SPEC_COLUMNS))
        ),
    )
    session.execute(stmt)
    session.flush()
    return len(specs)


__all__ = ["DEFAULT_RULES", "RuleSpec", "build_rule", "ensure_default_rules"]
