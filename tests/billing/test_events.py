"""Billing tells the live pages when money moves: ``NOTIFY steward_billing`` on commit (billing/events.py).

A committed charge, payment, refund or adjustment notifies once per estate and transaction (many charges of one
meter fold into one notification); a rolled-back one never does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from billing import charging, service
from storage.notify import BILLING_CHANNEL
from tests.billing.factory import add_reading, flat_tariff, make_estate
from tests.support.clock import pinned

T0 = datetime.fromisoformat("2026-11-01T00:00:00+08:00")


@pytest.fixture
def listener(engine: Engine) -> Iterator[psycopg.Connection]:
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {BILLING_CHANNEL}")
        yield conn


def received(conn: psycopg.Connection, wait_s: float = 1.0) -> list[dict[str, int]]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=wait_s, stop_after=None)]


def test_charges_and_payments_notify_on_commit_only(engine: Engine, listener: psycopg.Connection) -> None:
    with pinned(T0 + timedelta(days=10)), Session(engine) as s:
        with s.begin():
            estate_id, (h,) = make_estate(s, 1)
            flat_tariff(s, estate_id, 2500)
            for day in range(6):
                add_reading(s, h.device_id, T0 + timedelta(days=day), Decimal("0.5") * day)
        assert received(listener, 0.3) == []  # a tariff and readings are not money moving

        tx = s.begin()
        assert charging.charge_meter(s, h.device_id, T0 + timedelta(days=6)).charges == 5
        tx.rollback()
        assert received(listener, 0.5) == []  # rolled back: never announced

        with s.begin():
            assert charging.charge_meter(s, h.device_id, T0 + timedelta(days=6)).charges == 5
        assert received(listener) == [{"estate_id": estate_id}]  # five charges, one notification

        with s.begin():
            service.record_payment(
                s,
                account_id=h.account_id,
                amount_fen=5000,
                method="counter",
                idempotency_key=f"ev-{h.account_id}",
                actor="zhou",
            )
        assert received(listener) == [{"estate_id": estate_id}]
        with s.begin():  # a replayed key writes nothing and announces nothing
            service.record_payment(
                s,
                account_id=h.account_id,
                amount_fen=5000,
                method="counter",
                idempotency_key=f"ev-{h.account_id}",
                actor="zhou",
            )
        assert received(listener, 0.3) == []


def test_a_billing_run_and_ingest_charges_notify_too(engine: Engine, listener: psycopg.Connection) -> None:
    """The bulk paths (the run's coalesced charges, ingest's `charge_meters`) announce what they commit."""
    from sqlalchemy.orm import sessionmaker

    from billing.tasks import billing_run

    with pinned(T0 + timedelta(days=10)), Session(engine) as s:
        with s.begin():
            estate_id, (a, b) = make_estate(s, 2)
            flat_tariff(s, estate_id, 2500)
            for day in range(8):
                add_reading(s, a.device_id, T0 + timedelta(days=day), Decimal("0.5") * day)
                add_reading(s, b.device_id, T0 + timedelta(days=day), Decimal("0.25") * day)
        assert received(listener, 0.3) == []
        factory = sessionmaker(engine, expire_on_commit=False)
        run = billing_run(factory, T0 + timedelta(days=4), estate_id=estate_id)  # first run: baselines + charges
        assert run.charges > 0
        assert {"estate_id": estate_id} in received(listener)
        with s.begin():
            charged = charging.charge_meters(
                s, {a.device_id: T0 + timedelta(days=7), b.device_id: T0 + timedelta(days=7)}
            )
        assert sum(m.charges for m in charged) > 0
        assert received(listener) == [{"estate_id": estate_id}]
        assert billing_run(factory, T0 + timedelta(days=7), estate_id=estate_id).charges == 0
        assert received(listener, 0.3) == []  # nothing new charged: nothing announced
