"""Billing in a test world: a household with a hot-water meter, a tariff, readings, charges and a balance in an
estate, and fresh held intervals on demand (for the routes that confirm one).

Built on any world database (tests/support/world.py's apia/apib, the dashboards' estates) the first time a
test asks, and cached per database and estate. apib has no units of its own: a building and a unit are added.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from billing import charging, service
from billing.pricing import Tier
from core import clock
from storage.models import BillingHold, Building, Device, Estate, Unit

WEBHOOK_PROVIDER = "testpay"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"  # the API tests' app is built with it (tests/api/conftest.py)
TARIFF_FEN_PER_M3 = 2500  # ¥25 per m³
START_BALANCE_FEN = 50_000_000  # refunds in the access matrix draw on it
# Readings of the household meter: every 6 hours over the 20 days before the world's instant, 0.05 m³ each.
READING_STEP = timedelta(hours=6)
READINGS = 80


@dataclass(frozen=True)
class BillingPlace:
    estate: str
    estate_id: int
    unit_id: int
    unit_code: str
    account_id: int
    meter_id: int
    hold_meter_id: int  # a meter without readings: its holds never stop a billing run


MeterReadingInsert = text(
    "INSERT INTO meter_readings (ts, device_id, register) VALUES (:ts, :d, :r) ON CONFLICT DO NOTHING"
)
_places: dict[tuple[str, str], BillingPlace] = {}
_hold_seq = itertools.count(1)


def _unit(s: Session, estate_id: int, code: str) -> Unit:
    unit = s.scalars(
        select(Unit)
        .join(Building, Building.id == Unit.building_id)
        .where(Building.estate_id == estate_id)
        .order_by(Unit.id)
        .limit(1)
    ).first()
    if unit is not None:
        return unit
    building = Building(estate_id=estate_id, code="9", name="9幢", floors=1)
    s.add(building)
    s.flush()
    unit = Unit(building_id=building.id, code="9-1-101", floor=1, area_m2=Decimal("90.00"))
    s.add(unit)
    s.flush()
    return unit


def billing_place(engine: Engine, estate: str, *, now: datetime | None = None) -> BillingPlace:
    """The estate's billed household (built once per database): balance, tariff, 20 days of charges."""
    key = (str(engine.url), estate)
    if key in _places:
        return _places[key]
    at = (now or clock.now()).replace(microsecond=0)
    with Session(engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == estate)).one()
        unit = _unit(s, estate_id, estate)
        meter = Device(
            estate_id=estate_id,
            code=f"{estate.upper()}-HWB",
            kind="hot_water_meter",
            unit_id=unit.id,
            register_max=Decimal("99999.999"),
            resolution=Decimal("0.001"),
            multiplier=Decimal(1),
        )
        spare = Device(
            estate_id=estate_id,
            code=f"{estate.upper()}-HWH",
            kind="hot_water_meter",
            unit_id=unit.id,
            register_max=Decimal("99999.999"),
            resolution=Decimal("0.001"),
            multiplier=Decimal(1),
        )
        s.add_all([meter, spare])
        s.flush()
        account = service.open_account(s, unit.id, at=at - timedelta(days=60))
        service.add_tariff(
            s,
            estate_id=estate_id,
            effective_from=at - timedelta(days=90),
            tiers=[Tier(None, TARIFF_FEN_PER_M3)],
            actor="fixture",
        )
        service.record_payment(
            s,
            account_id=account.id,
            amount_fen=START_BALANCE_FEN,
            method="counter",
            idempotency_key=f"fixture-{estate}-{account.id}",
            actor="fixture",
            received_at=at - timedelta(days=30),
        )
        first = at - READING_STEP * READINGS
        for i in range(READINGS + 1):
            s.execute(
                MeterReadingInsert,
                {"ts": first + READING_STEP * i, "d": meter.id, "r": Decimal("10.000") + Decimal("0.050") * i},
            )
        charging.charge_meter(s, meter.id, at)
        place = BillingPlace(estate, estate_id, unit.id, unit.code, account.id, meter.id, spare.id)
    _places[key] = place
    return place


HOLD_FROM = datetime(2026, 1, 1, tzinfo=UTC)
HOLD_TO = datetime(2030, 1, 1, tzinfo=UTC)
HOLD_REPLACED_AT = "2028-01-01T00:00:00+00:00"  # inside every fresh hold


def new_hold(engine: Engine, estate: str) -> int:
    """A fresh held interval (a register fall from 100 to 5) on the estate's spare meter."""
    place = billing_place(engine, estate)
    with Session(engine) as s, s.begin():
        hold = BillingHold(
            device_id=place.hold_meter_id,
            account_id=place.account_id,
            from_ts=HOLD_FROM + timedelta(seconds=next(_hold_seq)),
            to_ts=HOLD_TO,
            from_register=Decimal("100.000"),
            to_register=Decimal("5.000"),
            kind="replacement",
            reason="register fell: replaced meter? / 读数回落，疑似换表",
            status="held",
            detected_at=HOLD_FROM,
        )
        s.add(hold)
        s.flush()
        return int(hold.id)


_unit_seq = itertools.count(1)


def fresh_account(engine: Engine, estate: str) -> int:
    """A new household of the estate (a unit of its own in building "F") with an empty account."""
    with Session(engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == estate)).one()
        building = s.scalars(select(Building).where(Building.estate_id == estate_id, Building.code == "F")).first()
        if building is None:
            building = Building(estate_id=estate_id, code="F", name="F幢", floors=30)
            s.add(building)
            s.flush()
        unit = Unit(building_id=building.id, code=f"F-1-{next(_unit_seq):04d}", floor=1, area_m2=Decimal("80.00"))
        s.add(unit)
        s.flush()
        return int(service.open_account(s, unit.id, at=HOLD_FROM).id)


def statement_for(engine: Engine, estate: str) -> int:
    """A 2026Q4 statement of the estate's billed household (written once; later calls find it)."""
    from billing import statements
    from billing.periods import Quarter
    from storage.models import BillingStatement

    place = billing_place(engine, estate)
    with Session(engine) as s, s.begin():
        found = s.scalar(
            select(BillingStatement.id).where(
                BillingStatement.account_id == place.account_id, BillingStatement.period == "2026Q4"
            )
        )
        if found is not None:
            return found
        statements.write(s, place.estate_id, Quarter(2026, 4), [place.account_id])
        return s.scalars(
            select(BillingStatement.id).where(
                BillingStatement.account_id == place.account_id, BillingStatement.period == "2026Q4"
            )
        ).one()
