"""The multi-point rule kinds (alarms/multipoint.py) as pure functions, on the default pack's parameters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from alarms.multipoint import (
    DEFAULT_CURVES,
    Binding,
    MultiPointRule,
    MultiState,
    apply,
    bind,
    build_multipoint,
    setpoint,
    station_params,
)
from alarms.multipoint_pack import (
    BOOSTER_STANDBY_RULE,
    DT_RULE,
    FIRE_NO_SIGNAL_RULE,
    IMBALANCE_RULE,
    JOCKEY_RULE,
    MULTIPOINT_RULES,
    SUMP_RULE,
    SUPPLY_CAP_RULE,
    SUPPLY_CURVE_RULE,
)
from alarms.rules import Clear, Raise

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PACK = {s.code: s for s in MULTIPOINT_RULES}


def rule(code: str) -> MultiPointRule:
    return build_multipoint(code, PACK[code].params)


def run(
    r: MultiPointRule, b: Binding, frames: Iterable[tuple[float, Mapping[int, float]]], state: MultiState | None = None
) -> tuple[MultiState, list[tuple[str, float]]]:
    """Apply (seconds after T0, values) frames; return the state and the transitions as (name, minutes)."""
    st = state or MultiState()
    out = []
    for secs, values in frames:
        st, tr = apply(r, b, st, T0 + timedelta(seconds=secs), values)
        if isinstance(tr, Raise | Clear):
            out.append((type(tr).__name__, secs / 60))
    return st, out


def test_every_pack_rule_names_its_room_and_device_kind() -> None:
    assert {IMBALANCE_RULE, DT_RULE, JOCKEY_RULE, BOOSTER_STANDBY_RULE, SUMP_RULE, FIRE_NO_SIGNAL_RULE} <= set(PACK)
    for spec in MULTIPOINT_RULES:
        assert spec.kind == "composite"
        assert spec.room_kind
        assert spec.device_kind
        assert spec.title_zh
        assert spec.title_en


def test_imbalance_over_25_percent_for_5_minutes_raises_and_clears_below_20() -> None:
    r = rule(IMBALANCE_RULE)
    b = bind(r, {"current_a_a": 1, "current_b_a": 2, "current_c_a": 3})
    assert b.configured
    assert b.anchor == 1
    frames = [(60 * m, {1: 640.0, 2: 610.0, 3: 900.0 if 10 <= m < 30 else 675.0}) for m in range(40)]
    st, got = run(r, b, frames)
    # (900 − 610) / 900 = 32 % from minute 10, held 5 min → raised at 15; back to 10 % at 30 → cleared.
    assert got == [("Raise", 15.0), ("Clear", 30.0)]
    assert not st.active


def test_imbalance_of_an_idle_feeder_is_not_judged() -> None:
    r = rule(IMBALANCE_RULE)
    b = bind(r, {"current_a_a": 1, "current_b_a": 2, "current_c_a": 3})
    _, got = run(r, b, [(60 * m, {1: 0.0, 2: 0.0, 3: 6.0}) for m in range(20)])
    assert got == []


def test_low_dt_needs_two_hours_and_clears_with_a_band() -> None:
    r = rule(DT_RULE)
    b = bind(r, {"secondary_supply_temp_c": 10, "secondary_return_temp_c": 11})

    def dt(m: int) -> float:
        return 8.0 if m < 10 else 3.0 if m < 200 else 5.5 if m < 210 else 7.0

    _, got = run(r, b, [(60 * m, {10: 45.0, 11: 45.0 - dt(m)}) for m in range(0, 240, 5)])
    # Below 5 K from minute 10; raised at 130 (2 h); 5.5 K is inside the 1 K band, 7 K clears.
    assert got == [("Raise", 130.0), ("Clear", 210.0)]


def test_low_dt_run_broken_before_two_hours_raises_nothing() -> None:
    r = rule(DT_RULE)
    b = bind(r, {"secondary_supply_temp_c": 10, "secondary_return_temp_c": 11})
    frames = [(60 * m, {10: 45.0, 11: 41.0 if m != 100 else 37.0}) for m in range(0, 200, 5)]
    _, got = run(r, b, frames)
    assert got == []


def test_low_dt_grazing_the_level_keeps_the_two_hour_clock_running() -> None:
    # A dying ΔT at 4.5 ± 0.5 K: readings of 5.0–5.5 K are inside the clear band, so the 2 h keep counting
    # from minute 10 (the e2e run from 03:00 local, when the night-time supply lifts ΔT by about 1 K).
    r = rule(DT_RULE)
    b = bind(r, {"secondary_supply_temp_c": 10, "secondary_return_temp_c": 11})

    def dt(m: int) -> float:
        return 8.0 if m < 10 else (5.4 if m % 20 == 0 else 4.4)

    _, got = run(r, b, [(60 * m, {10: 48.0, 11: 48.0 - dt(m)}) for m in range(0, 180, 5)])
    assert got == [("Raise", 130.0)]


def test_jockey_pump_seventh_start_in_an_hour_raises() -> None:
    r = rule(JOCKEY_RULE)
    b = bind(r, {"jockey_pump_running": 5})
    # 30 s readings; on for one reading every 6 minutes (10 starts an hour) for the first 90 minutes.
    frames = [(30 * k, {5: 1.0 if k % 12 == 1 and k < 180 else 0.0}) for k in range(400)]
    _st, got = run(r, b, frames)
    # Starts at 0.5, 6.5, …, 84.5 min: the 7th at 36.5 raises. The last seven are 48.5 … 84.5, so the
    # hour's count falls back to 6 once 48.5 leaves the window, at 108.5.
    assert got == [("Raise", 36.5), ("Clear", 108.5)]


def test_jockey_pump_normal_cycling_raises_nothing() -> None:
    r = rule(JOCKEY_RULE)
    b = bind(r, {"jockey_pump_running": 5})
    frames = [(30 * k, {5: 1.0 if k % 40 == 1 else 0.0}) for k in range(600)]  # 3 starts an hour
    assert run(r, b, frames)[1] == []


def test_duty_pump_failed_and_standby_not_started() -> None:
    r = rule(BOOSTER_STANDBY_RULE)
    pts = {"pump_1_running": 1, "pump_2_running": 2, "pump_3_running": 3, "fault": 4}
    b = bind(r, pts)
    assert b.roles == {"fault": (4,), "running": (1, 2, 3)}
    # A healthy changeover: fault, then pump 2 within 20 s → nothing. A stuck standby: > 60 s → alarm.
    healthy = [(0, {1: 1, 2: 0, 3: 0, 4: 0}), (10, {1: 0, 2: 0, 3: 0, 4: 1}), (30, {1: 0, 2: 1, 3: 0, 4: 1})]
    assert run(r, b, [(t, {k: float(v) for k, v in vals.items()}) for t, vals in healthy])[1] == []
    stuck = [(10 * k, {1: 0.0, 2: 0.0, 3: 0.0, 4: 1.0}) for k in range(10)]
    assert run(r, b, stuck)[1] == [("Raise", 1.0)]


def test_both_sump_pumps_for_30_minutes() -> None:
    r = rule(SUMP_RULE)
    b = bind(r, {"sump_pump_1_running": 1, "sump_pump_2_running": 2, "sump_high_level": 3})
    assert b.roles == {"running": (1, 2)}
    frames = [(60 * m, {1: 1.0, 2: 1.0 if 5 <= m < 50 else 0.0, 3: 0.0}) for m in range(60)]
    assert run(r, b, frames)[1] == [("Raise", 35.0), ("Clear", 50.0)]


def test_fire_pump_without_a_signal_point_is_not_configured() -> None:
    r = rule(FIRE_NO_SIGNAL_RULE)
    b = bind(r, {"fire_pump_running": 1, "jockey_pump_running": 2})
    assert not b.configured
    assert b.missing == ("signal",)


def test_fire_pump_running_without_the_rooms_fire_signal_is_critical() -> None:
    r = rule(FIRE_NO_SIGNAL_RULE)
    b = bind(r, {"fire_pump_running": 1}, {"fire_alarm_signal": [9]})  # the panel is another device of the room
    assert b.configured
    assert b.roles["signal"] == (9,)
    st, got = run(r, b, [(0, {1: 0.0, 9: 0.0}), (30, {1: 1.0, 9: 1.0}), (60, {1: 0.0, 9: 1.0})])
    assert got == []  # a fire: the pump is meant to run
    _, got = run(r, b, [(120, {1: 1.0, 9: 0.0}), (150, {1: 0.0, 9: 0.0})], st)
    assert got == [("Raise", 2.0), ("Clear", 2.5)]


def test_late_duplicate_and_non_finite_readings_change_nothing() -> None:
    r = rule(SUMP_RULE)
    b = bind(r, {"sump_pump_1_running": 1, "sump_pump_2_running": 2})
    st, _ = run(r, b, [(0, {1: 1.0, 2: 1.0}), (600, {1: 1.0, 2: 1.0})])
    for secs, values in [(600, {1: 0.0, 2: 0.0}), (300, {1: 0.0, 2: 0.0}), (900, {1: float("nan")})]:
        again, tr = apply(r, b, st, T0 + timedelta(seconds=secs), values)
        assert (again, tr) == (st, None)


def test_state_round_trips_through_json() -> None:
    r = rule(JOCKEY_RULE)
    b = bind(r, {"jockey_pump_running": 5})
    st, _ = run(r, b, [(30 * k, {5: float(k % 2)}) for k in range(20)])
    assert st.active
    assert st.starts
    assert MultiState.from_json(st.to_json()) == st


@pytest.mark.parametrize(
    "params",
    [
        {"check": "imbalance", "roles": {"a": "x"}, "severity": "warning"},
        {"check": "nope", "roles": {}, "severity": "warning"},
        {"check": "starts", "roles": {"pump": "("}, "severity": "warning"},
        {"check": "starts", "roles": {"pump": "p"}, "severity": "warning", "level": -1},
    ],
)
def test_bad_params_are_refused(params: dict[str, object]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        build_multipoint("x", params)


# --- heat-station secondary supply: weather-compensation curve and emitter cap (issue 14 part 3) -----------


def station_rule(code: str, attrs: Mapping[str, object]) -> MultiPointRule:
    return build_multipoint(code, station_params(PACK[code].params, attrs))


@pytest.mark.parametrize(
    ("outdoor", "expected"),
    [(-20.0, 45.0), (-10.0, 45.0), (-5.0, 42.5), (0.0, 40.0), (5.0, 36.0), (10.0, 32.0), (18.0, 32.0)],
)
def test_floor_heating_curve_interpolates_linearly_and_is_flat_beyond_its_ends(outdoor: float, expected: float) -> None:
    assert setpoint(DEFAULT_CURVES["floor_heating"], outdoor) == pytest.approx(expected)


def test_emitter_sets_the_cap_and_the_default_curve() -> None:
    assert station_rule(SUPPLY_CAP_RULE, {"emitter": "radiators"}).level == 85.0
    assert station_rule(SUPPLY_CAP_RULE, {"system": "floor_heating"}).level == 60.0
    # Unnamed emitter: floor heating's lower cap (a wrong guess raises early, never late).
    assert station_rule(SUPPLY_CAP_RULE, {}).level == 60.0
    assert station_rule(SUPPLY_CURVE_RULE, {"emitter": "radiators"}).curve == DEFAULT_CURVES["radiators"]
    own = station_rule(SUPPLY_CURVE_RULE, {"emitter": "radiators", "supply_curve": [[10, 50], [-15, 80]]})
    assert own.curve == ((-15.0, 80.0), (10.0, 50.0))
    # An operator's override (params) beats the estate model; a fixed level beats the emitter.
    over = build_multipoint(
        SUPPLY_CURVE_RULE, station_params({**PACK[SUPPLY_CURVE_RULE].params, "curve": [[0, 30], [10, 20]]}, {})
    )
    assert over.curve == ((0.0, 30.0), (10.0, 20.0))
    assert station_rule(SUPPLY_CAP_RULE, {"emitter": "radiators"}).level == 85.0
    fixed = {**PACK[SUPPLY_CAP_RULE].params, "level": 70.0}
    assert build_multipoint(SUPPLY_CAP_RULE, station_params(fixed, {"emitter": "radiators"})).level == 70.0


def test_a_cold_day_raises_the_setpoint_and_overheating_warns_once() -> None:
    r = station_rule(SUPPLY_CURVE_RULE, {"emitter": "floor_heating"})
    b = bind(r, {"secondary_supply_temp_c": 1}, None, {"outdoor_temp_c": [2]})
    assert b.configured
    # −10 °C: setpoint 45, warning above 50. 49 °C on the cold day is fine; at +10 °C (setpoint 32,
    # warning above 37) the same 49 °C held 5 min is a warning, raised once; back to 33 °C clears it.
    frames = [(0, {1: 49.0, 2: -10.0}), (600, {1: 49.0, 2: -10.0})]
    frames += [(1200 + i * 60, {1: 49.0, 2: 10.0}) for i in range(10)]
    frames += [(1800, {1: 33.0, 2: 10.0})]
    _, got = run(r, b, frames)
    assert got == [("Raise", 25.0), ("Clear", 30.0)]


def test_curve_rule_without_an_outdoor_point_is_not_configured() -> None:
    r = station_rule(SUPPLY_CURVE_RULE, {})
    assert bind(r, {"secondary_supply_temp_c": 1}).missing == ("outdoor",)
    # The room's points do not count for the outdoor role; the estate's do.
    assert not bind(r, {"secondary_supply_temp_c": 1}, {"outdoor_temp_c": [2]}).configured
    assert bind(r, {"secondary_supply_temp_c": 1}, None, {"outdoor_temp": [2]}).configured


def test_emitter_cap_alarms_above_85_on_radiators_and_above_60_on_floor_heating() -> None:
    for attrs, ok, bad in (({"emitter": "radiators"}, 84.0, 86.0), ({"emitter": "floor_heating"}, 59.0, 61.0)):
        r = station_rule(SUPPLY_CAP_RULE, attrs)
        b = bind(r, {"secondary_supply_temp_c": 1})
        _, got = run(r, b, [(i * 60, {1: ok}) for i in range(10)])
        assert got == []
        _, got = run(r, b, [(i * 60, {1: bad}) for i in range(10)])
        assert got == [("Raise", 5.0)]
        assert r.severity == "alarm"


@pytest.mark.parametrize(
    "curve", [[[0, 40]], [[0, 40], [0, 45]], "0,40", [[0, 40, 1], [1, 2]], [[0, float("nan")], [1, 2]]]
)
def test_bad_curves_are_refused(curve: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        build_multipoint(
            "x",
            {"check": "above_curve", "roles": {"supply": "s", "outdoor": "o"}, "severity": "warning", "curve": curve},
        )
