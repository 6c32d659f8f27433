"""Issue 15 §4: the energy report's figures against the registers, worked out independently in
tests/support/energy_world.py (a rollover, a replaced meter, a multiplier, master meters, vacant units)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core import clock
from facility import energy_queries, energy_rollup
from facility.energy_queries import windows
from storage.models import Estate, MeterCharge
from tests.support import energy_world as ew
from tests.support.clock import pinned

OCT = (date(2026, 10, 1), date(2026, 11, 1))
SEP = (date(2026, 9, 1), date(2026, 10, 1))
OCT_2025 = (date(2025, 10, 1), date(2025, 11, 1))


@pytest.fixture
def world(session: Session) -> Iterator[ew.EnergyWorld]:
    with pinned(ew.NOW):
        w = ew.seed(session, "energy-t")
        refresh_all(session)
        yield w


def refresh_all(session: Session) -> energy_rollup.Refresh:
    total = energy_rollup.Refresh()
    for _ in range(20):
        r = energy_rollup.refresh(session, clock.now())
        total.readings += r.readings
        total.confirmed += r.confirmed
        if not r.more:
            return total
    raise AssertionError("the rollup never caught up")


def assert_sums_follow_the_day_rows(session: Session, estate_id: int) -> None:
    """The rollup's two sums equal what their day rows add up to (after any run, confirmation included)."""
    months = session.execute(
        text(
            "SELECT device_id, date_trunc('month', day)::date, sum(volume) FROM energy_meter_days "
            "WHERE estate_id = :e GROUP BY 1, 2 HAVING sum(volume) <> 0 ORDER BY 1, 2"
        ),
        {"e": estate_id},
    ).all()
    kept = session.execute(
        text(
            "SELECT device_id, month, volume FROM energy_meter_months WHERE estate_id = :e AND volume <> 0 "
            "ORDER BY 1, 2"
        ),
        {"e": estate_id},
    ).all()
    assert [tuple(r) for r in kept] == [tuple(r) for r in months]
    days = session.execute(
        text(
            "SELECT day, sum(volume), sum(cardinality(held_from)) FROM energy_meter_days "
            "WHERE estate_id = :e GROUP BY 1 ORDER BY 1"
        ),
        {"e": estate_id},
    ).all()
    per_building = session.execute(
        text("SELECT day, sum(volume), sum(held) FROM energy_building_days WHERE estate_id = :e GROUP BY 1 ORDER BY 1"),
        {"e": estate_id},
    ).all()
    assert [tuple(r) for r in per_building] == [tuple(r) for r in days]


def report(session: Session, w: ew.EnergyWorld, month: date = ew.MONTH) -> energy_queries.EnergyReport:
    estate = session.get(Estate, w.estate_id)
    assert estate is not None
    return energy_queries.report(session, estate, month, clock.now())


def test_the_sums_follow_the_day_rows(session: Session, world: ew.EnergyWorld) -> None:
    assert_sums_follow_the_day_rows(session, world.estate_id)


def test_the_world_has_a_rollover_and_a_replacement(world: ew.EnergyWorld) -> None:
    """The scenario is what the acceptance asks for: both happen inside October 2026."""
    e101 = world.meter("E-1-1-101")
    falls = [t2 for (_, r1), (t2, r2) in zip(e101.readings, e101.readings[1:], strict=False) if r2 < r1]
    assert len(falls) == 1
    assert OCT[0] <= falls[0].astimezone(ew.SH).date() < OCT[1]
    hw = world.meter("HW-1-1-101")
    assert hw.replacement is not None
    assert OCT[0] <= hw.replacement[0].astimezone(ew.SH).date() < OCT[1]


@pytest.mark.parametrize("kind", ew.KINDS)
def test_building_totals_equal_the_sum_of_their_meters_from_the_registers(
    session: Session, world: ew.EnergyWorld, kind: str
) -> None:
    r = report(session, world)
    for code, building_id in world.building_ids.items():
        u = r.of(kind, building_id)
        if kind == "cold_water_meter" and code == "2":
            assert u is None  # building 2 has no cold-water meters
            continue
        assert u is not None
        assert u.units == ew.total(world.meters, kind, code, *OCT, master=False), (kind, code)
        assert u.previous == ew.total(world.meters, kind, code, *SEP, master=False)
        assert u.last_year == ew.total(world.meters, kind, code, *OCT_2025, master=False)
    estate = r.of(kind, None)
    assert estate is not None
    assert estate.units == ew.total(world.meters, kind, None, *OCT, master=False)
    assert estate.held == 0


def test_each_day_equals_the_registers(session: Session, world: ew.EnergyWorld) -> None:
    r = report(session, world)
    assert r.days()[0] == OCT[0]
    assert r.days()[-1] == OCT[1] - timedelta(days=1)
    got = {(d.day, d.kind, d.building_id): d.units for d in r.daily}
    for kind in ew.KINDS:
        for code, building_id in [*world.building_ids.items(), (None, None)]:
            for day in r.days():
                want = ew.day_total(world.meters, kind, code, day)
                assert got.get((day, kind, building_id), Decimal(0)) == want, (kind, code, day)


def test_hot_water_agrees_with_what_billing_charged(session: Session, world: ew.EnergyWorld) -> None:
    """The same consumption logic: billing's charges of October (by the month their interval ends in)."""
    r = report(session, world)
    hw = [world.meter("HW-1-1-101").device_id, world.meter("HW-2-1-101").device_id]
    charged = session.scalar(
        select(func.sum(MeterCharge.volume_m3)).where(MeterCharge.device_id.in_(hw), MeterCharge.month == ew.MONTH)
    )
    estate = r.of("hot_water_meter", None)
    assert estate is not None
    assert estate.units == charged


def test_loss_rate_of_a_building_with_master_meters(session: Session, world: ew.EnergyWorld) -> None:
    r = report(session, world)
    b1 = world.building_ids["1"]
    for kind in ("electricity_meter", "cold_water_meter"):
        u = r.of(kind, b1)
        assert u is not None
        master = ew.total(world.meters, kind, "1", *OCT, master=True)
        units = ew.total(world.meters, kind, "1", *OCT, master=False)
        assert u.master == master
        assert u.loss == master - units
        assert u.loss_rate == ((master - units) * 100 / master).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        assert u.loss_rate is not None
        assert Decimal(0) < u.loss_rate < Decimal(30)
    # Building 2 has no master meter: no loss is claimed for it.
    b2 = r.of("electricity_meter", world.building_ids["2"])
    assert b2 is not None
    assert b2.master is None
    assert b2.loss is None
    assert b2.loss_rate is None


def test_vacant_units_that_used_anything(session: Session, world: ew.EnergyWorld) -> None:
    r = report(session, world)
    assert [(u.kind, u.unit_code) for u in r.vacant] == [
        ("electricity_meter", "1-1-102"),
        ("cold_water_meter", "1-1-102"),
    ]
    vol = {u.kind: u.volume for u in r.vacant}
    assert vol["electricity_meter"] == ew.total(
        [world.meter("E-1-1-102")], "electricity_meter", None, *OCT, master=False
    )
    assert vol["cold_water_meter"] == ew.total(
        [world.meter("CW-1-1-102")], "cold_water_meter", None, *OCT, master=False
    )
    # Nothing in September: no vacant unit listed.
    assert report(session, world, date(2026, 9, 1)).vacant == ()


def test_top_consumers_largest_first(session: Session, world: ew.EnergyWorld) -> None:
    r = report(session, world)
    elec = [u for u in r.top if u.kind == "electricity_meter"]
    volumes = {
        m.unit: ew.total([m], "electricity_meter", None, *OCT, master=False)
        for m in world.meters
        if m.kind == "electricity_meter" and m.unit
    }
    want = sorted(((v, u) for u, v in volumes.items() if v > 0), key=lambda x: -x[0])
    assert [(u.volume, u.unit_code) for u in elec] == want


def test_month_on_month_and_year_on_year(session: Session, world: ew.EnergyWorld) -> None:
    r = report(session, world)
    u = r.of("cold_water_meter", world.building_ids["1"])
    assert u is not None
    cur, prev, ly = u.units, u.previous, u.last_year
    assert prev > 0
    assert ly > 0
    assert u.mom == ((cur - prev) * 100 / prev).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert u.yoy == ((cur - ly) * 100 / ly).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert r.windows.current.days == 31
    assert r.windows.previous.days == 30


def test_a_running_month_compares_the_same_days() -> None:
    w = windows(date(2026, 11, 1), date(2026, 11, 26))
    assert w.partial
    assert (w.current.start, w.current.end) == (date(2026, 11, 1), date(2026, 11, 27))
    assert (w.previous.start, w.previous.end) == (date(2026, 10, 1), date(2026, 10, 27))
    assert (w.last_year.start, w.last_year.end) == (date(2025, 11, 1), date(2025, 11, 27))
    # The 31st of a month compares with the whole of a shorter one, never past its end.
    w = windows(date(2026, 3, 1), date(2026, 3, 31))
    assert (w.previous.start, w.previous.end) == (date(2026, 2, 1), date(2026, 3, 1))
    done = windows(date(2026, 10, 1), date(2026, 11, 26))
    assert not done.partial
    assert done.current.end == date(2026, 11, 1)


def test_running_month_in_the_report(session: Session, world: ew.EnergyWorld) -> None:
    r = report(session, world, date(2026, 11, 1))
    assert r.windows.partial
    assert r.days()[-1] == date(2026, 11, 26)
    u = r.of("electricity_meter", world.building_ids["2"])
    assert u is not None
    assert u.units == ew.total(
        world.meters, "electricity_meter", "2", date(2026, 11, 1), date(2026, 11, 27), master=False
    )
    assert u.previous == ew.total(
        world.meters, "electricity_meter", "2", date(2026, 10, 1), date(2026, 10, 27), master=False
    )


def test_an_unconfirmed_replacement_is_held_then_counted_once_confirmed(session: Session) -> None:
    with pinned(ew.NOW):
        w = ew.seed(session, "energy-h", confirm=False)
        refresh_all(session)
        hw = w.meter("HW-1-1-101")
        assert hw.replacement is not None
        r = report(session, w)
        held = r.of("hot_water_meter", w.building_ids["1"])
        assert held is not None
        assert held.held == 1
        full = ew.total(w.meters, "hot_water_meter", "1", *OCT, master=False)
        swap = (hw.replacement[1] - hw.readings[[t for t, _ in hw.readings].index(hw.replacement[0])][1]) + (
            ew.NEW_INITIAL + ew.NEW_FIRST_USE - hw.replacement[2]
        )
        assert held.units == full - swap  # never guessed: the held interval counts nothing yet
        ew.confirm_replacement(session, w.hold_id, hw)
        assert refresh_all(session).confirmed == 1
        assert_sums_follow_the_day_rows(session, w.estate_id)
        after = report(session, w).of("hot_water_meter", w.building_ids["1"])
        assert after is not None
        assert after.held == 0
        assert after.units == full
        assert refresh_all(session).confirmed == 0  # counted once


def test_refresh_is_incremental_and_idempotent(session: Session, world: ew.EnergyWorld) -> None:
    before = session.execute(text("SELECT device_id, day, volume FROM energy_meter_days ORDER BY 1, 2")).all()
    again = energy_rollup.refresh(session, ew.NOW)
    assert again.readings == 0
    after = session.execute(text("SELECT device_id, day, volume FROM energy_meter_days ORDER BY 1, 2")).all()
    assert before == after


def test_new_readings_fold_into_the_running_day(session: Session, world: ew.EnergyWorld) -> None:
    """A reading after the cursor adds its interval to its day; the day before keeps its figure."""
    m = world.meter("CW-1-1-201")
    last_ts, last_reg = m.readings[-1]
    later = last_ts + timedelta(hours=2)  # 10:30 on 26 November, same local day
    session.execute(
        text("INSERT INTO meter_readings (ts, device_id, register) VALUES (:t, :d, :r)"),
        {"t": later, "d": m.device_id, "r": last_reg + Decimal("0.250")},
    )
    day = last_ts.astimezone(ew.SH).date()
    volume = lambda d: session.scalar(  # noqa: E731
        text("SELECT volume FROM energy_meter_days WHERE device_id = :d AND day = :day"), {"d": m.device_id, "day": d}
    )
    today, yesterday = volume(day), volume(day - timedelta(days=1))
    energy_rollup.refresh(session, ew.NOW)
    assert_sums_follow_the_day_rows(session, world.estate_id)
    assert volume(day) == today + Decimal("0.250")
    assert volume(day - timedelta(days=1)) == yesterday


def _long_history(session: Session, code: str, meters_n: int = energy_rollup.CHUNK) -> int:
    """An estate of ``meters_n`` cold-water meters read every 12 hours for 90 days (180 readings, 0.1 m³ each
    time: 17.9 m³ a meter over days 1 … 90); returns the estate's id."""
    from storage.models import Building, Device, Unit

    estate = Estate(code=code, name="长历史小区")
    session.add(estate)
    session.flush()
    building = Building(estate_id=estate.id, code="1", name="1号楼")
    session.add(building)
    session.flush()
    units = [Unit(building_id=building.id, code=f"1-1-{i:03d}", floor=1, area_m2=Decimal(90)) for i in range(meters_n)]
    session.add_all(units)
    session.flush()
    meters = [
        Device(
            estate_id=estate.id,
            code=f"{code}-CW{i:03d}",
            kind="cold_water_meter",
            unit_id=u.id,
            register_max=Decimal("99999.999"),
            resolution=Decimal("0.001"),
        )
        for i, u in enumerate(units)
    ]
    session.add_all(meters)
    session.flush()
    start = ew.NOW.astimezone(ew.SH).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=90)
    session.execute(
        text(
            "INSERT INTO meter_readings (ts, device_id, register)"
            " SELECT CAST(:start AS timestamptz) + n * interval '12 hours', d, n * 0.1"
            " FROM unnest(CAST(:d AS int[])) d, generate_series(0, 179) n"
        ),
        {"start": start, "d": [m.id for m in meters]},
    )
    return estate.id


def test_a_first_run_over_a_long_history_writes_every_day_row(session: Session) -> None:
    """100 meters (one chunk) × 90 days in one run: 9,000 day rows, more than one multi-VALUES insert can carry
    (8 bind parameters a row, PostgreSQL takes 65,535 a statement). bench/billing.py found it at 10,000 × 90."""
    estate_id = _long_history(session, "energy-long")
    result = energy_rollup.refresh(session, ew.NOW, estate_id=estate_id)
    assert (result.meters, result.readings, result.days, result.more) == (100, 18_000, 9_000, False)
    assert result.days * 8 > 65_535
    volume, rows = session.execute(
        text("SELECT sum(volume), count(*) FROM energy_meter_days WHERE estate_id = :e"), {"e": estate_id}
    ).one()
    assert (volume, rows) == (Decimal("1790.0"), 9_000)
    assert_sums_follow_the_day_rows(session, estate_id)


def test_a_long_backfill_goes_in_runs_of_bounded_size_that_resume(session: Session) -> None:
    """With a cap of 20,000 readings a run, 250 meters' 45,000 readings take two runs: whole chunks of 100 meters,
    so the first stops after its second chunk (36,000 ≥ 20,000) saying ``more``, and the second skips the meters
    already folded (their cursors are at the end) and folds the last 50. The result is the one big run's."""
    estate_id = _long_history(session, "energy-runs", meters_n=250)
    runs = []
    while True:
        r = energy_rollup.refresh(session, ew.NOW, estate_id=estate_id, max_readings=20_000)
        runs.append((r.readings, r.more))
        if not r.more:
            break
        assert len(runs) < 10
    assert runs == [(36_000, True), (9_000, False)]
    volume, rows = session.execute(
        text("SELECT sum(volume), count(*) FROM energy_meter_days WHERE estate_id = :e"), {"e": estate_id}
    ).one()
    assert (volume, rows) == (Decimal("17.9") * 250, 250 * 90)
    assert_sums_follow_the_day_rows(session, estate_id)
    assert energy_rollup.refresh(session, ew.NOW, estate_id=estate_id).readings == 0
