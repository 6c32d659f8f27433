"""Billing services: accounts, tariffs, the double-entry ledger, payments, refunds, adjustments, holds.

Every function takes a Session and plain values, flushes and never commits (the caller owns the
transaction). Money is integer fen; a float is refused wherever money enters. Sign convention of the
ledger: debit +, credit −; a household account is a liability, so its balance is −Σ(entries), and
`BillingAccount.balance_fen` caches it (for the estate's own accounts the cache is Σ(entries)).

Postings (household H, estate accounts in brackets):
  payment     H −x, [cash_<method>] +x         refund      H +x, [cash_<method>] −x
  charge      H +x, [revenue_hot_water] −x     adjustment  H −x, [adjustments] +x  (x > 0 credits H)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing import events, notices, periods
from billing.const import (
    CASH_ACCOUNT,
    PERIOD_LOCK_SPACE,
    AccountKind,
    HoldKind,
    HoldStatus,
    PaymentMethod,
    TransactionKind,
)
from billing.pricing import Tier, validate_tiers
from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import (
    AuditLog,
    BillingAccount,
    BillingHold,
    Building,
    Estate,
    LedgerEntry,
    LedgerTransaction,
    MeterCharge,
    MeterReplacement,
    Payment,
    Tariff,
    TariffTier,
    Unit,
)


def _fen(amount: object, *, what: str = "amount", positive: bool = True) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInput(f"{what} must be integer fen, not {type(amount).__name__} / 金额必须是整数（分）")
    if positive and amount <= 0:
        raise InvalidInput(f"{what} must be positive / 金额必须大于零")
    if amount == 0:
        raise InvalidInput(f"{what} must not be zero / 金额不能为零")
    return amount


def _need(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise InvalidInput(f"{what} is required / 必须填写{ {'actor': '经办人', 'reason': '原因'}.get(what, what) }")
    return text.strip()


def audit(session: Session, actor: str, action: str, obj: str, detail: dict[str, Any] | None = None) -> None:
    """Append to the shared audit log (billing writes it directly: it may not import accounts/)."""
    session.add(AuditLog(actor=actor, action=action, object=obj, detail=detail or {}, at=clock.now()))


# --- accounts ---------------------------------------------------------------------------------------------


def unit_estate_id(session: Session, unit_id: int) -> int:
    estate_id = session.scalar(
        select(Building.estate_id).join(Unit, Unit.building_id == Building.id).where(Unit.id == unit_id)
    )
    if estate_id is None:
        raise NotFound(f"unit {unit_id} not found / 房屋不存在")
    return estate_id


def open_account(session: Session, unit_id: int, *, at: datetime | None = None) -> BillingAccount:
    """The unit's prepaid hot-water account, opened on first use (one per unit, race-safe)."""
    estate_id = unit_estate_id(session, unit_id)
    session.execute(
        insert(BillingAccount)
        .values(estate_id=estate_id, kind=AccountKind.hot_water.value, unit_id=unit_id, opened_at=at or clock.now())
        .on_conflict_do_nothing(index_elements=["unit_id"])
    )
    account = session.scalars(select(BillingAccount).where(BillingAccount.unit_id == unit_id)).one()
    return account


def estate_account(session: Session, estate_id: int, kind: AccountKind) -> BillingAccount:
    """One of the estate's own ledger accounts (cash, revenue, adjustments), opened on first use."""
    if kind == AccountKind.hot_water:
        raise InvalidInput("household accounts belong to a unit")
    stmt = select(BillingAccount).where(
        BillingAccount.estate_id == estate_id, BillingAccount.kind == kind.value, BillingAccount.unit_id.is_(None)
    )
    account = session.scalars(stmt).first()  # the common case (every ingest batch asks): one round trip
    if account is not None:
        return account
    session.execute(
        insert(BillingAccount)
        .values(estate_id=estate_id, kind=kind.value, unit_id=None, opened_at=clock.now())
        .on_conflict_do_nothing(index_elements=["estate_id", "kind"], index_where=BillingAccount.unit_id.is_(None))
    )
    return session.scalars(stmt).one()


def get_account(session: Session, account_id: int, *, lock: bool = False) -> BillingAccount:
    stmt = select(BillingAccount).where(BillingAccount.id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    account = session.scalars(stmt).one_or_none()
    if account is None or account.kind != AccountKind.hot_water:
        raise NotFound(f"billing account {account_id} not found / 热水账户不存在")
    return account


# --- the ledger -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Posted:
    transaction: LedgerTransaction
    created: bool  # False: the key was already posted; nothing was written


def post(
    session: Session,
    *,
    estate_id: int,
    kind: TransactionKind,
    key: str,
    entries: Sequence[tuple[int, int]],
    at: datetime,
    actor: str,
    reason: str = "",
) -> Posted:
    """Post one balanced transaction (account_id, signed fen) once per `key`; a repeated key writes nothing."""
    if len(entries) < 2 or sum(amount for _, amount in entries) != 0 or any(a == 0 for _, a in entries):
        raise InvalidInput("a ledger transaction needs ≥ 2 non-zero entries summing to zero / 借贷不平")
    # A posting dated inside a closed quarter (a back-dated payment) is booked at the first open quarter's
    # start, so no closed statement moves (billing/periods.py); the period lock, shared, waits out a close.
    session.execute(text("SELECT pg_advisory_xact_lock_shared(:s, :e)"), {"s": PERIOD_LOCK_SPACE, "e": estate_id})
    closed = periods.closed(session, [estate_id]).get(estate_id)
    if closed is not None and at < closed.until:
        at = closed.until
    tx_id = session.scalar(
        insert(LedgerTransaction)
        .values(estate_id=estate_id, kind=kind.value, key=key, at=at, actor=actor, reason=reason)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(LedgerTransaction.id)
    )
    if tx_id is None:
        existing = session.scalars(select(LedgerTransaction).where(LedgerTransaction.key == key)).one()
        return Posted(existing, False)
    # Cached balances move in the same transaction, in account order (no deadlock between posters).
    for account_id, amount in sorted(entries):
        session.add(LedgerEntry(transaction_id=tx_id, account_id=account_id, amount_fen=amount))
        kind_of = session.scalar(select(BillingAccount.kind).where(BillingAccount.id == account_id))
        delta = -amount if kind_of == AccountKind.hot_water else amount
        session.execute(
            update(BillingAccount)
            .where(BillingAccount.id == account_id)
            .values(balance_fen=BillingAccount.balance_fen + delta)
        )
    session.flush()
    tx = session.get(LedgerTransaction, tx_id)
    assert tx is not None
    return Posted(tx, True)


def derived_balance(session: Session, account_id: int) -> int:
    """The household's balance from its entries alone (−Σ), the figure the cache must equal."""
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(LedgerEntry.account_id == account_id)
    )
    return -int(total or 0)


# --- payments, refunds, adjustments -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentResult:
    payment: Payment
    created: bool  # False: the idempotency key was seen before with the same amount; nothing new


def record_payment(
    session: Session,
    *,
    account_id: int,
    amount_fen: int,
    method: PaymentMethod | str,
    idempotency_key: str,
    actor: str,
    received_at: datetime | None = None,
    provider_ref: str | None = None,
) -> PaymentResult:
    """Top up a household account once per idempotency key (the API's and the webhook's entry point).

    A key seen before with the same account, amount and method returns the first payment and writes
    nothing; with anything else it is refused (409) — a client must never reuse a key for another payment.
    """
    amount = _fen(amount_fen)
    method = PaymentMethod(method)
    key = _need(idempotency_key, "idempotency_key")
    if len(key) > 128:
        raise InvalidInput("idempotency_key is at most 128 characters")
    account = get_account(session, account_id)
    at = received_at or clock.now()
    cash = estate_account(session, account.estate_id, CASH_ACCOUNT[method])
    posted = post(
        session,
        estate_id=account.estate_id,
        kind=TransactionKind.payment,
        key=f"payment:{key}",
        entries=[(account.id, -amount), (cash.id, amount)],
        at=at,
        actor=_need(actor, "actor"),
    )
    if not posted.created:
        first = session.scalars(select(Payment).where(Payment.idempotency_key == key)).one()
        if (first.account_id, first.amount_fen, first.method) != (account.id, amount, method.value):
            raise Conflict(
                f"idempotency key {key!r} was already used for ¥{Decimal(first.amount_fen) / 100:.2f} "
                f"({first.method}) to account {first.account_id}; this request (¥{Decimal(amount) / 100:.2f}, "
                f"{method.value}, account {account.id}) is refused — use a new key for a new payment / "
                "该幂等键已用于另一笔缴费，请求被拒绝"
            )
        return PaymentResult(first, False)
    payment = Payment(
        estate_id=account.estate_id,
        account_id=account.id,
        method=method.value,
        idempotency_key=key,
        amount_fen=amount,
        transaction_id=posted.transaction.id,
        received_at=at,
        actor=actor,
        provider_ref=provider_ref,
    )
    session.add(payment)
    session.flush()
    events.changed(session, account.estate_id)
    # A restricted or suspended household that is paid up again is restored at once, in this transaction.
    notices.on_payment(session, account.id, at=clock.now(), actor=actor)
    return PaymentResult(payment, True)


def refund(
    session: Session,
    *,
    account_id: int,
    amount_fen: int,
    method: PaymentMethod | str,
    actor: str,
    reason: str,
    key: str,
    at: datetime | None = None,
) -> Posted:
    """Pay money back out of a household's balance (never beyond it); needs an actor and a reason; audited."""
    amount = _fen(amount_fen)
    actor, reason = _need(actor, "actor"), _need(reason, "reason")
    method = PaymentMethod(method)
    account = get_account(session, account_id, lock=True)
    existing = session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.key == f"refund:{key}"))
    if existing is None and amount > account.balance_fen:
        raise Conflict(
            f"refund ¥{Decimal(amount) / 100:.2f} exceeds the balance "
            f"¥{Decimal(account.balance_fen) / 100:.2f} / 退款金额超过余额"
        )
    cash = estate_account(session, account.estate_id, CASH_ACCOUNT[method])
    when = at or clock.now()
    posted = post(
        session,
        estate_id=account.estate_id,
        kind=TransactionKind.refund,
        key=f"refund:{key}",
        entries=[(account.id, amount), (cash.id, -amount)],
        at=when,
        actor=actor,
        reason=reason,
    )
    if posted.created:
        detail = {
            "amount_fen": amount,
            "method": method.value,
            "reason": reason,
            "transaction_id": posted.transaction.id,
        }
        audit(session, actor, "billing.refund", f"billing_account:{account.id}", detail)
        events.changed(session, account.estate_id)
    return posted


def adjust(
    session: Session,
    *,
    account_id: int,
    amount_fen: int,
    actor: str,
    reason: str,
    key: str,
    at: datetime | None = None,
) -> Posted:
    """A correction as a new transaction: `amount_fen` > 0 credits the household, < 0 debits it; audited."""
    amount = _fen(amount_fen, positive=False)
    actor, reason = _need(actor, "actor"), _need(reason, "reason")
    account = get_account(session, account_id, lock=True)
    other = estate_account(session, account.estate_id, AccountKind.adjustments)
    posted = post(
        session,
        estate_id=account.estate_id,
        kind=TransactionKind.adjustment,
        key=f"adjustment:{key}",
        entries=[(account.id, -amount), (other.id, amount)],
        at=at or clock.now(),
        actor=actor,
        reason=reason,
    )
    if posted.created:
        detail = {"amount_fen": amount, "reason": reason, "transaction_id": posted.transaction.id}
        audit(session, actor, "billing.adjustment", f"billing_account:{account.id}", detail)
        events.changed(session, account.estate_id)
    return posted


# --- tariffs ----------------------------------------------------------------------------------------------


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0, 0), ZoneInfo(tz))


def add_tariff(
    session: Session,
    *,
    estate_id: int,
    effective_from: date | datetime,
    tiers: Sequence[Tier],
    actor: str,
    note: str = "",
) -> Tariff:
    """A new price version from `effective_from` (a date means 00:00 estate time); never retroactive.

    Refused (409) when anything at or after that instant was already charged in the estate: a tariff
    may only price consumption that has not been billed yet. Versions are never edited.
    """
    try:
        validate_tiers(tiers)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound(f"estate {estate_id} not found")
    start = effective_from if isinstance(effective_from, datetime) else _local_midnight(effective_from, estate.timezone)
    if start.tzinfo is None:
        raise InvalidInput("effective_from needs a timezone")
    # Serialise with the billing run of the estate's meters: take the estate row lock.
    session.execute(select(Estate.id).where(Estate.id == estate_id).with_for_update())
    charged_to = session.scalar(
        select(func.max(MeterCharge.to_ts))
        .join(BillingAccount, BillingAccount.id == MeterCharge.account_id)
        .where(BillingAccount.estate_id == estate_id)
    )
    if charged_to is not None and charged_to > start:
        raise Conflict(
            f"consumption up to {charged_to.isoformat()} is already charged; a tariff from {start.isoformat()} "
            "would be retroactive / 新价格不得追溯已计费的用量"
        )
    tariff = Tariff(
        estate_id=estate_id, effective_from=start, created_by=_need(actor, "actor"), created_at=clock.now(), note=note
    )
    session.add(tariff)
    try:
        session.flush()
    except Exception as exc:  # the unique (estate, effective_from)
        raise Conflict(f"a tariff from {start.isoformat()} already exists / 该生效时间已有价格") from exc
    for seq, tier in enumerate(tiers):
        session.add(
            TariffTier(tariff_id=tariff.id, seq=seq, up_to_m3=tier.up_to_m3, price_fen_per_m3=tier.price_fen_per_m3)
        )
    session.flush()
    audit(session, actor, "billing.tariff", f"estate:{estate_id}", {"tariff_id": tariff.id, "from": start.isoformat()})
    return tariff


# --- holds ------------------------------------------------------------------------------------------------


def confirm_hold(
    session: Session,
    hold_id: int,
    *,
    old_final_register: Decimal,
    new_initial_register: Decimal,
    replaced_at: datetime,
    actor: str,
    kind: HoldKind | str = HoldKind.replacement,
    note: str = "",
) -> MeterReplacement:
    """Record the old meter's final and the new meter's initial register for a held interval.

    The interval is then billable as (old_final − from_register) + (to_register − new_initial), both
    parts ≥ 0; the next billing run charges it, once. Audited.
    """
    actor = _need(actor, "actor")
    for value in (old_final_register, new_initial_register):
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise InvalidInput("registers are non-negative Decimals / 读数必须为非负数")
    hold = session.scalars(select(BillingHold).where(BillingHold.id == hold_id).with_for_update()).one_or_none()
    if hold is None:
        raise NotFound(f"hold {hold_id} not found")
    if hold.status != HoldStatus.held:
        raise Conflict(f"hold {hold_id} is already confirmed / 已确认")
    if old_final_register < hold.from_register:
        raise InvalidInput(
            f"the old meter's final reading {old_final_register} is below the interval's start {hold.from_register}"
        )
    if new_initial_register > hold.to_register:
        raise InvalidInput(
            f"the new meter's initial reading {new_initial_register} is above the interval's end {hold.to_register}"
        )
    if not (hold.from_ts <= replaced_at <= hold.to_ts):
        raise InvalidInput("the replacement time must lie within the held interval / 换表时间须在暂停计费区间内")
    record = MeterReplacement(
        hold_id=hold.id,
        device_id=hold.device_id,
        kind=HoldKind(kind).value,
        old_final_register=old_final_register,
        new_initial_register=new_initial_register,
        replaced_at=replaced_at,
        recorded_by=actor,
        recorded_at=clock.now(),
        note=note,
    )
    session.add(record)
    hold.status = HoldStatus.confirmed.value
    session.flush()
    detail = {"old_final": str(old_final_register), "new_initial": str(new_initial_register), "kind": record.kind}
    audit(session, actor, "billing.confirm_hold", f"billing_hold:{hold.id}", detail)
    return record
