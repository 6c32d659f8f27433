"""Tariffs, the ledger, payments, refunds and adjustments, charging with holds (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from billing import charging, queries, service
from billing.pricing import TariffVersion as TV
from billing.pricing import Tier, amount_between, split, tier_value
from core.errors import Conflict, InvalidInput
from storage.models import AuditLog, BillingHold, LedgerEntry, MeterCharge, Payment
from tests.billing.factory import add_reading, flat_tariff, make_estate, unbalanced
from tests.support.clock import pinned

T0 = datetime.fromisoformat("2026-11-20T00:00:00+08:00")


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@pytest.fixture(autouse=True)
def _clock() -> object:
    with pinned(T0) as frozen:
        yield frozen


def charges(session: Session, device_id: int) -> list[MeterCharge]:
    return list(
        session.scalars(select(MeterCharge).where(MeterCharge.device_id == device_id).order_by(MeterCharge.from_ts))
    )


# --- pricing rules (pure) -----------------------------------------------------------------------------------


def test_tiers_price_the_months_volume_step_by_step() -> None:
    tiers = (Tier(Decimal(10), 2000), Tier(None, 3000))
    assert tier_value(tiers, Decimal(0), Decimal(4)) == 8000
    assert tier_value(tiers, Decimal(8), Decimal(4)) == 2 * 2000 + 2 * 3000
    assert tier_value(tiers, Decimal(12), Decimal(1)) == 3000


def test_cumulative_rounding_never_drifts() -> None:
    # 1,000 intervals of 0.001 m³ at ¥18.50/m³: 1.85 fen each; per-interval rounding would bill 2,000 fen.
    cum, total = Decimal(0), 0
    for _ in range(1000):
        total += amount_between(cum, cum + Decimal("1.85"))
        cum += Decimal("1.85")
    assert total == 1850


def test_an_interval_spanning_a_change_is_split_pro_rata_by_time() -> None:
    old, new = TV(1, h(-100), (Tier(None, 2000),)), TV(2, h(3), (Tier(None, 3000),))
    parts = split([old, new], h(0), h(4), Decimal("1.000"))
    assert [(t.id, v) for t, _, _, v in parts or []] == [(1, Decimal("0.750000")), (2, Decimal("0.250000"))]
    assert split([new], h(0), h(4), Decimal(1)) is None  # no tariff in force at the start: not priced


# --- tariffs ------------------------------------------------------------------------------------------------


def test_tariff_change_applies_from_its_date_only(session: Session) -> None:
    estate_id, [hh] = make_estate(session)
    flat_tariff(session, estate_id, 2000)
    service.add_tariff(session, estate_id=estate_id, effective_from=h(2), tiers=[Tier(None, 3000)], actor="zhou")
    add_reading(session, hh.device_id, h(0), "10.000")
    add_reading(session, hh.device_id, h(1), "11.000")  # 1 m³ before the change: ¥20
    add_reading(session, hh.device_id, h(3), "13.000")  # 2 m³ over 2 h spanning it: 1 m³ at ¥20, 1 m³ at ¥30
    add_reading(session, hh.device_id, h(4), "14.000")  # 1 m³ after: ¥30
    charging.bill(session, h(10), estate_id=estate_id)
    assert [c.amount_fen for c in charges(session, hh.device_id)] == [2000, 5000, 3000]
    assert queries.balance(session, hh.account_id).derived_fen == -10000
    # A version from before what has been charged would be retroactive: refused.
    with pytest.raises(Conflict):
        service.add_tariff(session, estate_id=estate_id, effective_from=h(3), tiers=[Tier(None, 1)], actor="zhou")
    service.add_tariff(session, estate_id=estate_id, effective_from=h(4), tiers=[Tier(None, 1)], actor="zhou")


def test_tiered_tariff_by_month_of_the_interval_end(session: Session) -> None:
    estate_id, [hh] = make_estate(session)
    service.add_tariff(
        session,
        estate_id=estate_id,
        effective_from=datetime.fromisoformat("2026-01-01T00:00:00+08:00"),
        tiers=[Tier(Decimal(5), 2000), Tier(None, 4000)],
        actor="zhou",
    )
    dec = datetime.fromisoformat("2026-12-01T00:00:00+08:00")
    for ts, reg in [(h(0), "0"), (h(1), "4.000"), (h(2), "7.000"), (dec + timedelta(hours=1), "9.000")]:
        add_reading(session, hh.device_id, ts, reg)
    charging.bill(session, dec + timedelta(days=1), estate_id=estate_id)
    # Nov: 4 m³ at ¥20, then 1 at ¥20 + 2 at ¥40; Dec starts the tiers again: 2 m³ at ¥20.
    assert [c.amount_fen for c in charges(session, hh.device_id)] == [8000, 2000 + 8000, 4000]


def test_tiers_must_be_well_formed(session: Session) -> None:
    estate_id, _ = make_estate(session)
    for tiers in (
        [],
        [Tier(Decimal(5), 1)],
        [Tier(None, 1), Tier(None, 2)],
        [Tier(Decimal(5), 1), Tier(Decimal(3), 1), Tier(None, 1)],
    ):
        with pytest.raises(InvalidInput):
            service.add_tariff(session, estate_id=estate_id, effective_from=h(0), tiers=tiers, actor="zhou")


# --- payments -----------------------------------------------------------------------------------------------


def test_payments_are_idempotent_and_a_reused_key_with_another_amount_is_refused(session: Session) -> None:
    _, [hh] = make_estate(session)
    first = service.record_payment(
        session, account_id=hh.account_id, amount_fen=5000, method="counter", idempotency_key="k1", actor="zhou"
    )
    again = service.record_payment(
        session, account_id=hh.account_id, amount_fen=5000, method="counter", idempotency_key="k1", actor="zhou"
    )
    assert first.created
    assert not again.created
    assert again.payment.id == first.payment.id
    with pytest.raises(Conflict, match="already used") as refused:
        service.record_payment(
            session, account_id=hh.account_id, amount_fen=6000, method="counter", idempotency_key="k1", actor="zhou"
        )
    assert refused.value.status_code == 409
    assert session.scalar(select(func.count()).select_from(Payment).where(Payment.account_id == hh.account_id)) == 1
    assert queries.balance(session, hh.account_id) == queries.Balance(hh.account_id, 5000, 5000)
    with pytest.raises(InvalidInput):
        service.record_payment(
            session, account_id=hh.account_id, amount_fen=50.0, method="online", idempotency_key="k2", actor="zhou"
        )  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        service.record_payment(
            session, account_id=hh.account_id, amount_fen=0, method="online", idempotency_key="k3", actor="zhou"
        )
    assert unbalanced(session) == []


def test_refund_and_adjustment_need_actor_and_reason_and_are_audited(session: Session) -> None:
    _, [hh] = make_estate(session)
    service.record_payment(
        session, account_id=hh.account_id, amount_fen=10000, method="bank_transfer", idempotency_key="r1", actor="zhou"
    )
    for actor, reason in [("", "moved out"), ("zhou", ""), ("zhou", "   ")]:
        with pytest.raises(InvalidInput):
            service.refund(
                session, account_id=hh.account_id, amount_fen=100, method="counter", actor=actor, reason=reason, key="x"
            )
        with pytest.raises(InvalidInput):
            service.adjust(session, account_id=hh.account_id, amount_fen=100, actor=actor, reason=reason, key="y")
    with pytest.raises(Conflict):
        service.refund(
            session, account_id=hh.account_id, amount_fen=10001, method="counter", actor="zhou", reason="退房", key="x"
        )
    service.refund(
        session, account_id=hh.account_id, amount_fen=3000, method="counter", actor="zhou", reason="退房退款", key="x"
    )
    service.refund(
        session, account_id=hh.account_id, amount_fen=3000, method="counter", actor="zhou", reason="退房退款", key="x"
    )
    service.adjust(session, account_id=hh.account_id, amount_fen=-500, actor="chen", reason="水电表故障补收", key="y")
    assert queries.balance(session, hh.account_id) == queries.Balance(hh.account_id, 6500, 6500)
    logged = session.execute(
        select(AuditLog.actor, AuditLog.action, AuditLog.detail["reason"].astext)
        .where(AuditLog.object == f"billing_account:{hh.account_id}")
        .order_by(AuditLog.id)
    ).all()
    assert [tuple(r) for r in logged] == [
        ("zhou", "billing.refund", "退房退款"),
        ("chen", "billing.adjustment", "水电表故障补收"),
    ]


def test_the_ledger_is_append_only_and_balanced_at_commit(session: Session) -> None:
    _, [hh] = make_estate(session)
    service.record_payment(
        session, account_id=hh.account_id, amount_fen=100, method="online", idempotency_key="a1", actor="zhou"
    )
    entry = session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == hh.account_id)).one()
    for stmt in (
        f"UPDATE ledger_entries SET amount_fen = 1 WHERE id = {entry.id}",
        f"DELETE FROM ledger_entries WHERE id = {entry.id}",
    ):
        with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
            session.execute(text(stmt))
    bad = text("INSERT INTO ledger_entries (transaction_id, account_id, amount_fen) VALUES (:t, :a, 7)")
    with session.begin_nested() as sp:
        session.execute(bad, {"t": entry.transaction_id, "a": hh.account_id})
        with pytest.raises(DBAPIError, match="does not balance"):
            session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        sp.rollback()
    session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the real postings pass the check
    session.execute(text("SET CONSTRAINTS ALL DEFERRED"))


# --- charging -----------------------------------------------------------------------------------------------


def test_rollover_is_charged_and_a_reset_is_held_until_confirmed_then_charged_once(session: Session) -> None:
    estate_id, [hh] = make_estate(session, register_max="1000.000")
    flat_tariff(session, estate_id, 2000)
    for ts, reg in [
        (h(0), "950.000"),
        (h(1), "999.000"),
        (h(2), "2.000"),
        (h(3), "500.000"),
        (h(4), "3.000"),
        (h(5), "4.500"),
    ]:
        add_reading(session, hh.device_id, ts, reg)
    result = charging.bill(session, h(10), estate_id=estate_id)
    # 49 m³, then the rollover 999 → 2 is 3 m³; 2 → 500 is 498 m³; 500 → 3 is a reset: held, billing stops.
    assert [(c.kind, c.volume_m3) for c in charges(session, hh.device_id)] == [
        ("normal", Decimal("49.000000")),
        ("rollover", Decimal("3.000000")),
        ("normal", Decimal("498.000000")),
    ]
    hold = session.scalars(select(BillingHold).where(BillingHold.device_id == hh.device_id)).one()
    assert (hold.status, hold.from_register, hold.to_register, result.meters[0].held) == (
        "held",
        Decimal("500.000"),
        Decimal("3.000"),
        hold.id,
    )
    assert [x.hold_id for x in queries.held_intervals(session, estate_ids={estate_id})] == [hold.id]
    before = queries.balance(session, hh.account_id).derived_fen
    charging.bill(session, h(10), estate_id=estate_id)  # still held: nothing more
    assert queries.balance(session, hh.account_id).derived_fen == before
    with pytest.raises(InvalidInput):  # the old meter cannot have ended below the interval's start
        service.confirm_hold(
            session,
            hold.id,
            old_final_register=Decimal("499"),
            new_initial_register=Decimal(0),
            replaced_at=h(3.5),
            actor="wang",
        )
    service.confirm_hold(
        session,
        hold.id,
        old_final_register=Decimal("501.250"),
        new_initial_register=Decimal("0.500"),
        replaced_at=h(3.5),
        actor="wang",
    )
    charging.bill(session, h(10), estate_id=estate_id)
    charging.bill(session, h(10), estate_id=estate_id)
    got = [(c.kind, c.volume_m3, c.hold_id) for c in charges(session, hh.device_id)][3:]
    # Held interval: (501.25 − 500) + (3 − 0.5) = 3.75 m³, once; then 3 → 4.5 = 1.5 m³.
    assert got == [("replacement", Decimal("3.750000"), hold.id), ("normal", Decimal("1.500000"), None)]
    assert (
        queries.balance(session, hh.account_id).derived_fen == -(49 + 3 + 498 + Decimal("3.75") + Decimal("1.5")) * 2000
    )
    assert (
        session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "billing.confirm_hold")) >= 1
    )
    assert unbalanced(session) == []


def test_late_and_duplicate_readings_never_charge_twice(session: Session) -> None:
    estate_id, [hh] = make_estate(session)
    flat_tariff(session, estate_id, 1000)
    add_reading(session, hh.device_id, h(0), "1.000")
    add_reading(session, hh.device_id, h(2), "3.000")
    charging.bill(session, h(10), estate_id=estate_id)
    assert not add_reading(session, hh.device_id, h(2), "3.000")  # a redelivered duplicate
    add_reading(session, hh.device_id, h(1), "2.000")  # late, inside the charged interval
    add_reading(session, hh.device_id, h(3), "4.000")
    charging.bill(session, h(10), estate_id=estate_id)
    assert sum(c.volume_m3 for c in charges(session, hh.device_id)) == 3
    assert queries.balance(session, hh.account_id).derived_fen == -3000


def test_no_tariff_means_not_charged_yet(session: Session) -> None:
    estate_id, [hh] = make_estate(session)
    add_reading(session, hh.device_id, h(0), "1.000")
    add_reading(session, hh.device_id, h(1), "2.000")
    result = charging.bill(session, h(10), estate_id=estate_id)
    assert result.meters[0].unpriced == h(0)
    assert charges(session, hh.device_id) == []
    flat_tariff(session, estate_id, 1000)
    assert charging.bill(session, h(10), estate_id=estate_id).amount_fen == 1000
