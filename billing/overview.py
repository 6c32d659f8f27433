"""What the billing API and pages show of households: balances with days of use left, one account in full,
the objects' estates (for the scope checks of billing/policy.py) and a change mark for the live pages.

Reads only (typed rows, money in integer fen). Days left come from billing/usage.py, the same figure the
renewal notices use; "low" is the notice threshold of domain-defaults §5 (below 30 days of average use or
below ¥50), so a highlighted row on the clerk's list is a household that is due a renewal notice.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import queries
from billing.const import METER_KIND, AccountKind, HoldStatus
from billing.usage import usage
from storage.models import (
    BillingAccount,
    BillingHold,
    BillingNotice,
    BillingSupplyChange,
    Building,
    Device,
    Estate,
    LedgerTransaction,
    MeterCharge,
    MeterReading,
    Outbox,
    Tariff,
    Unit,
)

LOW_BALANCE_FEN = 5000  # ¥50
LOW_DAYS = Decimal(30)


@dataclass(frozen=True, slots=True)
class AccountSummary:
    account_id: int
    estate_id: int
    estate_code: str
    unit_id: int
    unit_code: str
    building_code: str
    balance_fen: int
    daily_fen: Decimal | None  # average charge per day over the last 30 days
    days_left: Decimal | None  # days of that average the balance buys; None without an average
    held: int  # intervals waiting for a person to confirm

    @property
    def low(self) -> bool:
        """Due a renewal notice: below ¥50, or below 30 days of average use."""
        return self.balance_fen < LOW_BALANCE_FEN or (self.days_left is not None and self.days_left < LOW_DAYS)


@dataclass(frozen=True, slots=True)
class ReadingRow:
    device_code: str
    ts: datetime
    register: Decimal
    valve: str | None


@dataclass(frozen=True, slots=True)
class HoldRow:
    hold_id: int
    device_code: str
    kind: str
    status: str
    from_ts: datetime
    to_ts: datetime
    from_register: Decimal
    to_register: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class AccountDetail:
    summary: AccountSummary
    readings: list[ReadingRow]
    charges: list[MeterCharge]
    ledger: list[queries.LedgerLine]
    holds: list[HoldRow]


def _summaries(session: Session, where: object, at: datetime) -> list[AccountSummary]:
    held = (
        select(BillingHold.account_id, func.count().label("n"))
        .where(BillingHold.status == HoldStatus.held.value)
        .group_by(BillingHold.account_id)
        .subquery()
    )
    rows = session.execute(
        select(
            BillingAccount.id,
            BillingAccount.estate_id,
            Estate.code,
            Unit.id,
            Unit.code,
            Building.code,
            BillingAccount.balance_fen,
            func.coalesce(held.c.n, 0),
        )
        .join(Unit, Unit.id == BillingAccount.unit_id)
        .join(Building, Building.id == Unit.building_id)
        .join(Estate, Estate.id == BillingAccount.estate_id)
        .outerjoin(held, held.c.account_id == BillingAccount.id)
        .where(BillingAccount.kind == AccountKind.hot_water.value, where)  # type: ignore[arg-type]
        .order_by(Estate.code, Building.code, Unit.code, BillingAccount.id)
    ).all()
    rates = usage(session, [r[0] for r in rows], at)
    out = []
    for account_id, estate_id, estate_code, unit_id, unit_code, building_code, balance, n_held in rows:
        u = rates[account_id]
        out.append(
            AccountSummary(
                account_id,
                estate_id,
                estate_code,
                unit_id,
                unit_code,
                building_code,
                int(balance),
                u.daily_fen,
                u.days_left,
                int(n_held),
            )
        )
    return out


def account_summaries(session: Session, estate_ids: Collection[int], at: datetime) -> list[AccountSummary]:
    """Every household account of these estates, by building and unit, with days of use left as of `at`."""
    return _summaries(session, BillingAccount.estate_id.in_(list(estate_ids)), at)


def account_estate(session: Session, account_id: int) -> int | None:
    """The estate of a household account (None when there is no such household account)."""
    return session.scalar(
        select(BillingAccount.estate_id).where(
            BillingAccount.id == account_id, BillingAccount.kind == AccountKind.hot_water.value
        )
    )


def hold_estate(session: Session, hold_id: int) -> int | None:
    return session.scalar(
        select(BillingAccount.estate_id)
        .join(BillingHold, BillingHold.account_id == BillingAccount.id)
        .where(BillingHold.id == hold_id)
    )


def account_detail(session: Session, account_id: int, at: datetime, *, limit: int = 50) -> AccountDetail | None:
    """One household: its summary, the latest readings of its meters, charges, ledger lines and holds."""
    found = _summaries(session, BillingAccount.id == account_id, at)
    if not found:
        return None
    summary = found[0]
    readings = session.execute(
        select(Device.code, MeterReading.ts, MeterReading.register, MeterReading.valve)
        .join(Device, Device.id == MeterReading.device_id)
        .where(Device.unit_id == summary.unit_id, Device.kind == METER_KIND)
        .order_by(MeterReading.ts.desc())
        .limit(limit)
    ).all()
    holds = session.execute(
        select(
            BillingHold.id,
            Device.code,
            BillingHold.kind,
            BillingHold.status,
            BillingHold.from_ts,
            BillingHold.to_ts,
            BillingHold.from_register,
            BillingHold.to_register,
            BillingHold.reason,
        )
        .join(Device, Device.id == BillingHold.device_id)
        .where(BillingHold.account_id == account_id)
        .order_by(BillingHold.from_ts.desc())
    ).all()
    return AccountDetail(
        summary,
        [ReadingRow(*r) for r in readings],
        queries.charges(session, account_id, limit=limit),
        queries.ledger(session, account_id, limit=4 * limit),
        [HoldRow(*h) for h in holds],
    )


def estates_by_code(session: Session, estate_ids: Collection[int]) -> dict[str, int]:
    return {
        str(code): int(id_)
        for id_, code in session.execute(select(Estate.id, Estate.code).where(Estate.id.in_(list(estate_ids))))
    }


def change_mark(session: Session, estate_ids: Collection[int]) -> tuple[int, ...]:
    """Moves whenever anything the billing pages show of these estates changes (a posting, a hold, a tariff, a
    notice's status, a supply change, a valve command's delivery)."""
    ids = list(estate_ids)
    tx = session.scalar(select(func.max(LedgerTransaction.id)).where(LedgerTransaction.estate_id.in_(ids)))
    holds = session.execute(
        select(func.max(BillingHold.id), func.count().filter(BillingHold.status == HoldStatus.held.value))
        .join(BillingAccount, BillingAccount.id == BillingHold.account_id)
        .where(BillingAccount.estate_id.in_(ids))
    ).one()
    tariffs = session.scalar(select(func.max(Tariff.id)).where(Tariff.estate_id.in_(ids)))
    # The account page also shows notices, supply changes and their valve commands: a notice approved or sent,
    # a restriction, a meter's ack (written by ingest, which notifies no billing page) move the mark too.
    notices = session.execute(
        select(
            func.max(BillingNotice.id),
            func.count().filter(BillingNotice.status == "approved"),
            func.count().filter(BillingNotice.status == "sent"),
            func.count().filter(BillingNotice.status == "cancelled"),
        ).where(BillingNotice.estate_id.in_(ids))
    ).one()
    changes = session.scalar(
        select(func.max(BillingSupplyChange.id))
        .join(BillingAccount, BillingAccount.id == BillingSupplyChange.account_id)
        .where(BillingAccount.estate_id.in_(ids))
    )
    commands = session.execute(
        select(
            func.count().filter(Outbox.status == "sent"),
            func.count().filter(Outbox.status.in_(("acknowledged", "refused", "expired", "failed"))),
        )
        .join(Device, Device.id == Outbox.device_id)
        .where(Device.estate_id.in_(ids), Device.kind == METER_KIND)
    ).one()
    return (
        int(tx or 0),
        int(holds[0] or 0),
        int(holds[1] or 0),
        int(tariffs or 0),
        len(ids),
        *(int(n or 0) for n in notices),
        int(changes or 0),
        *(int(n or 0) for n in commands),
    )
