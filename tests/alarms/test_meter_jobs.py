"""detect_periodic against PostgreSQL: days of meter readings in, night-leak / continuous-flow / stuck /
building-balance alarms out, raised once and cleared when the condition ends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from alarms.meter_jobs import detect_periodic
from alarms.meter_pack import ensure_meter_rules
from tests.alarms.test_meter_evaluator import OCCUPIED, UNITS, VACANT, MeterEstate

SH = ZoneInfo("Asia/Shanghai")
DAY0 = datetime(2026, 11, 20, 0, 0, tzinfo=SH)
STEP = timedelta(minutes=15)


@pytest.fixture(scope="module", autouse=True)
def meter_rules(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_meter_rules(session)


@pytest.fixture
def est(engine: Engine) -> MeterEstate:
    return MeterEstate(engine, "mj")


def local(day: int, hour: float = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour)


def put(engine: Engine, device: int, start: datetime, end: datetime, lph: Callable[[datetime], float]) -> None:
    """Readings every 15 min from ``start`` to ``end`` of a meter whose flow (L/h) is ``lph(local time)``."""
    ts, reg, rows = start, Decimal("100.000"), []
    while ts <= end:
        rows.append((ts, reg))
        reg += (Decimal(str(lph(ts.astimezone(SH)))) * Decimal("0.25") / 1000).quantize(Decimal("0.000001"))
        ts += STEP
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO meter_readings (ts, device_id, register) "
                "SELECT t, :d, r FROM unnest(CAST(:ts AS timestamptz[]), CAST(:reg AS numeric[])) AS v(t, r)"
            ),
            {"d": device, "ts": [r[0] for r in rows], "reg": [r[1] for r in rows]},
        )


def run(engine: Engine, now: datetime, raised: list[int] | None = None) -> int:
    # The job sees every estate of the shared test database: tests judge their own estate's alarms.
    with Session(engine) as session, session.begin():
        return detect_periodic(
            session, now, on_raised=(lambda conn, ids: raised.extend(ids)) if raised is not None else None
        )


def summary(est: MeterEstate, device: int | None = None, subject: str | None = None) -> list[tuple[str, str, str]]:
    return [(a.code, a.severity, a.state) for a in est.alarms(device, subject=subject)]


def night_only(rate: float, nights: set[int] | None = None) -> Callable[[datetime], float]:
    def f(t: datetime) -> float:
        in_night = 1 <= t.hour < 6 and (nights is None or (t - DAY0).days in nights)
        return rate if in_night else 0.0

    return f


def test_night_flow_on_three_nights_is_a_possible_leak_raised_once_then_cleared(
    engine: Engine, est: MeterEstate
) -> None:
    cw = est.device("CW", OCCUPIED)
    put(engine, cw, local(0), local(3, 12), night_only(20.0))  # nights of days 0, 1, 2 (and 3)
    raised: list[int] = []
    assert run(engine, local(3, 12), raised) >= 1
    [a] = est.alarms(cw)
    assert (a.code, a.severity, a.state) == ("meter.cold_water.night_leak", "warning", "active")
    assert a.detail["evidence"]["verdict"] == "possible leak"
    assert a.id in raised
    run(engine, local(3, 13))  # hourly re-run: same nights, same episode
    assert len(est.alarms(cw)) == 1
    # The leak is fixed: the next night is dry.
    put(engine, cw, local(3, 12.25), local(4, 12), lambda t: 0.0)
    run(engine, local(4, 12))
    assert summary(est, cw) == [("meter.cold_water.night_leak", "warning", "cleared")]
    run(engine, local(4, 13))
    assert summary(est, cw) == [("meter.cold_water.night_leak", "warning", "cleared")]


def test_a_high_night_flow_is_a_leak_at_alarm_level(engine: Engine, est: MeterEstate) -> None:
    hw = est.device("HW", OCCUPIED)
    put(engine, hw, local(0), local(1, 12), night_only(40.0, {1}))
    run(engine, local(1, 12))
    [a] = est.alarms(hw)
    assert (a.code, a.severity) == ("meter.hot_water.night_leak", "alarm")
    assert a.detail["evidence"]["verdict"] == "leak"


def test_continuous_flow_for_a_day(engine: Engine, est: MeterEstate) -> None:
    cw = est.device("CW", OCCUPIED)
    put(engine, cw, local(0, 8), local(1, 14), lambda t: 5.0)
    run(engine, local(1, 14))
    assert summary(est, cw) == [("meter.cold_water.continuous_flow", "alarm", "active")]


def test_stuck_meter_on_an_occupied_unit_only(engine: Engine, est: MeterEstate) -> None:
    e_occ, e_vac = est.device("E", OCCUPIED), est.device("E", VACANT)
    put(engine, e_occ, local(0), local(8), lambda t: 0.0)
    put(engine, e_vac, local(0), local(8), lambda t: 0.0)
    run(engine, local(8, 0.1))
    [a] = est.alarms(e_occ)
    assert (a.code, a.severity, a.state) == ("meter.electricity.stuck", "warning", "active")
    assert est.alarms(e_vac) == []
    # The register moves again: the episode ends.
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO meter_readings (ts, device_id, register) VALUES (:t, :d, 101)"),
            {"t": local(8, 0.25), "d": e_occ},
        )
    run(engine, local(8, 0.5))
    assert summary(est, e_occ) == [("meter.electricity.stuck", "warning", "cleared")]


def _balance(engine: Engine, est: MeterEstate, master_lph: float) -> None:
    start, end = local(0, -1), local(1, 1)

    def daytime(lph: float) -> Callable[[datetime], float]:
        return lambda t: lph if 6 <= t.hour < 23 else 0.0  # quiet nights: no continuous-flow alarms

    for unit in UNITS:
        put(engine, est.device("CW", unit), start, end, daytime(10.0))
    put(engine, est.master, start, end, daytime(master_lph))


def test_master_exceeding_its_sub_meters_raises_building_balance(engine: Engine, est: MeterEstate) -> None:
    _balance(engine, est, 50.0)  # 4 × 10 L/h through the flats, 50 L/h at the master: 20 % lost
    run(engine, local(1, 2))
    with engine.connect() as conn:
        building = conn.execute(
            text("SELECT id FROM buildings WHERE estate_id = :e AND code = '1'"), {"e": est.estate_id}
        ).scalar_one()
    [a] = est.alarms(subject=f"building:{building}")
    assert (a.code, a.severity, a.state, a.device_id) == (
        "meter.cold_water.building_balance",
        "alarm",
        "active",
        est.master,
    )
    assert a.detail["evidence"]["loss_pct"] == "20.0"
    run(engine, local(1, 3))
    assert len(est.alarms(subject=f"building:{building}")) == 1


def test_balanced_building_raises_nothing(engine: Engine, est: MeterEstate) -> None:
    _balance(engine, est, 42.0)  # 4.8 % loss
    run(engine, local(1, 2))
    assert est.alarms(est.master) == []


def test_estate_override_relaxes_the_balance_tolerance(engine: Engine, est: MeterEstate) -> None:
    est.override("meter.cold_water.building_balance", "estate", est.estate_id, {"balance_loss": "0.25"})
    _balance(engine, est, 50.0)
    run(engine, local(1, 2))
    assert est.alarms(est.master) == []


def test_night_leak_is_judged_on_the_latest_local_night_from_any_instant(
    engine: Engine, est: MeterEstate, instant: datetime
) -> None:
    """Flow every night 01–06 local for four nights up to the instant; the job at the instant raises the
    leak on the latest night that has ended (today's once 05:00 local has passed, else yesterday's), once;
    a dry night after the instant clears it."""
    cw = est.device("CW", OCCUPIED)
    local = instant.astimezone(SH)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    put(engine, cw, midnight - timedelta(days=4), instant, lambda t: 20.0 if 1 <= t.hour < 6 else 0.0)
    raised: list[int] = []
    assert run(engine, instant, raised) >= 1
    [a] = est.alarms(cw)
    assert (a.code, a.severity, a.state) == ("meter.cold_water.night_leak", "warning", "active")
    assert a.detail["evidence"]["verdict"] == "possible leak"
    latest_night = local.date() if local.time() >= time(5) else local.date() - timedelta(days=1)
    assert a.detail["evidence"]["nights"].split(",")[-1] == latest_night.isoformat()
    assert a.id in raised
    run(engine, instant + timedelta(hours=1))  # hourly re-run: same nights, same episode
    assert len(est.alarms(cw)) == 1
    put(engine, cw, instant + timedelta(minutes=15), instant + timedelta(days=1), lambda t: 0.0)
    run(engine, instant + timedelta(days=1))
    assert summary(est, cw) == [("meter.cold_water.night_leak", "warning", "cleared")]
