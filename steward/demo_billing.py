"""The demo estate's hot-water billing: a tariff, a prepaid account per household, opening top-ups, a few
property-fee arrears, and one household running low.

Everything is idempotent, so a restarted demo seeds nothing twice: the tariff only when the estate has
none, accounts by unit (`open_account`), top-ups by idempotency key (`record_payment`), the arrears only
when the estate has none (a file the clerk imported later is never overwritten).

The low household (LOW_UNIT) left a hot tap running (the simulators' ``hot_tap`` scenario, 60 L/h, in the
replay and live): its opening balance is ¥50.30, just above the ¥50 renewal line (domain-defaults §5), and
one 15-minute meter interval of the tap alone costs ¥0.42 — so the first charges take it below the line
and its 《热水续费通知书》 is drafted, whatever the hour the demo starts (a household's own showers
depend on the hour; the tap does not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.charging import RunResult
from billing.const import METER_KIND, NoticeKind, PaymentMethod
from billing.dunning import import_arrears
from billing.notices import evaluate
from billing.pricing import Tier
from billing.service import add_tariff, open_account, record_payment
from billing.tasks import billing_run
from steward.demo_team import DEMO_CLERK
from storage.models import (
    BillingAccount,
    BillingNotice,
    Device,
    Estate,
    MeterReading,
    Payment,
    PropertyFeeArrears,
    Tariff,
    Unit,
)

log = logging.getLogger(__name__)

# No public tariff exists; cost-plus estimates are ¥15–30/m³ (domain-defaults §5). One tier.
PRICE_FEN_PER_M3 = 2800
LOW_UNIT = "3-2-1601"  # occupied (examples/estate.yaml), not renovating, no PV
LOW_METER = f"HW-{LOW_UNIT}"
LOW_OPENING_FEN = 5030  # ¥50.30: the first 15 L of the running tap (¥0.42) take it below ¥50
# Weeks to months of hot water for a flat using ~¥3 a day (35 L per person-day at ¥28/m³).
OPENING_FEN = (15000, 20000, 30000)
TARIFF_LEAD_DAYS = 90  # the tariff starts well before any history the demo replays
# Property fees owed by a few units (monthly, ¥2.80/m²): /dunning has cases and letters to show.
ARREARS_UNITS = (("1-1-102", 33040), ("2-2-1701", 24920), ("4-1-902", 26880))


@dataclass(frozen=True)
class BillingSeed:
    estate_id: int
    tariff_created: bool
    accounts: int
    payments_created: int
    arrears_imported: int  # rows imported now (0 on a rerun)
    low_account_id: int
    low_unit: str = LOW_UNIT


def opening_key(estate_code: str, unit_code: str) -> str:
    return f"demo-opening:{estate_code}:{unit_code}"


def _local_day(estate: Estate, at: datetime) -> date:
    return at.astimezone(ZoneInfo(estate.timezone)).date()


def _ensure_tariff(session: Session, estate: Estate, now: datetime) -> bool:
    if session.scalar(select(Tariff.id).where(Tariff.estate_id == estate.id).limit(1)) is not None:
        return False
    # Before the oldest stored reading too (a data dir from a demo without billing): unpriced readings
    # would stop a meter's billing.
    oldest = session.scalar(
        select(func.min(MeterReading.ts))
        .join(Device, Device.id == MeterReading.device_id)
        .where(Device.estate_id == estate.id, Device.kind == METER_KIND)
    )
    start = _local_day(estate, now) - timedelta(days=TARIFF_LEAD_DAYS)
    if oldest is not None:
        start = min(start, _local_day(estate, oldest) - timedelta(days=1))
    add_tariff(
        session,
        estate_id=estate.id,
        effective_from=start,
        tiers=[Tier(None, PRICE_FEN_PER_M3)],
        actor=DEMO_CLERK,
        note="演示价格 ¥28/m³ / demo price",
    )
    return True


def _arrears_csv(estate: Estate, now: datetime) -> bytes:
    """The previous two months' fees of ARREARS_UNITS, as the fee system would export them."""
    first = _local_day(estate, now).replace(day=1)
    last_month = first - timedelta(days=1)
    month_before = last_month.replace(day=1) - timedelta(days=1)
    lines = ["unit,period,amount,late_fee"]
    for unit, fen in ARREARS_UNITS:
        for month in (month_before, last_month):
            lines.append(f"{unit},{month:%Y-%m},{fen // 100}.{fen % 100:02d},0")
    return ("\n".join(lines) + "\n").encode()


def seed_billing(session: Session, estate_code: str, now: datetime) -> BillingSeed:
    """Tariff, household accounts, opening top-ups and arrears for the demo estate (idempotent)."""
    if now.tzinfo is None:
        raise ValueError("now needs a timezone")
    estate = session.scalars(select(Estate).where(Estate.code == estate_code)).one()
    tariff_created = _ensure_tariff(session, estate, now)
    households = session.execute(
        select(Unit.id, Unit.code)
        .join(Device, Device.unit_id == Unit.id)
        .where(Device.estate_id == estate.id, Device.kind == METER_KIND)
        .order_by(Unit.code)
    ).all()
    created = 0
    low_account_id: int | None = None
    for i, (unit_id, unit_code) in enumerate(households):
        account = open_account(session, unit_id, at=now)
        low = unit_code == LOW_UNIT
        # Vacant flats are paid up too: an empty balance would draft a renewal notice for each of them.
        paid = record_payment(
            session,
            account_id=account.id,
            amount_fen=LOW_OPENING_FEN if low else OPENING_FEN[i % len(OPENING_FEN)],
            method=PaymentMethod.counter,
            idempotency_key=opening_key(estate.code, unit_code),
            actor=DEMO_CLERK,
            received_at=now,
        )
        created += paid.created
        if low:
            low_account_id = account.id
    if low_account_id is None:
        raise ValueError(f"the demo estate {estate_code} has no hot-water meter {LOW_METER}")
    imported = 0
    if session.scalar(select(PropertyFeeArrears.id).where(PropertyFeeArrears.estate_id == estate.id).limit(1)) is None:
        report = import_arrears(
            session, estate.id, _arrears_csv(estate, now), actor=DEMO_CLERK, filename="demo-arrears.csv"
        )
        imported = report.rows
    return BillingSeed(estate.id, tariff_created, len(households), created, imported, low_account_id)


@dataclass(frozen=True)
class CatchUp:
    run: RunResult
    drafted: list[str]  # numbers of the notices drafted now


def catch_up(factory: Callable[[], Session], estate_id: int, now: datetime) -> CatchUp:
    """Charge every meter up to `now` (meter by meter, committed), then draft the notices now due."""
    run = billing_run(factory, now, estate_id=estate_id)
    with factory() as session, session.begin():
        result = evaluate(session, estate_id, now)
        drafted = [n.number for n in result.drafted]
    return CatchUp(run, drafted)


@dataclass(frozen=True)
class LowHousehold:
    account_id: int
    unit: str
    balance_fen: int
    notice_number: str | None  # its renewal notice, once drafted


def low_household(session: Session, estate_id: int) -> LowHousehold | None:
    row = session.execute(
        select(BillingAccount.id, BillingAccount.balance_fen)
        .join(Unit, Unit.id == BillingAccount.unit_id)
        .join(Device, Device.unit_id == Unit.id)
        .where(Device.code == LOW_METER, Device.estate_id == estate_id)
    ).first()
    if row is None:
        return None
    number = session.scalar(
        select(BillingNotice.number)
        .where(BillingNotice.account_id == row.id, BillingNotice.kind == NoticeKind.renewal.value)
        .order_by(BillingNotice.id.desc())
        .limit(1)
    )
    return LowHousehold(row.id, LOW_UNIT, int(row.balance_fen), number)


def opening_payments(session: Session, estate_id: int) -> int:
    """How many opening top-ups the estate holds (a rerun must not add any)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.estate_id == estate_id, Payment.idempotency_key.like("demo-opening:%"))
        )
        or 0
    )


__all__ = [
    "LOW_METER",
    "LOW_UNIT",
    "BillingSeed",
    "CatchUp",
    "LowHousehold",
    "catch_up",
    "low_household",
    "opening_payments",
    "seed_billing",
]
