"""Charging hot-water consumption from the cumulative registers in `meter_readings` (domain-defaults §3).

Per meter, a cursor (`billing_cursors`) names the last reading the meter has been billed up to; the
first reading the billing sees becomes the baseline and is not charged. Charging walks the readings
after the cursor in device-time order, classifies each interval with `facility.meters.consumption`:

* normal / rollover → a `meter_charges` row keyed by (device, from_ts) — also unique on (device,
  to_ts) — and one ledger transaction keyed ``charge:<device>:<from_ts>``; the cursor moves on;
* an unusable reading (≥ register_max, negative) is skipped;
* a fall that is not a rollover (a reset, or a replaced meter) → a `billing_holds` row with the
  interval's two readings; the meter's billing stops there until a person records the old final and
  new initial registers (`service.confirm_hold`); the next run charges the held interval from that
  record, once (the charge carries the hold id, unique), and carries on.

Intervals of zero volume move the cursor and write nothing. A reading that arrives late with a time
at or before the cursor changes nothing: registers are cumulative, so its volume is already inside
the charged interval that spans it.

Crash safety and concurrency: one meter is charged in one transaction (charges, ledger, cursor
together), under ``pg_advisory_xact_lock(CHARGE_LOCK_SPACE, device_id)``; a second run waits, then
finds the cursor moved and has nothing to do. The unique keys are the last line: a charge can never
be written twice, whatever the caller does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from billing import pricing
from billing.const import (
    CHARGE_LOCK_SPACE,
    METER_KIND,
    SYSTEM_ACTOR,
    AccountKind,
    HoldKind,
    HoldStatus,
    TransactionKind,
)
from billing.pricing import Part, TariffVersion, Tier
from billing.service import estate_account, open_account
from core import clock
from facility.meters import ConsumptionKind, Reading, consumption
from storage.models import (
    BillingAccount,
    BillingCursor,
    BillingHold,
    Device,
    Estate,
    LedgerEntry,
    LedgerTransaction,
    MeterCharge,
    MeterReading,
    MeterReplacement,
    Tariff,
    TariffTier,
)

BATCH = 5000  # readings loaded per query while walking one meter
# One compiled statement for every charge's transaction (executemany, so SQLAlchemy caches it).
_CHARGE_TX = (
    pg_insert(LedgerTransaction)
    .on_conflict_do_nothing(index_elements=["key"])
    .returning(LedgerTransaction.key, LedgerTransaction.id)
)
WRITE_CHUNK = 1000  # charges per multi-row INSERT (bind parameters stay far below PostgreSQL's 65,535)


@dataclass
class MeterResult:
    device_id: int
    charges: int = 0
    amount_fen: int = 0
    held: int | None = None  # the hold that stops this meter, if any
    skipped: bool = False  # wait=False and another transaction was charging the meter: nothing done
    unpriced: datetime | None = None  # an interval starting here had no tariff in force


@dataclass
class RunResult:
    meters: list[MeterResult] = field(default_factory=list)

    @property
    def charges(self) -> int:
        return sum(m.charges for m in self.meters)

    @property
    def amount_fen(self) -> int:
        return sum(m.amount_fen for m in self.meters)


def load_tariffs(session: Session, estate_id: int) -> list[TariffVersion]:
    tiers: dict[int, list[Tier]] = {}
    rows = session.execute(
        select(TariffTier.tariff_id, TariffTier.up_to_m3, TariffTier.price_fen_per_m3)
        .join(Tariff, Tariff.id == TariffTier.tariff_id)
        .where(Tariff.estate_id == estate_id)
        .order_by(TariffTier.tariff_id, TariffTier.seq)
    ).all()
    for tariff_id, up_to, price in rows:
        tiers.setdefault(tariff_id, []).append(Tier(up_to, price))
    return [
        TariffVersion(t.id, t.effective_from, tuple(tiers.get(t.id, ())))
        for t in session.scalars(select(Tariff).where(Tariff.estate_id == estate_id).order_by(Tariff.effective_from))
    ]


def meters_to_bill(session: Session | Connection, estate_id: int | None = None) -> list[int]:
    """Hot-water meters of households, in id order (the run's deterministic order)."""
    stmt = select(Device.id).where(Device.kind == METER_KIND, Device.unit_id.is_not(None)).order_by(Device.id)
    if estate_id is not None:
        stmt = stmt.where(Device.estate_id == estate_id)
    return list(session.scalars(stmt))


def _floor(value: Decimal, resolution: Decimal | None) -> Decimal:
    if resolution is None:
        return value
    with localcontext() as ctx:
        ctx.prec = 60
        return (value / resolution).to_integral_value(rounding=ROUND_FLOOR) * resolution


class _Pricer:
    """Prices one meter's intervals against the account's month totals (see billing.pricing)."""

    def __init__(self, session: Session, account_id: int, tariffs: Sequence[TariffVersion], tz: ZoneInfo) -> None:
        self.session, self.account_id, self.tariffs, self.tz = session, account_id, tariffs, tz
        self.month_totals: dict[date, tuple[Decimal, Decimal]] = {}

    def totals(self, month: date) -> tuple[Decimal, Decimal]:
        if month not in self.month_totals:
            row = self.session.execute(
                select(
                    func.coalesce(func.sum(MeterCharge.volume_m3), 0), func.coalesce(func.sum(MeterCharge.value_fen), 0)
                ).where(MeterCharge.account_id == self.account_id, MeterCharge.month == month)
            ).one()
            self.month_totals[month] = (Decimal(row[0]), Decimal(row[1]))
        return self.month_totals[month]

    def price(self, from_ts: datetime, to_ts: datetime, volume: Decimal) -> tuple[date, list[Part]] | None:
        spans = pricing.split(self.tariffs, from_ts, to_ts, volume)
        if spans is None:
            return None
        local = to_ts.astimezone(self.tz)
        month = date(local.year, local.month, 1)
        cum_volume, _ = self.totals(month)
        parts = []
        for tariff, a, b, share in spans:
            parts.append(Part(tariff.id, a, b, share, pricing.tier_value(tariff.tiers, cum_volume, share)))
            cum_volume += share
        return month, parts

    def book(self, month: date, volume: Decimal, value: Decimal) -> tuple[Decimal, Decimal, int]:
        cum_volume, cum_value = self.totals(month)
        after = (cum_volume + volume, cum_value + value)
        self.month_totals[month] = after
        return after[0], after[1], pricing.amount_between(cum_value, after[1])


def charge_meter(session: Session, device_id: int, up_to: datetime, *, wait: bool = True) -> MeterResult:
    """Charge one meter's intervals ending at or before `up_to`; flushes, never commits. Idempotent.

    With ``wait=False`` (ingest) a meter another transaction is charging is skipped (`skipped`) rather
    than waited for: that transaction, or the next billing run, charges it."""
    result = MeterResult(device_id)
    params = {"space": CHARGE_LOCK_SPACE, "id": device_id}
    if wait:
        session.execute(text("SELECT pg_advisory_xact_lock(:space, :id)"), params)
    elif not session.scalar(text("SELECT pg_try_advisory_xact_lock(:space, :id)"), params):
        result.skipped = True
        return result
    device = session.get(Device, device_id)
    if device is None or device.unit_id is None:
        return result
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    account = open_account(session, device.unit_id)
    revenue = estate_account(session, estate.id, AccountKind.revenue_hot_water)
    cursor = session.get(BillingCursor, device_id, populate_existing=True)
    if cursor is None:
        first = session.execute(
            select(MeterReading.ts, MeterReading.register)
            .where(MeterReading.device_id == device_id, MeterReading.ts <= up_to)
            .order_by(MeterReading.ts)
            .limit(1)
        ).first()
        if first is None:
            return result
        cursor = BillingCursor(
            device_id=device_id,
            account_id=account.id,
            last_ts=first.ts,
            last_register=first.register,
            updated_at=clock.now(),
        )
        session.add(cursor)
        session.flush()
    pricer = _Pricer(session, account.id, load_tariffs(session, estate.id), ZoneInfo(estate.timezone))
    register_max, resolution, multiplier = device.register_max, device.resolution, device.multiplier or Decimal(1)

    # Charges are priced one by one (the month totals run through them in order) but written in bulk:
    # a few multi-row statements per batch of readings instead of ~10 round trips per interval.
    pending: list[dict[str, Any]] = []

    def charge(prev: Reading, curr: Reading, volume: Decimal, kind: str, hold_id: int | None) -> bool:
        if volume > 0:
            priced = pricer.price(prev.ts, curr.ts, volume)
            if priced is None:
                result.unpriced = prev.ts
                return False
            month, parts = priced
            value = sum((p.value_fen for p in parts), Decimal(0))
            cum_volume, cum_value, amount = pricer.book(month, volume, value)
            pending.append(
                {
                    "account_id": account.id,
                    "device_id": device_id,
                    "from_ts": prev.ts,
                    "to_ts": curr.ts,
                    "from_register": prev.register,
                    "to_register": curr.register,
                    "kind": kind,
                    "volume_m3": volume,
                    "month": month,
                    "value_fen": value,
                    "cum_volume_m3": cum_volume,
                    "cum_value_fen": cum_value,
                    "amount_fen": amount,
                    "pricing": [p.as_json() for p in parts],
                    "hold_id": hold_id,
                    "transaction_id": None,
                    "charged_at": clock.now(),
                }
            )
            result.charges += 1
            result.amount_fen += amount
        cursor.last_ts, cursor.last_register, cursor.updated_at = curr.ts, curr.register, clock.now()
        return True

    def write_pending() -> None:
        """The pending charges, their ledger transactions (``charge:<device>:<from_ts>``, entries
        household +x / revenue −x, as `service.post` books them) and the two cached balances."""
        for chunk in (pending[i : i + WRITE_CHUNK] for i in range(0, len(pending), WRITE_CHUNK)):
            paid = [c for c in chunk if c["amount_fen"] > 0]
            if paid:
                keys = {f"charge:{device_id}:{c['from_ts'].isoformat()}": c for c in paid}
                rows = session.execute(
                    _CHARGE_TX,
                    [
                        {
                            "estate_id": estate.id,
                            "kind": TransactionKind.charge.value,
                            "key": key,
                            "at": c["to_ts"],
                            "actor": SYSTEM_ACTOR,
                            "reason": "",
                        }
                        for key, c in keys.items()
                    ],
                ).all()
                if len(rows) != len(keys):  # cannot happen under the lock and cursor; refuse rather than double
                    taken = sorted(set(keys) - {k for k, _ in rows})
                    raise RuntimeError(f"charge for device {device_id} already posted: {taken[:3]}")
                for key, tx_id in rows:
                    keys[key]["transaction_id"] = tx_id
                entries = []
                for c in paid:
                    entries.append(
                        {"transaction_id": c["transaction_id"], "account_id": account.id, "amount_fen": c["amount_fen"]}
                    )
                    entries.append(
                        {
                            "transaction_id": c["transaction_id"],
                            "account_id": revenue.id,
                            "amount_fen": -c["amount_fen"],
                        }
                    )
                session.execute(insert(LedgerEntry), entries)
                total = sum(c["amount_fen"] for c in paid)
                # The household's balance (−Σ its entries) and revenue's (Σ) both fall by the total;
                # in account order, as `post` takes them (no deadlock between posters).
                for account_id in sorted((account.id, revenue.id)):
                    session.execute(
                        update(BillingAccount)
                        .where(BillingAccount.id == account_id)
                        .values(balance_fen=BillingAccount.balance_fen - total)
                    )
            session.execute(insert(MeterCharge), chunk)
        pending.clear()

    prev = Reading(cursor.last_ts, cursor.last_register)
    scan_from = prev.ts
    while True:
        hold = session.scalars(
            select(BillingHold).where(BillingHold.device_id == device_id, BillingHold.from_ts == prev.ts)
        ).one_or_none()
        if hold is not None:
            if hold.status == HoldStatus.held:
                result.held = hold.id
                break
            record = session.scalars(select(MeterReplacement).where(MeterReplacement.hold_id == hold.id)).one()
            if hold.to_ts > up_to:
                break
            volume = (_floor(record.old_final_register, resolution) - _floor(hold.from_register, resolution)) + (
                _floor(hold.to_register, resolution) - _floor(record.new_initial_register, resolution)
            )
            with localcontext() as ctx:
                ctx.prec = 60
                volume *= multiplier
            curr = Reading(hold.to_ts, hold.to_register)
            if not charge(prev, curr, volume, record.kind, hold.id):
                break
            prev = curr
            scan_from = max(scan_from, prev.ts)
        rows = session.execute(
            select(MeterReading.ts, MeterReading.register)
            .where(MeterReading.device_id == device_id, MeterReading.ts > scan_from, MeterReading.ts <= up_to)
            .order_by(MeterReading.ts)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        stopped = False
        for ts, register in rows:
            curr = Reading(ts, register)
            c = consumption(prev, curr, register_max=register_max, resolution=resolution, multiplier=multiplier)
            if c is None:
                continue  # an unusable reading (a misread register): skipped, never billed
            if not c.billable:
                kind = HoldKind.replacement if c.kind == ConsumptionKind.replacement else HoldKind.reset
                new = BillingHold(
                    device_id=device_id,
                    account_id=account.id,
                    from_ts=prev.ts,
                    to_ts=curr.ts,
                    from_register=prev.register,
                    to_register=curr.register,
                    kind=kind.value,
                    reason=c.reason,
                    status=HoldStatus.held.value,
                    detected_at=clock.now(),
                )
                session.add(new)
                session.flush()
                result.held = new.id
                stopped = True
                break
            if not charge(prev, curr, c.volume, c.kind.value, None):
                stopped = True
                break
            prev = curr
        write_pending()
        session.flush()
        if stopped or len(rows) < BATCH:
            break
        scan_from = rows[-1].ts  # past any unusable readings at the end of the batch
    write_pending()
    session.flush()
    return result


def bill(session: Session, up_to: datetime, *, estate_id: int | None = None) -> RunResult:
    """Charge every household hot-water meter up to `up_to` in the caller's transaction (tests, small jobs)."""
    run = RunResult()
    for device_id in meters_to_bill(session, estate_id):
        run.meters.append(charge_meter(session, device_id, up_to))
    return run
