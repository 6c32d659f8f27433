"""Billing permissions: role sets and estate scope."""

from __future__ import annotations

from sqlalchemy.orm import Session

from billing.policy import ALLOWED, Action, may, may_on_estate
from storage.models import StaffEstate, StaffUser
from tests.billing.factory import make_estate


def test_role_sets() -> None:
    assert may("billing_clerk", Action.top_up)
    assert may("billing_clerk", Action.refund)
    assert not may("billing_clerk", Action.adjust)
    assert not may("billing_clerk", Action.manage_tariffs)
    assert may("steward", Action.view_accounts)
    assert not may("steward", Action.top_up)
    assert all(may("admin", a) for a in Action)
    assert not any(may(r, a) for r in ("viewer", "card_admin") for a in Action)
    assert set(ALLOWED) == set(Action)


def test_scoped_staff_act_only_on_their_estates(session: Session) -> None:
    mine, _ = make_estate(session)
    other, _ = make_estate(session)
    clerk = StaffUser(username="zhou-test-policy", password_hash="x", role="billing_clerk", active=True)
    session.add(clerk)
    session.flush()
    session.add(StaffEstate(user_id=clerk.id, estate_id=mine))
    session.flush()
    assert may_on_estate(session, clerk, Action.top_up, mine)
    assert not may_on_estate(session, clerk, Action.top_up, other)
    clerk.all_estates = True
    assert may_on_estate(session, clerk, Action.top_up, other)
    clerk.active = False
    assert not may_on_estate(session, clerk, Action.top_up, mine)
