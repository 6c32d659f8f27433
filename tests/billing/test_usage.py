"""The average daily charge and the days of hot water a balance buys (billing/usage.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from billing import charging, service, usage
from tests.billing.factory import add_reading, flat_tariff, make_estate
from tests.support.clock import pinned

T0 = datetime.fromisoformat("2026-11-01T00:00:00+08:00")


@pytest.fixture(autouse=True)
def _clock() -> object:
    with pinned(T0 + timedelta(days=40)) as frozen:
        yield frozen


def test_average_over_the_window_and_days_left(session: Session) -> None:
    estate_id, (busy, idle) = make_estate(session, 2)
    flat_tariff(session, estate_id, 2500)  # ¥25.00 per m³
    # busy: 0.2 m³ a day for 30 days (¥5.00 a day) ending at day 40.
    for day in range(10, 41):
        add_reading(session, busy.device_id, T0 + timedelta(days=day), Decimal("0.2") * (day - 10))
    charging.charge_meter(session, busy.device_id, T0 + timedelta(days=40))
    service.record_payment(
        session, account_id=busy.account_id, amount_fen=12_345, method="counter", idempotency_key="u1", actor="zhou"
    )
    got = usage.usage(session, [busy.account_id, idle.account_id], T0 + timedelta(days=40))
    assert got[busy.account_id].daily_fen == Decimal(500)
    balance = got[busy.account_id].balance_fen
    assert balance == 12_345 - 30 * 500
    assert got[busy.account_id].days_left == Decimal(0)  # spent more than paid
    assert got[idle.account_id].daily_fen is None
    assert got[idle.account_id].days_left is None
    # Twenty days on with no use, the average halves (window is the whole 30 days).
    later = usage.usage(session, [busy.account_id], T0 + timedelta(days=55))
    assert later[busy.account_id].daily_fen == Decimal(15 * 500) / 30


def test_days_left_rounds_to_a_tenth_and_needs_a_timezone(session: Session) -> None:
    assert usage.Usage(1, 1000, Decimal(300)).days_left == Decimal("3.3")
    assert usage.Usage(1, 1000, Decimal(0)).days_left is None
    with pytest.raises(ValueError, match="timezone"):
        usage.usage(session, [1], datetime.fromisoformat("2026-11-01T00:00:00"))


def test_a_young_account_is_averaged_over_its_age_but_at_least_a_day(session: Session) -> None:
    estate_id, (hh,) = make_estate(session, 1)  # opened 2026-11-01 00:00
    flat_tariff(session, estate_id, 2500)
    for day in range(0, 4):  # 0.2 m³ (¥5.00) a day for three days
        add_reading(session, hh.device_id, T0 + timedelta(days=day), Decimal("0.2") * day)
    charging.charge_meter(session, hh.device_id, T0 + timedelta(days=3))
    # Three days old: ¥15.00 over 3 days, not over 30.
    assert usage.usage(session, [hh.account_id], T0 + timedelta(days=3))[hh.account_id].daily_fen == Decimal(500)
    # Six hours old with a day's use already charged: at least one day, so ¥5.00 a day, not ¥20.00.
    young = usage.usage(session, [hh.account_id], T0 + timedelta(hours=6))
    assert young[hh.account_id].daily_fen is None  # nothing charged by then
    charging_at = T0 + timedelta(days=1)
    assert usage.usage(session, [hh.account_id], charging_at)[hh.account_id].daily_fen == Decimal(500)
