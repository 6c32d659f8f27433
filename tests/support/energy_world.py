"""An estate with months of meter registers for the energy-report tests, and its figures worked out here.

Two buildings; households with electricity, cold- and hot-water meters; a master meter of electricity and one
of cold water on building 1 (the master sees its households plus a loss); a vacant unit that used power and
water; an electricity meter whose register rolls over at 999 999.99 in October 2026; a hot-water meter
replaced on 12 October 2026 (the register falls from ~54 m³ to 0.115), held by billing and confirmed with the
old meter's final and the new meter's initial register through billing's own service. Readings every 6 hours
at 02:30, 08:30, 14:30 and 20:30 Shanghai time (the 02:30 ones lie on the previous UTC day), over
2025-09-20 … 2025-11-10 and 2026-08-20 … 2026-11-26 08:30.

`expected(...)` sums each meter's intervals straight from those registers with the rules written out here
(not facility.meters): an interval counts on the local day of its later reading; a rise counts as it is, a
fall from the top 10 % to the bottom 10 % of the register counts across the wrap, the replaced meter's
interval counts (old final − start) + (end − new initial); everything times the meter's multiplier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from billing import charging, service
from billing.pricing import Tier
from storage.models import BillingHold, Building, Device, Estate, Unit

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=SH)
MONTH = date(2026, 10, 1)
TIMES = (time(2, 30), time(8, 30), time(14, 30), time(20, 30))
SEGMENTS = ((date(2025, 9, 20), date(2025, 11, 10)), (date(2026, 8, 20), date(2026, 11, 26)))
REPLACED_AT = datetime(2026, 10, 12, 14, 30, tzinfo=SH)  # the first reading of the new hot-water meter
OLD_FINAL = Decimal("0.020")  # the old meter ran this much past its last reading before the swap
NEW_INITIAL = Decimal("0.100")  # the new meter's factory water
NEW_FIRST_USE = Decimal("0.015")  # used on the new meter before its first reading
KINDS = ("electricity_meter", "cold_water_meter", "hot_water_meter")


def stamps() -> list[datetime]:
    out = []
    for first, last in SEGMENTS:
        d = first
        while d <= last:
            for t in TIMES:
                ts = datetime.combine(d, t, SH)
                if ts < NOW:
                    out.append(ts)
            d += timedelta(days=1)
    return out


@dataclass
class MeterSpec:
    code: str
    kind: str
    unit: str | None  # None: a master meter
    building: str
    register_max: Decimal
    resolution: Decimal
    multiplier: Decimal = Decimal(1)
    master_of: str | None = None
    readings: list[tuple[datetime, Decimal]] = field(default_factory=list)
    replacement: tuple[datetime, Decimal, Decimal] | None = None  # (start of the held interval, old final, new initial)
    device_id: int = 0


def _unit_step(code: str, ts: datetime, i: int) -> Decimal:
    """A household meter's register rise over the 6 hours to reading ``i`` at ``ts`` (before its multiplier)."""
    local = ts.astimezone(SH).date()
    k = Decimal(i % 5)
    if code == "E-1-1-101":
        return Decimal("1.20") + Decimal("0.05") * k
    if code == "E-1-1-102":  # vacant: power on for three days in October 2026
        return Decimal("0.30") if date(2026, 10, 10) <= local <= date(2026, 10, 12) else Decimal(0)
    if code == "E-1-1-201":
        return Decimal("0.50") + Decimal("0.02") * k
    if code == "E-2-1-101":
        return Decimal("2.00") + Decimal("0.10") * k
    if code == "CW-1-1-101":
        return Decimal("0.050") + Decimal("0.005") * k
    if code == "CW-1-1-102":  # vacant: a tap left running on 20 October 2026
        return Decimal("0.010") if local == date(2026, 10, 20) else Decimal(0)
    if code == "CW-1-1-201":
        return Decimal("0.080")
    if code == "HW-1-1-101":
        return Decimal("0.030") + Decimal("0.002") * k
    if code == "HW-2-1-101":
        return Decimal("0.040")
    raise AssertionError(code)


MASTER_LOSS = {"EM-1": Decimal("0.20"), "CWM-1": Decimal("0.012")}  # per 6 hours, on top of the households


def specs() -> list[MeterSpec]:
    e = {"register_max": Decimal("999999.99"), "resolution": Decimal("0.01")}
    w = {"register_max": Decimal("99999.999"), "resolution": Decimal("0.001")}
    return [
        MeterSpec("E-1-1-101", "electricity_meter", "1-1-101", "1", **e),
        MeterSpec("E-1-1-102", "electricity_meter", "1-1-102", "1", **e),
        MeterSpec("E-1-1-201", "electricity_meter", "1-1-201", "1", **e, multiplier=Decimal(2)),
        MeterSpec("E-2-1-101", "electricity_meter", "2-1-101", "2", **e),
        MeterSpec("CW-1-1-101", "cold_water_meter", "1-1-101", "1", **w),
        MeterSpec("CW-1-1-102", "cold_water_meter", "1-1-102", "1", **w),
        MeterSpec("CW-1-1-201", "cold_water_meter", "1-1-201", "1", **w),
        MeterSpec("HW-1-1-101", "hot_water_meter", "1-1-101", "1", **w),
        MeterSpec("HW-2-1-101", "hot_water_meter", "2-1-101", "2", **w),
        MeterSpec(
            "EM-1",
            "electricity_meter",
            None,
            "1",
            Decimal("99999999.99"),
            Decimal("0.01"),
            master_of="electricity_meter",
        ),
        MeterSpec(
            "CWM-1",
            "cold_water_meter",
            None,
            "1",
            Decimal("9999999.999"),
            Decimal("0.001"),
            master_of="cold_water_meter",
        ),
    ]


START = {
    "E-1-1-101": Decimal("999000.00"),
    "E-1-1-102": Decimal("120.00"),
    "E-1-1-201": Decimal("3500.00"),
    "E-2-1-101": Decimal("8800.00"),
    "CW-1-1-101": Decimal("310.000"),
    "CW-1-1-102": Decimal("12.000"),
    "CW-1-1-201": Decimal("95.000"),
    "HW-1-1-101": Decimal("40.000"),
    "HW-2-1-101": Decimal("20.000"),
    "EM-1": Decimal("500000.00"),
    "CWM-1": Decimal("4000.000"),
}
# E-1-1-101 is found at this register when the 2026 segment starts, so it wraps in mid-October 2026.
E101_2026 = Decimal("999700.00")


def build_readings(meters: list[MeterSpec]) -> None:
    """Each meter's registers over `stamps()`; masters see their households' consumption plus MASTER_LOSS."""
    ts_list = stamps()
    by_code = {m.code: m for m in meters}
    reg = dict(START)
    for i, ts in enumerate(ts_list):
        use: dict[str, Decimal] = {}  # household consumption in this step, multiplier applied
        for m in meters:
            if m.master_of is not None:
                continue
            step = _unit_step(m.code, ts, i) if i else Decimal(0)
            if m.code == "E-1-1-101" and ts.date() == SEGMENTS[1][0] and ts.time() == TIMES[0]:
                reg[m.code] = E101_2026  # the 2026 segment starts here (a rise: an ordinary interval)
                step = Decimal(0)  # ... that the master did not see
            elif m.code == "HW-1-1-101" and ts == REPLACED_AT:
                m.replacement = (m.readings[-1][0], reg[m.code] + OLD_FINAL, NEW_INITIAL)
                reg[m.code] = NEW_INITIAL + NEW_FIRST_USE
            else:
                reg[m.code] += step
                if reg[m.code] >= m.register_max:
                    reg[m.code] -= m.register_max  # the register wraps
            use[m.code] = step * m.multiplier
            m.readings.append((ts, reg[m.code]))
        for m in meters:
            if m.master_of is None:
                continue
            subs = [s for s in meters if s.master_of is None and s.kind == m.master_of and s.building == m.building]
            rise = sum((use[s.code] for s in subs), Decimal(0)) + (MASTER_LOSS[m.code] if i else Decimal(0))
            reg[m.code] += rise
            m.readings.append((ts, reg[m.code]))
    assert by_code["E-1-1-101"].replacement is None


def intervals(m: MeterSpec) -> Iterator[tuple[date, Decimal]]:
    """(local day of the later reading, volume) of each interval, from the registers, by the rules above."""
    for (t1, r1), (t2, r2) in zip(m.readings, m.readings[1:], strict=False):
        if r2 >= r1:
            v = r2 - r1
        elif r1 >= Decimal("0.9") * m.register_max and r2 < Decimal("0.1") * m.register_max:
            v = m.register_max - r1 + r2
        else:
            assert m.replacement is not None, (m.code, t1, r1, r2)
            assert m.replacement[0] == t1, (m.code, t1, r1, r2)
            v = (m.replacement[1] - r1) + (r2 - m.replacement[2])
        yield t2.astimezone(SH).date(), v * m.multiplier


def total(meters: list[MeterSpec], kind: str, building: str | None, start: date, end: date, *, master: bool) -> Decimal:
    """Σ over the meters of ``kind`` (households, or the masters) in ``building`` (None: all) of [start, end)."""
    out = Decimal(0)
    for m in meters:
        if m.kind != kind or (m.master_of is not None) != master or (building is not None and m.building != building):
            continue
        out += sum((v for day, v in intervals(m) if start <= day < end), Decimal(0))
    return out


def day_total(meters: list[MeterSpec], kind: str, building: str | None, day: date) -> Decimal:
    return total(meters, kind, building, day, day + timedelta(days=1), master=False)


@dataclass
class EnergyWorld:
    estate_id: int
    code: str
    meters: list[MeterSpec]
    building_ids: dict[str, int]
    hold_id: int

    def meter(self, code: str) -> MeterSpec:
        return next(m for m in self.meters if m.code == code)


def seed(session: Session, code: str, *, confirm: bool = True) -> EnergyWorld:
    """The estate ``code`` with its meters, registers, a hot-water tariff and billing run up to NOW (the
    replaced meter's hold confirmed when ``confirm``). Flushes; the caller owns the transaction."""
    estate = Estate(code=code, name="能耗测试苑", city="杭州", timezone="Asia/Shanghai")
    session.add(estate)
    session.flush()
    buildings = {}
    for b in ("1", "2"):
        row = Building(estate_id=estate.id, code=b, name=f"{b}幢", floors=2)
        session.add(row)
        session.flush()
        buildings[b] = row.id
    units = {}
    for unit_code, occupancy in (
        ("1-1-101", "occupied"),
        ("1-1-102", "vacant"),
        ("1-1-201", "occupied"),
        ("2-1-101", "occupied"),
        ("2-1-102", "vacant"),
    ):
        u = Unit(
            building_id=buildings[unit_code[0]],
            code=unit_code,
            floor=int(unit_code[-3]),
            area_m2=Decimal("89.00"),
            occupancy=occupancy,
        )
        session.add(u)
        session.flush()
        units[unit_code] = u.id
    meters = specs()
    build_readings(meters)
    for m in meters:
        attrs = {"building": m.building} | ({"master_of": m.master_of} if m.master_of else {})
        d = Device(
            estate_id=estate.id,
            code=f"{code.upper()}-{m.code}",
            kind=m.kind,
            unit_id=units[m.unit] if m.unit else None,
            register_max=m.register_max,
            resolution=m.resolution,
            multiplier=m.multiplier,
            expected_interval_s=21600,
            attrs=attrs,
        )
        session.add(d)
        session.flush()
        m.device_id = d.id
        session.execute(
            text(
                "INSERT INTO meter_readings (ts, device_id, register) "
                "SELECT * FROM unnest(CAST(:ts AS timestamptz[]), CAST(:d AS int[]), CAST(:r AS numeric[]))"
            ),
            {"ts": [t for t, _ in m.readings], "d": [d.id] * len(m.readings), "r": [r for _, r in m.readings]},
        )
    service.add_tariff(
        session,
        estate_id=estate.id,
        effective_from=datetime(2025, 1, 1, tzinfo=SH),
        tiers=[Tier(None, 2500)],
        actor="fixture",
    )
    charging.bill(session, NOW, estate_id=estate.id)
    hw = next(m for m in meters if m.code == "HW-1-1-101")
    hold = session.scalars(select(BillingHold).where(BillingHold.device_id == hw.device_id)).one()
    if confirm:
        confirm_replacement(session, hold.id, hw)
    return EnergyWorld(estate.id, code, meters, buildings, int(hold.id))


def confirm_replacement(session: Session, hold_id: int, hw: MeterSpec) -> None:
    """What the engineer records after swapping the meter, through billing's service; billing then charges it."""
    assert hw.replacement is not None
    service.confirm_hold(
        session,
        hold_id,
        old_final_register=hw.replacement[1],
        new_initial_register=hw.replacement[2],
        replaced_at=REPLACED_AT - timedelta(hours=1),
        actor="engineer-user",
    )
    charging.bill(session, NOW, estate_id=session.get(Device, hw.device_id).estate_id)  # type: ignore[union-attr]
