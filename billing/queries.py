"""Billing reads for the API and the pages (typed rows; money in integer fen)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.const import AccountKind, HoldStatus, SupplyState
from storage.models import (
    BillingAccount,
    BillingHold,
    BillingNotice,
    BillingSupplyChange,
    BillingSupplyState,
    Building,
    Device,
    LedgerEntry,
    LedgerTransaction,
    MeterCharge,
    Outbox,
    Tariff,
    TariffTier,
    Unit,
)


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: int
    cached_fen: int  # billing_accounts.balance_fen
    derived_fen: int  # −Σ(entries): the truth the cache must equal


@dataclass(frozen=True, slots=True)
class AccountRow:
    account_id: int
    estate_id: int
    unit_id: int
    unit_code: str
    building_code: str
    balance_fen: int


@dataclass(frozen=True, slots=True)
class HeldInterval:
    hold_id: int
    account_id: int
    device_code: str
    kind: str
    from_ts: datetime
    to_ts: datetime
    from_register: Decimal
    to_register: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class LedgerLine:
    transaction_id: int
    kind: str
    at: datetime
    actor: str
    reason: str
    amount_fen: int  # from the household's side: + credits it, − debits it


@dataclass(frozen=True, slots=True)
class TariffRow:
    tariff_id: int
    effective_from: datetime
    tiers: tuple[tuple[Decimal | None, int], ...]  # (up_to_m3, fen per m³)


def balance(session: Session, account_id: int) -> Balance:
    cached = session.scalar(select(BillingAccount.balance_fen).where(BillingAccount.id == account_id))
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(LedgerEntry.account_id == account_id)
    )
    return Balance(account_id, int(cached or 0), -int(total or 0))


def balance_mismatches(session: Session) -> list[Balance]:
    """Household accounts whose cached balance differs from their entries (should always be empty)."""
    derived = (
        select(LedgerEntry.account_id, (-func.sum(LedgerEntry.amount_fen)).label("derived"))
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    rows = session.execute(
        select(BillingAccount.id, BillingAccount.balance_fen, func.coalesce(derived.c.derived, 0))
        .outerjoin(derived, derived.c.account_id == BillingAccount.id)
        .where(BillingAccount.kind == AccountKind.hot_water.value)
        .where(BillingAccount.balance_fen != func.coalesce(derived.c.derived, 0))
    ).all()
    return [Balance(int(a), int(c), int(d)) for a, c, d in rows]


def unbalanced_transactions(session: Session) -> list[int]:
    """Transactions whose entries do not sum to zero (the commit trigger makes this empty)."""
    return list(
        session.scalars(
            select(LedgerEntry.transaction_id)
            .group_by(LedgerEntry.transaction_id)
            .having((func.sum(LedgerEntry.amount_fen) != 0) | (func.count() < 2))
        )
    )


def accounts(session: Session, estate_ids: Collection[int]) -> list[AccountRow]:
    rows = session.execute(
        select(
            BillingAccount.id, BillingAccount.estate_id, Unit.id, Unit.code, Building.code, BillingAccount.balance_fen
        )
        .join(Unit, Unit.id == BillingAccount.unit_id)
        .join(Building, Building.id == Unit.building_id)
        .where(BillingAccount.estate_id.in_(list(estate_ids)))
        .order_by(Building.code, Unit.code)
    ).all()
    return [AccountRow(*r) for r in rows]


def held_intervals(session: Session, *, estate_ids: Collection[int]) -> list[HeldInterval]:
    """Intervals waiting for a person to record the old final and new initial readings."""
    rows = session.execute(
        select(
            BillingHold.id,
            BillingHold.account_id,
            Device.code,
            BillingHold.kind,
            BillingHold.from_ts,
            BillingHold.to_ts,
            BillingHold.from_register,
            BillingHold.to_register,
            BillingHold.reason,
        )
        .join(Device, Device.id == BillingHold.device_id)
        .where(BillingHold.status == HoldStatus.held.value, Device.estate_id.in_(list(estate_ids)))
        .order_by(BillingHold.from_ts)
    ).all()
    return [HeldInterval(*r) for r in rows]


def ledger(session: Session, account_id: int, *, limit: int = 200) -> list[LedgerLine]:
    rows = session.execute(
        select(
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.at,
            LedgerTransaction.actor,
            LedgerTransaction.reason,
            LedgerEntry.amount_fen,
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.account_id == account_id)
        .order_by(LedgerTransaction.at.desc(), LedgerTransaction.id.desc())
        .limit(limit)
    ).all()
    return [LedgerLine(t, k, at, actor, reason, -int(amount)) for t, k, at, actor, reason, amount in rows]


def charges(session: Session, account_id: int, *, limit: int = 500) -> list[MeterCharge]:
    return list(
        session.scalars(
            select(MeterCharge)
            .where(MeterCharge.account_id == account_id)
            .order_by(MeterCharge.to_ts.desc())
            .limit(limit)
        )
    )


def tariffs(session: Session, estate_id: int) -> list[TariffRow]:
    out = []
    for t in session.scalars(select(Tariff).where(Tariff.estate_id == estate_id).order_by(Tariff.effective_from)):
        tiers = session.execute(
            select(TariffTier.up_to_m3, TariffTier.price_fen_per_m3)
            .where(TariffTier.tariff_id == t.id)
            .order_by(TariffTier.seq)
        ).all()
        out.append(TariffRow(t.id, t.effective_from, tuple((u, p) for u, p in tiers)))
    return out


# --- supply state and its valve commands (the account page: what was done to the household's supply, and
# whether each meter acknowledged it) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValveCommand:
    outbox_id: int
    device_code: str | None
    action: str  # close / open
    status: str  # pending, sent, acknowledged, refused, expired, failed (worker/outbox.py)
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    last_error: str | None = None  # a refused command: the device's reason (ingest/writer.py)


@dataclass(frozen=True, slots=True)
class SupplyChangeRow:
    id: int
    at: datetime
    from_state: str
    to_state: str
    actor: str
    reason: str
    notice_number: str | None
    commands: list[ValveCommand]


@dataclass(frozen=True, slots=True)
class Supply:
    state: str  # normal / restricted / suspended
    since: datetime | None
    changes: list[SupplyChangeRow]  # newest first


def supply(session: Session, account_id: int, *, limit: int = 20) -> Supply:
    """The household's supply state and its latest changes, each with its valve commands' delivery status."""
    current = session.execute(
        select(BillingSupplyState.state, BillingSupplyState.since).where(BillingSupplyState.account_id == account_id)
    ).first()
    changes = session.execute(
        select(BillingSupplyChange, BillingNotice.number)
        .outerjoin(BillingNotice, BillingNotice.id == BillingSupplyChange.notice_id)
        .where(BillingSupplyChange.account_id == account_id)
        .order_by(BillingSupplyChange.at.desc(), BillingSupplyChange.id.desc())
        .limit(limit)
    ).all()
    ids = sorted({i for c, _ in changes for i in (c.outbox_ids or [])})
    commands: dict[int, ValveCommand] = {}
    if ids:
        for o, code in session.execute(
            select(Outbox, Device.code).outerjoin(Device, Device.id == Outbox.device_id).where(Outbox.id.in_(ids))
        ).all():
            commands[o.id] = ValveCommand(
                o.id,
                code,
                str((o.payload or {}).get("action", "")),
                o.status,
                o.attempts or 0,
                o.created_at,
                o.sent_at,
                o.acked_at,
                o.last_error,
            )
    rows = [
        SupplyChangeRow(
            c.id,
            c.at,
            c.from_state,
            c.to_state,
            c.actor,
            c.reason,
            number,
            [commands[i] for i in (c.outbox_ids or []) if i in commands],
        )
        for c, number in changes
    ]
    if current is None:
        return Supply(SupplyState.normal.value, None, rows)
    return Supply(str(current[0]), current[1], rows)
