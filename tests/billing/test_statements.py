"""Quarterly statements, closing a quarter, and late readings booked in the open quarter (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from billing import charging, periods, service, statements
from billing.coalesce import charge_meters_coalesced
from billing.const import PERIOD_LOCK_SPACE
from billing.periods import Quarter
from core.errors import Conflict, InvalidInput
from storage.models import BillingPeriod, BillingStatement, LedgerTransaction, MeterCharge
from tests.billing.factory import add_reading, flat_tariff, make_estate, unbalanced
from tests.support.clock import pinned

SH = "+08:00"
Q3, Q4 = Quarter(2026, 3), Quarter(2026, 4)


def at(s: str) -> datetime:
    return datetime.fromisoformat(s + SH)


def statement(session: Session, account_id: int, period: str) -> BillingStatement:
    return session.scalars(
        select(BillingStatement).where(BillingStatement.account_id == account_id, BillingStatement.period == period)
    ).one()


def columns(row: BillingStatement) -> dict[str, Any]:
    return {c.name: getattr(row, c.key) for c in BillingStatement.__table__.columns}


def test_quarters_are_estate_local_and_parse_strictly() -> None:
    start, end = Q4.bounds("Asia/Shanghai")
    assert (start.isoformat(), end.isoformat()) == ("2026-10-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00")
    assert periods.parse(" 2026q1 ") == Quarter(2026, 1)
    assert Quarter(2026, 1).previous() == Quarter(2025, 4)
    # 2026-12-31 17:00 UTC is already 1 January in Shanghai: the next quarter.
    assert periods.quarter_of(datetime.fromisoformat("2026-12-31T17:00:00+00:00"), "Asia/Shanghai").label == "2027Q1"
    for bad in ("2026Q5", "2026-4", "Q4", "0000Q1", "9999Q4"):
        with pytest.raises(InvalidInput):
            periods.parse(bad)


def test_a_statement_adds_up_from_the_ledger_and_the_charges(session: Session) -> None:
    with pinned(at("2027-01-05T10:00:00")):
        estate_id, (hh, quiet) = make_estate(session, 2)
        flat_tariff(session, estate_id, 2000)
        for ts, reg in [
            ("2026-09-28T08:00:00", "100.000"),  # the baseline (Q3)
            ("2026-10-10T08:00:00", "101.000"),
            ("2026-11-10T08:00:00", "103.500"),
            ("2026-12-31T23:00:00", "105.000"),
            ("2027-01-01T01:00:00", "106.000"),  # ends in 2027Q1: not on the Q4 statement
        ]:
            add_reading(session, hh.device_id, at(ts), reg)
        service.record_payment(
            session,
            account_id=hh.account_id,
            amount_fen=20000,
            method="counter",
            idempotency_key="st-pay-1",
            actor="li",
            received_at=at("2026-10-05T09:00:00"),
        )
        charging.bill(session, at("2027-01-02T00:00:00"), estate_id=estate_id)
        service.refund(
            session,
            account_id=hh.account_id,
            amount_fen=1000,
            method="counter",
            actor="li",
            reason="moved out a tenant",
            key="st-ref-1",
            at=at("2026-11-01T09:00:00"),
        )
        service.adjust(
            session,
            account_id=hh.account_id,
            amount_fen=500,
            actor="wang",
            reason="goodwill",
            key="st-adj-1",
            at=at("2026-12-01T09:00:00"),
        )
        accounts = statements.household_accounts(session, estate_id, Q4.bounds("Asia/Shanghai")[1])
        assert accounts == sorted([hh.account_id, quiet.account_id])
        assert statements.write(session, estate_id, Q4, accounts) == 2
        s = statement(session, hh.account_id, "2026Q4")
        assert (s.opening_fen, s.payments_fen, s.refunds_fen, s.adjustments_fen) == (0, 20000, 1000, 500)
        assert (s.charges_fen, s.charges_m3, s.late_fen) == (10000, Decimal("5.000000"), 0)
        assert s.closing_fen == 9500
        assert (s.first_reading_at, s.first_register) == (at("2026-10-10T08:00:00"), Decimal("101.000"))
        assert (s.last_reading_at, s.last_register) == (at("2026-12-31T23:00:00"), Decimal("105.000"))
        assert [(t["volume_m3"], t["value_fen"]) for t in s.by_tariff] == [("5.000000", "10000.000000")]
        q = statement(session, quiet.account_id, "2026Q4")
        assert (q.opening_fen, q.charges_fen, q.closing_fen, q.first_reading_at) == (0, 0, 0, None)
        # A rerun changes nothing (the digest is the same), not even when it was written.
        before = columns(s)
        assert statements.write(session, estate_id, Q4, accounts) == 0
        session.expire_all()
        assert columns(statement(session, hh.account_id, "2026Q4")) == before
        assert unbalanced(session) == []


def test_a_late_reading_for_a_closed_quarter_is_booked_in_the_open_one(session: Session) -> None:
    with pinned(at("2026-10-10T10:00:00")) as clock:
        estate_id, (hh,) = make_estate(session, 1)
        flat_tariff(session, estate_id, 2000)
        add_reading(session, hh.device_id, at("2026-07-01T08:00:00"), "100.000")
        add_reading(session, hh.device_id, at("2026-09-20T08:00:00"), "110.000")
        charging.bill(session, clock.t, estate_id=estate_id)
        with pytest.raises(Conflict):  # a quarter that has not ended cannot close
            statements.close_period(session, estate_id, Q4, actor="li")
        closed = statements.close_period(session, estate_id, Q3, actor="li")
        assert (closed.status, closed.closed_by, closed.closed_at) == ("closed", "li", clock.t)
        q3 = statement(session, hh.account_id, "2026Q3")
        assert (q3.charges_fen, q3.closing_fen) == (20000, -20000)
        frozen = columns(q3)

        # The meter's gateway catches up: a reading dated in Q3, then one in Q4; ingest charges them.
        clock.set(at("2026-10-12T10:00:00"))
        add_reading(session, hh.device_id, at("2026-09-25T08:00:00"), "112.000")
        add_reading(session, hh.device_id, at("2026-10-05T08:00:00"), "115.000")
        (result,) = charging.charge_meters(session, {hh.device_id: at("2026-10-05T08:00:00")})
        assert result.charges == 2
        rows = session.scalars(
            select(MeterCharge).where(MeterCharge.device_id == hh.device_id).order_by(MeterCharge.from_ts)
        ).all()
        assert [(r.to_ts, r.booked_period) for r in rows] == [
            (at("2026-09-20T08:00:00"), None),
            (at("2026-09-25T08:00:00"), "2026Q4"),
            (at("2026-10-05T08:00:00"), None),
        ]
        late_tx = session.get(LedgerTransaction, rows[1].transaction_id)
        assert late_tx is not None
        assert late_tx.at == at("2026-10-01T00:00:00")
        # A payment back-dated into Q3 lands at Q4's start too.
        paid = service.record_payment(
            session,
            account_id=hh.account_id,
            amount_fen=5000,
            method="counter",
            idempotency_key="late-pay-1",
            actor="li",
            received_at=at("2026-09-29T09:00:00"),
        )
        assert session.get(LedgerTransaction, paid.payment.transaction_id).at == at("2026-10-01T00:00:00")  # type: ignore[union-attr]

        with pytest.raises(Conflict):  # a closed quarter's statements are final
            statements.write(session, estate_id, Q3, [hh.account_id])
        session.expire_all()
        assert columns(statement(session, hh.account_id, "2026Q3")) == frozen

        statements.write(session, estate_id, Q4, [hh.account_id])
        q4 = statement(session, hh.account_id, "2026Q4")
        assert q4.opening_fen == frozen["closing_fen"]
        assert (q4.late_fen, q4.late_m3, q4.charges_fen, q4.payments_fen) == (4000, Decimal("2.000000"), 6000, 5000)
        assert q4.late == [
            {
                "device": hh.device_code,
                "period": "2026Q3",
                "from": at("2026-09-20T08:00:00").isoformat(),
                "to": at("2026-09-25T08:00:00").isoformat(),
                "volume_m3": "2.000000",
                "amount_fen": 4000,
            }
        ]
        assert q4.closing_fen == -20000 - 4000 - 6000 + 5000
        assert unbalanced(session) == []


def test_quarters_close_in_order(session: Session) -> None:
    with pinned(at("2027-01-10T10:00:00")):
        estate_id, _ = make_estate(session, 1)
        periods.ensure(session, estate_id, Q3)
        with pytest.raises(Conflict, match="2026Q3"):
            statements.close_period(session, estate_id, Q4, actor="li")
        statements.close_period(session, estate_id, Q3, actor="li")
        statements.close_period(session, estate_id, Q4, actor="li")
        with pytest.raises(Conflict):
            statements.close_period(session, estate_id, Q4, actor="li")
        rows = session.scalars(select(BillingPeriod).where(BillingPeriod.estate_id == estate_id)).all()
        assert sorted((p.period, p.status) for p in rows) == [("2026Q3", "closed"), ("2026Q4", "closed")]


def test_the_due_quarter_is_the_last_one_ended_in_the_estates_time_zone() -> None:
    assert statements.due_quarter(at("2027-01-01T00:30:00"), "Asia/Shanghai") == Q4
    assert statements.due_quarter(at("2026-12-31T23:30:00"), "Asia/Shanghai") == Q3
    assert statements.due_quarter(at("2026-11-15T12:00:00") + timedelta(days=0), "Asia/Shanghai") == Q3


def test_a_quarter_being_closed_keeps_ingest_charging_out(session: Session, engine: Engine) -> None:
    """While a close holds the estate's period lock, ingest (try-locks) skips the estate's meters; after it, charges."""
    with pinned(at("2026-10-10T10:00:00")) as clock:
        estate_id, (hh,) = make_estate(session, 1)
        flat_tariff(session, estate_id, 2000)
        add_reading(session, hh.device_id, at("2026-09-01T08:00:00"), "1.000")
        add_reading(session, hh.device_id, at("2026-10-01T08:00:00"), "2.000")
        # (the session must not have charged yet: a charger holds the lock shared to its transaction's end)
        with engine.connect() as closer:
            closer.execute(text("SELECT pg_advisory_xact_lock(:s, :e)"), {"s": PERIOD_LOCK_SPACE, "e": estate_id})
            (skipped,) = charging.charge_meters(session, {hh.device_id: clock.t})
            assert (skipped.skipped, skipped.charges) == (True, 0)
            closer.rollback()
        (charged,) = charging.charge_meters(session, {hh.device_id: clock.t})
        assert (charged.skipped, charged.charges) == (False, 1)


def test_the_billing_runs_coalesced_path_books_a_late_reading_in_the_open_quarter(session: Session) -> None:
    with pinned(at("2026-10-20T10:00:00")):
        estate_id, (hh,) = make_estate(session, 1)
        flat_tariff(session, estate_id, 2000)
        add_reading(session, hh.device_id, at("2026-07-01T08:00:00"), "10.000")
        add_reading(session, hh.device_id, at("2026-08-01T08:00:00"), "11.000")
        charge_meters_coalesced(session, {hh.device_id: at("2026-10-01T00:00:00")})
        statements.close_period(session, estate_id, Q3, actor="li")
        for ts, reg in [
            ("2026-09-10T08:00:00", "12.000"),
            ("2026-09-20T08:00:00", "13.000"),
            ("2026-10-15T08:00:00", "15.000"),
        ]:
            add_reading(session, hh.device_id, at(ts), reg)
        charge_meters_coalesced(session, {hh.device_id: at("2026-10-20T00:00:00")})
        rows = session.scalars(
            select(MeterCharge).where(MeterCharge.device_id == hh.device_id).order_by(MeterCharge.from_ts)
        ).all()
        # One stretch per month: August's reading → 20 Sept (late, booked in Q4) and 20 Sept → 15 Oct.
        assert [(r.to_ts, r.volume_m3, r.booked_period) for r in rows] == [
            (at("2026-08-01T08:00:00"), Decimal("1.000000"), None),
            (at("2026-09-20T08:00:00"), Decimal("2.000000"), "2026Q4"),
            (at("2026-10-15T08:00:00"), Decimal("2.000000"), None),
        ]
        statements.write(session, estate_id, Q4, [hh.account_id])
        q4 = statement(session, hh.account_id, "2026Q4")
        assert (q4.opening_fen, q4.late_fen, q4.charges_fen, q4.closing_fen) == (-2000, 4000, 4000, -10000)
        assert unbalanced(session) == []
