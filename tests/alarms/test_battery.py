"""Low battery on battery-powered meters (alarms/battery.py): the pure rule, then the hook with its database
(status frames through the real ingest writer, one transaction per batch like the Pipeline), and a property
test: random voltages with duplicates, redeliveries and late frames cut into random batches raise and clear
exactly what the pure rule replayed over the same batches does, never two open episodes of one meter."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from alarms.battery import BatteryEvaluator, BatteryLevels, transitions
from alarms.meter_pack import BATTERY_LOW_V, METER_RULE_META, ensure_meter_rules, rule_code
from core import clock
from ingest.decode import DecodedBatch
from ingest.writer import write_batch
from tests.alarms.test_meter_evaluator import OCCUPIED, MeterEstate, at
from tickets.from_alarms import open_for_alarms

WATER = BatteryLevels(3.3, 3.5)


def h(hours: float) -> datetime:
    return at(hours * 60)


# --- the pure rule -------------------------------------------------------------------------------------------


def test_a_sagging_cell_raises_once_and_a_new_cell_clears() -> None:
    volts = [3.61, 3.6, 3.45, 3.31, 3.29, 3.25, 3.4, 3.2, 3.62, 3.61]
    got = transitions([(h(i), v) for i, v in enumerate(volts)], WATER, open_=False, mark=None)
    # 3.4 V after 3.25 (a passivated cell recovering a little) is below the 3.5 V clear level: same episode.
    assert [(t.kind, t.at, t.volts) for t in got] == [("raise", h(4), 3.29), ("clear", h(8), 3.62)]


def test_readings_at_or_before_the_watermark_and_non_finite_ones_change_nothing() -> None:
    # Cleared at hour 8 (new cell): a low reading from hour 6 arriving late must not reopen anything.
    assert transitions([(h(6), 3.1), (h(8), 3.1)], WATER, open_=False, mark=h(8)) == []
    assert transitions([(h(9), math.nan), (h(10), math.inf)], WATER, open_=False, mark=None) == []
    # Open episode: more low readings add nothing.
    assert transitions([(h(9), 3.0), (h(10), 2.9)], WATER, open_=True, mark=h(4)) == []


def test_first_arrival_of_a_timestamp_wins_and_order_is_device_time() -> None:
    got = transitions([(h(2), 3.6), (h(1), 3.2), (h(1), 3.6)], WATER, open_=False, mark=None)
    assert [(t.kind, t.at) for t in got] == [("raise", h(1)), ("clear", h(2))]


def test_thresholds_per_meter_kind_and_the_ticket() -> None:
    assert BATTERY_LOW_V == {"electricity_meter": "3.0", "cold_water_meter": "3.3", "hot_water_meter": "3.3"}
    assert BatteryLevels.from_params({"battery_low_v": "3.3", "battery_clear_band_v": "0.2"}) == BatteryLevels(
        3.3, pytest.approx(3.5)
    )
    policy = METER_RULE_META[rule_code("cold_water_meter", "low_battery")]["ticket_policy"]
    assert (policy["category"], policy["task"], policy["min_severity"]) == (
        "meter",
        "replace the meter battery",
        "warning",
    )
    for bad in (
        {"battery_low_v": "-1"},
        {"battery_low_v": "nan"},
        {},
        {"battery_low_v": "3", "battery_clear_band_v": "-0.1"},
    ):
        with pytest.raises((ArithmeticError, KeyError, ValueError)):
            BatteryLevels.from_params(bad)


# --- with the database ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def meter_rules(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_meter_rules(session)


def feed(engine: Engine, ev: BatteryEvaluator, rows: list[tuple[int, datetime, float | None]]) -> None:
    b = DecodedBatch()
    for device, ts, volts in rows:
        b.statuses.append((device, ts, True, volts))
        b.messages += 1
    with engine.begin() as conn:
        write_batch(conn, b, now=clock.now(), gaps=[], last_seq={}, keep_rollup=False)
        ev(conn, b, None)


def alarms(est: MeterEstate, device: int) -> list[Any]:
    with est.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT r.code, a.severity, a.state, a.raised_at, a.cleared_at, a.ticket_id, a.detail, t.category "
                    "FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id LEFT JOIN tickets t ON t.id = a.ticket_id "
                    "WHERE a.device_id = :d ORDER BY a.id"
                ),
                {"d": device},
            )
        )


def test_dying_battery_raises_one_alarm_and_ticket_per_episode(engine: Engine) -> None:
    est = MeterEstate(engine, "bat")
    cw, e = est.device("CW", OCCUPIED), est.device("E", OCCUPIED)
    ev = BatteryEvaluator(on_raised=open_for_alarms)
    # Mains-powered meters report no voltage: nothing to judge.
    feed(engine, ev, [(e, h(0), None), (cw, h(0), 3.6)])
    sag = [(cw, h(i), round(3.6 - 0.1 * i, 2)) for i in range(1, 6)]  # 3.5 … 3.1 V
    feed(engine, ev, sag)
    feed(engine, ev, sag)  # redelivered
    feed(engine, ev, [(cw, h(2.5), 3.0)])  # late
    [a] = alarms(est, cw)
    assert (a.code, a.severity, a.state, a.raised_at) == ("meter.cold_water.low_battery", "warning", "active", h(4))
    assert a.detail["evidence"]["battery_v"] == "3.20"
    assert a.ticket_id is not None
    assert a.category == "meter"
    # The electricity meter's 3.0 V limit: 3.1 V on its clock battery is fine.
    feed(engine, ev, [(e, h(5), 3.1)])
    assert alarms(est, e) == []
    # A new cell clears the episode; a late low frame from before the change does not reopen it.
    feed(engine, ev, [(cw, h(7), 3.62)])
    feed(engine, ev, [(cw, h(6), 3.05)])
    [a] = alarms(est, cw)
    assert (a.state, a.cleared_at) == ("cleared", h(7))


def test_a_device_override_tunes_the_level(engine: Engine) -> None:
    est = MeterEstate(engine, "bat")
    hw = est.device("HW", OCCUPIED)
    est.override("meter.hot_water.low_battery", "device", hw, {"battery_low_v": "3.5"})
    ev = BatteryEvaluator()
    feed(engine, ev, [(hw, h(1), 3.45)])
    [a] = alarms(est, hw)
    assert a.detail["evidence"]["low_v"] == "3.50"


VOLTS = st.sampled_from([3.6, 3.55, 3.45, 3.35, 3.25, 3.1, math.nan])


@st.composite
def batches(draw: st.DrawFn) -> list[list[tuple[datetime, float]]]:
    n = draw(st.integers(1, 25))
    arrivals: list[tuple[datetime, float]] = []
    ts = h(0)
    for _ in range(n):
        ts += timedelta(minutes=draw(st.integers(1, 120)))
        arrivals.append((ts, draw(VOLTS)))
        for kind in draw(st.lists(st.sampled_from(["duplicate", "redelivery", "late"]), max_size=2)):
            if kind == "duplicate":
                arrivals.append((draw(st.sampled_from(arrivals))[0], draw(VOLTS)))
            elif kind == "redelivery":
                arrivals.append(draw(st.sampled_from(arrivals)))
            else:
                arrivals.append((ts - timedelta(minutes=draw(st.integers(1, 300))), draw(VOLTS)))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(arrivals) - 1), max_size=5)))) if len(arrivals) > 1 else []
    return [arrivals[a:b] for a, b in itertools.pairwise([0, *cuts, len(arrivals)])]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(case=batches())
def test_exactly_once_under_duplicates_redeliveries_and_late_frames(
    engine: Engine, case: list[list[tuple[datetime, float]]]
) -> None:
    prop_est = MeterEstate(engine, "batp")  # a fresh meter per example: nothing shared is deleted
    cw = prop_est.device("CW", OCCUPIED)
    ev = BatteryEvaluator(on_raised=open_for_alarms)
    # The reference: the pure rule over the same batches, with the watermark it leaves behind.
    expected: list[list[datetime | None]] = []
    open_, mark = False, None
    for batch in case:
        feed(engine, ev, [(cw, ts, v) for ts, v in batch])
        for t in transitions(batch, WATER, open_=open_, mark=mark):
            if t.kind == "raise":
                expected.append([t.at, None])
            else:
                expected[-1][1] = t.at
            open_, mark = t.kind == "raise", t.at
        got = alarms(prop_est, cw)
        assert sum(a.state != "cleared" for a in got) <= 1
        assert all(a.ticket_id is not None for a in got if a.state != "cleared")
    assert [[a.raised_at, a.cleared_at] for a in alarms(prop_est, cw)] == expected
