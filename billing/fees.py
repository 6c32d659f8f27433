"""Fees and deposits that are not hot water: an access card's fee and a renovation pass's deposit (issue 12).

They are paid at the desk when the card is issued, so they never touch a household's prepaid hot-water
balance: a card fee must not eat into hot water, and hot-water or property-fee arrears never touch a card.
Each is one balanced transaction between the estate's own ledger accounts, idempotent on its reference
(posting the same reference again writes nothing and returns the first transaction):

  fee             [cash_<method>] +x   [revenue_access_cards] −x
  deposit         [cash_<method>] +x   [deposits_held] −x
  deposit_refund  [deposits_held] +x   [cash_<method>] −x
  deposit_forfeit [deposits_held] +x   [revenue_forfeits] −x
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from billing.const import CASH_ACCOUNT, AccountKind, PaymentMethod, TransactionKind
from billing.service import Posted, _fen, _need, estate_account, post


def _post(
    session: Session,
    estate_id: int,
    kind: TransactionKind,
    debit: AccountKind,
    credit: AccountKind,
    amount_fen: int,
    reference: str,
    actor: str,
    reason: str,
    at: datetime,
) -> Posted:
    amount = _fen(amount_fen)
    into = estate_account(session, estate_id, debit).id
    out_of = estate_account(session, estate_id, credit).id
    return post(
        session,
        estate_id=estate_id,
        kind=kind,
        key=f"{kind.value}:{_need(reference, 'reference')}",
        entries=[(into, amount), (out_of, -amount)],
        at=at,
        actor=_need(actor, "actor"),
        reason=reason,
    )


def post_fee(
    session: Session,
    *,
    estate_id: int,
    amount_fen: int,
    reference: str,
    actor: str,
    at: datetime,
    reason: str = "",
    method: PaymentMethod | str = PaymentMethod.counter,
) -> Posted:
    """A card's fee received at the desk (工本费): cash in, card-fee revenue."""
    cash = CASH_ACCOUNT[PaymentMethod(method)]
    return _post(
        session,
        estate_id,
        TransactionKind.fee,
        cash,
        AccountKind.revenue_access_cards,
        amount_fen,
        reference,
        actor,
        reason,
        at,
    )


def hold_deposit(
    session: Session,
    *,
    estate_id: int,
    amount_fen: int,
    reference: str,
    actor: str,
    at: datetime,
    reason: str = "",
    method: PaymentMethod | str = PaymentMethod.counter,
) -> Posted:
    """A deposit received (押金): cash in, owed back until refunded or forfeited."""
    cash = CASH_ACCOUNT[PaymentMethod(method)]
    return _post(
        session,
        estate_id,
        TransactionKind.deposit,
        cash,
        AccountKind.deposits_held,
        amount_fen,
        reference,
        actor,
        reason,
        at,
    )


def refund_deposit(
    session: Session,
    *,
    estate_id: int,
    amount_fen: int,
    reference: str,
    actor: str,
    at: datetime,
    reason: str = "",
    method: PaymentMethod | str = PaymentMethod.counter,
) -> Posted:
    """A held deposit paid back (the pass was returned in time)."""
    cash = CASH_ACCOUNT[PaymentMethod(method)]
    return _post(
        session,
        estate_id,
        TransactionKind.deposit_refund,
        AccountKind.deposits_held,
        cash,
        amount_fen,
        reference,
        actor,
        reason,
        at,
    )


def forfeit_deposit(
    session: Session, *, estate_id: int, amount_fen: int, reference: str, actor: str, at: datetime, reason: str = ""
) -> Posted:
    """A held deposit kept (seeds/004: the pass was lost or not returned by the permit's end + grace)."""
    return _post(
        session,
        estate_id,
        TransactionKind.deposit_forfeit,
        AccountKind.deposits_held,
        AccountKind.revenue_forfeits,
        amount_fen,
        reference,
        actor,
        reason,
        at,
    )
