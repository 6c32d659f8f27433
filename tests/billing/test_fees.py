"""billing/fees.py: card fees and renovation deposits as balanced, idempotent postings between estate accounts."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import fees
from billing.const import AccountKind
from billing.service import estate_account
from core.errors import InvalidInput
from storage.models import BillingAccount, LedgerEntry, LedgerTransaction
from tests.billing.factory import make_estate
from tests.support.clock import SH

AT = datetime(2026, 12, 1, 10, 0, tzinfo=SH)


def balances(session: Session, estate_id: int) -> dict[str, int]:
    rows = session.execute(
        select(BillingAccount.kind, BillingAccount.balance_fen).where(BillingAccount.estate_id == estate_id)
    )
    return {kind: bal for kind, bal in rows if bal}


def test_fee_deposit_refund_forfeit(session: Session) -> None:
    estate_id, households = make_estate(session, households=1)
    hot_water = households[0].account_id
    fees.post_fee(session, estate_id=estate_id, amount_fen=2000, reference="card:1", actor="desk", at=AT)
    fees.hold_deposit(
        session, estate_id=estate_id, amount_fen=3000, reference="card:2", actor="desk", at=AT, method="online"
    )
    fees.hold_deposit(session, estate_id=estate_id, amount_fen=3000, reference="card:3", actor="desk", at=AT)
    fees.refund_deposit(
        session, estate_id=estate_id, amount_fen=3000, reference="card:2", actor="desk", at=AT, method="online"
    )
    fees.forfeit_deposit(session, estate_id=estate_id, amount_fen=3000, reference="card:3", actor="system", at=AT)
    assert balances(session, estate_id) == {
        "cash_counter": 5000,
        "revenue_access_cards": -2000,
        "revenue_forfeits": -3000,
    }
    # Every transaction balances; the household's hot-water account is never touched.
    sums = session.execute(
        select(LedgerTransaction.kind, func.sum(LedgerEntry.amount_fen))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.estate_id == estate_id)
        .group_by(LedgerTransaction.id, LedgerTransaction.kind)
    ).all()
    assert sorted(k for k, _ in sums) == ["deposit", "deposit", "deposit_forfeit", "deposit_refund", "fee"]
    assert {int(total) for _, total in sums} == {0}
    assert session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.account_id == hot_water)) == 0
    assert estate_account(session, estate_id, AccountKind.deposits_held).balance_fen == 0


def test_a_reference_posts_once(session: Session) -> None:
    estate_id, _ = make_estate(session, households=1)
    first = fees.post_fee(session, estate_id=estate_id, amount_fen=500, reference="card:9", actor="desk", at=AT)
    again = fees.post_fee(session, estate_id=estate_id, amount_fen=500, reference="card:9", actor="desk", at=AT)
    assert first.created
    assert not again.created
    assert again.transaction.id == first.transaction.id
    assert balances(session, estate_id) == {"cash_counter": 500, "revenue_access_cards": -500}


@pytest.mark.parametrize("amount", [0, -5, 5.0, True])
def test_amounts_are_positive_integer_fen(session: Session, amount: object) -> None:
    estate_id, _ = make_estate(session, households=1)
    with pytest.raises(InvalidInput):
        fees.post_fee(session, estate_id=estate_id, amount_fen=amount, reference="x", actor="desk", at=AT)  # type: ignore[arg-type]
