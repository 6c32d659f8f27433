"""Default multi-point rules (domain-defaults §2), judged by `alarms.multipoint_evaluator` in the ingest batch.

Rows have ``kind='composite'``; ``metric`` is the rule's first point (for listings); ``params`` carry
the check, its roles (metric patterns on the device; ``signal`` may also be another device of the same
room) and levels, as `alarms.multipoint.build_multipoint` reads them. Each rule is narrowed to the
device and room kinds that carry such points, which is how it is "installed for the room kinds".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from alarms.const import RuleKind, Severity
from alarms.multipoint import Check, build_multipoint, station_params
from alarms.packs import ELECTRICAL, FIRE, HEATING, WATER, RuleSpec, ensure_default_rules

IMBALANCE_RULE = "lv.current_imbalance"
DT_RULE = "heat_station.secondary_dt.low"
JOCKEY_RULE = "fire.jockey_pump.starts"
BOOSTER_STANDBY_RULE = "booster.standby_failed"
CIRC_STANDBY_RULE = "heat_station.circ_standby_failed"
SUMP_RULE = "sump.both_pumps_running"
FIRE_NO_SIGNAL_RULE = "fire.pump_running_without_fire_signal"
# The fire-alarm signal point: a state point named so on the fire-pump controller or any device of its room
# (e.g. the fire-alarm panel's "fire alarm" output wired to the pump room). Without one the rule is 未配置.
FIRE_SIGNAL_PATTERN = r"fire_alarm(_signal)?"
# The secondary supply against the station's weather-compensation curve (warning at setpoint + 5 K) and
# against its emitter's cap (alarm: radiators 85 °C, floor heating 60 °C), domain-defaults §2. The cap
# keeps the old threshold rule's code, so an upgraded database turns that row into this rule.
SUPPLY_CURVE_RULE = "heat_station.secondary_supply.curve"
SUPPLY_CAP_RULE = "heat_station.secondary_supply.high"
# The outdoor temperature: a point so named on any device of the estate (a weather station, or the
# sensor wired to a station's controller). Without one the curve rule is 未配置 and only the cap judges.
OUTDOOR_PATTERN = r"outdoor_temp(_c)?"


def _mp(
    code: str,
    check: Check,
    roles: dict[str, str],
    severity: Severity,
    title: tuple[str, str],
    category: str,
    *,
    device_kind: str,
    room_kind: str,
    **params: Any,
) -> RuleSpec:
    full = {"check": str(check), "roles": roles, "severity": str(severity), **params}
    build_multipoint(code, station_params(full, {}))  # validate the pack at import time
    return RuleSpec(
        code,
        sorted(roles.values())[0][:64],
        RuleKind.composite,
        full,
        device_kind=device_kind,
        room_kind=room_kind,
        title_zh=title[0],
        title_en=title[1],
        # Every one of these is someone's job on site, warnings included (as the power-factor warning).
        ticket_policy={"min_severity": str(severity), "category": category},
    )


MULTIPOINT_RULES: tuple[RuleSpec, ...] = (
    # Three-phase current imbalance > 25 % (practice), (Imax − Imin) / Imax, held 5 min, clears below 20 %.
    _mp(
        IMBALANCE_RULE,
        Check.imbalance,
        {"a": "current_a_a", "b": "current_b_a", "c": "current_c_a"},
        Severity.warning,
        ("三相电流不平衡度超过25%", "Three-phase current imbalance above 25 %"),
        ELECTRICAL,
        device_kind="lv_incomer",
        room_kind="power_room",
        level=25.0,
        clear_band=5.0,
        min_duration_s=300.0,
        min_current=10.0,
    ),
    # Heat-station secondary ΔT below 5 K for 2 h (derived): flow too high or the exchanger fouled.
    _mp(
        DT_RULE,
        Check.low_difference,
        {"hi": "secondary_supply_temp_c", "lo": "secondary_return_temp_c"},
        Severity.warning,
        ("二次供回水温差低于5K持续2小时", "Secondary supply/return ΔT below 5 K for 2 h"),
        HEATING,
        device_kind="plate_heat_exchanger",
        room_kind="heat_station",
        level=5.0,
        clear_band=1.0,
        min_duration_s=7200.0,
    ),
    # Secondary supply above the weather-compensation setpoint + 5 K for 5 min: the controller is not
    # following the curve (a stuck valve, a manual setting left after a cold spell).
    _mp(
        SUPPLY_CURVE_RULE,
        Check.above_curve,
        {"supply": "secondary_supply_temp_c", "outdoor": OUTDOOR_PATTERN},
        Severity.warning,
        ("二次供水温度高于气候补偿设定值5K", "Secondary supply more than 5 K above the weather-compensated setpoint"),
        HEATING,
        device_kind="plate_heat_exchanger",
        room_kind="heat_station",
        level=5.0,
        clear_band=2.0,
        min_duration_s=300.0,
    ),
    # Secondary supply above the emitter's cap (level from the station's emitter unless overridden).
    _mp(
        SUPPLY_CAP_RULE,
        Check.above_cap,
        {"supply": "secondary_supply_temp_c"},
        Severity.alarm,
        (
            "二次供水温度超过末端上限（散热器85°C / 地暖60°C）",
            "Secondary supply above the emitter limit (radiators 85 °C / floor heating 60 °C)",
        ),
        HEATING,
        device_kind="plate_heat_exchanger",
        room_kind="heat_station",
        clear_band=2.0,
        min_duration_s=300.0,
    ),
    # Jockey pump > 6 starts an hour (GB 50974 practice): the fire main is leaking.
    _mp(
        JOCKEY_RULE,
        Check.starts,
        {"pump": "jockey_pump_running"},
        Severity.warning,
        ("稳压泵启动频繁（每小时超过6次，疑似管网泄漏）", "Jockey pump starts more than 6 an hour (fire main leak?)"),
        FIRE,
        device_kind="fire_pump_controller",
        room_kind="fire_pump_room",
        level=6.0,
        window_s=3600.0,
    ),
    # Duty pump failed and the standby did not start (GB 51348 §18.10.1): a fault and no pump running
    # for a minute (a healthy changeover takes seconds).
    _mp(
        BOOSTER_STANDBY_RULE,
        Check.standby_failed,
        {"fault": r"fault|pump_\d+_fault", "running": r"pump_\d+_running"},
        Severity.alarm,
        ("主用泵故障，备用泵未启动", "Duty pump failed and the standby did not start"),
        WATER,
        device_kind="booster_pump_set",
        room_kind="pump_room",
        min_duration_s=60.0,
    ),
    _mp(
        CIRC_STANDBY_RULE,
        Check.standby_failed,
        {"fault": r"circ_pump(_\d+)?_fault", "running": r"circ_pump_\d+_running"},
        Severity.alarm,
        ("循环泵主泵故障，备用泵未启动", "Duty circulation pump failed and the standby did not start"),
        HEATING,
        device_kind="circulation_pumps",
        room_kind="heat_station",
        min_duration_s=60.0,
    ),
    # Sump pit: both pumps running > 30 min (practice): inflow beyond one pump, a flood or a stuck float.
    _mp(
        SUMP_RULE,
        Check.all_running,
        {"running": r"sump_pump_\d+_running"},
        Severity.alarm,
        ("集水坑两台排污泵同时运行超过30分钟", "Both sump pumps running for more than 30 min"),
        WATER,
        device_kind="sump_pit",
        room_kind="pump_room",
        min_duration_s=1800.0,
    ),
    # Main fire pump running without a fire signal (GB 50974 practice): critical; never a stop command.
    _mp(
        FIRE_NO_SIGNAL_RULE,
        Check.without_signal,
        {"running": "fire_pump_running", "signal": FIRE_SIGNAL_PATTERN},
        Severity.critical,
        ("消防主泵运行且无火警信号", "Main fire pump running without a fire signal"),
        FIRE,
        device_kind="fire_pump_controller",
        room_kind="fire_pump_room",
    ),
)


def ensure_multipoint_rules(session: Session, specs: tuple[RuleSpec, ...] = MULTIPOINT_RULES) -> int:
    """Insert the multi-point rules or refresh existing ones by code (enabled left alone); returns the count."""
    return ensure_default_rules(session, specs)


__all__ = [
    "BOOSTER_STANDBY_RULE",
    "CIRC_STANDBY_RULE",
    "DT_RULE",
    "FIRE_NO_SIGNAL_RULE",
    "FIRE_SIGNAL_PATTERN",
    "IMBALANCE_RULE",
    "JOCKEY_RULE",
    "MULTIPOINT_RULES",
    "OUTDOOR_PATTERN",
    "SUMP_RULE",
    "SUPPLY_CAP_RULE",
    "SUPPLY_CURVE_RULE",
    "ensure_multipoint_rules",
]
