"""The billing API's behaviour: balances and days left, one account in full, top-ups with Idempotency-Key (floats
and strings refused, a reused key with another amount refused with a bilingual message), refunds and adjustments
by the logged-in user with a reason, tariffs never in the past, held intervals confirmed once, billing runs; and
1,000 concurrent top-ups over 100 keys through a real uvicorn server paying exactly 100 times.

Who may call what on whose estate is the role × route matrix (test_access.py); here the estate scope is shown
once more from the clerk's side.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from accounts.const import Role
from billing import queries
from core.settings import Settings
from steward.app import create_app
from steward.broker import free_port
from storage.models import AuditLog, LedgerTransaction, MeterReplacement, Payment
from tests.support.billing_world import (
    HOLD_REPLACED_AT,
    billing_place,
    fresh_account,
    new_hold,
)
from tests.support.clock import INSTANTS, pinned
from tests.support.world import World, bearer, make_estate

CLERK = Role.billing_clerk


def key() -> str:
    return uuid.uuid4().hex


def top_up(client: TestClient, world: World, account: int, body: Any, k: str | None, who: Role | str = CLERK) -> Any:
    headers = bearer(world, who) | ({"Idempotency-Key": k} if k else {})
    return client.post(f"/api/billing/accounts/{account}/top-ups", headers=headers, json=body)


def payments_of(world: World, account: int) -> list[Payment]:
    with Session(world.engine) as s:
        return list(s.scalars(select(Payment).where(Payment.account_id == account)))


def balance(world: World, account: int) -> tuple[int, int]:
    with Session(world.engine) as s:
        b = queries.balance(s, account)
        return b.cached_fen, b.derived_fen


# --- reads ---------------------------------------------------------------------------------------------------------


def test_the_account_list_has_balances_and_days_left(client: TestClient, api_world: World) -> None:
    place = billing_place(api_world.engine, api_world.estate)
    r = client.get(f"/api/billing/estates/{api_world.estate}/accounts?limit=500", headers=bearer(api_world, CLERK))
    assert r.status_code == 200, r.text
    [row] = [a for a in r.json()["items"] if a["account_id"] == place.account_id]
    assert isinstance(row["balance_fen"], int)
    assert row["balance_fen"] == balance(api_world, place.account_id)[0]
    # 0.05 m³ every 6 h at ¥25/m³ over the 20 days of readings: ¥5 a day averaged over the 30-day window.
    assert row["daily_fen"] > 0
    assert isinstance(row["daily_fen"], int)
    assert row["days_left"] is not None
    assert float(row["days_left"]) > 30
    assert row["low"] is False
    # A household with nothing paid is low (below ¥50) and has no average yet.
    empty = fresh_account(api_world.engine, api_world.estate)
    r = client.get(
        f"/api/billing/estates/{api_world.estate}/accounts?low_only=true&limit=500", headers=bearer(api_world, CLERK)
    )
    rows = {a["account_id"]: a for a in r.json()["items"]}
    assert place.account_id not in rows
    assert rows[empty]["low"] is True
    assert rows[empty]["days_left"] is None
    assert rows[empty]["balance_fen"] == 0


def test_the_account_detail_has_readings_charges_ledger_and_holds(client: TestClient, api_world: World) -> None:
    place = billing_place(api_world.engine, api_world.estate)
    hold = new_hold(api_world.engine, api_world.estate)
    r = client.get(f"/api/billing/accounts/{place.account_id}", headers=bearer(api_world, Role.steward))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["readings"]
    assert d["readings"][0]["device"].endswith("-HWB")
    assert d["charges"]
    assert all(isinstance(c["amount_fen"], int) and c["amount_fen"] > 0 for c in d["charges"])
    kinds = Counter(line["kind"] for line in d["ledger"])
    assert kinds["payment"] >= 1
    assert kinds["charge"] >= 1
    assert all(isinstance(line["amount_fen"], int) for line in d["ledger"])
    assert hold in {h["hold_id"] for h in d["holds"]}


def test_a_clerk_of_one_estate_gets_404_on_anothers(client: TestClient, api_world: World) -> None:
    other = billing_place(api_world.engine, api_world.other_estate)
    h = bearer(api_world, CLERK)
    assert client.get(f"/api/billing/estates/{api_world.other_estate}/accounts", headers=h).status_code == 404
    assert client.get(f"/api/billing/accounts/{other.account_id}", headers=h).status_code == 404
    before = balance(api_world, other.account_id), len(payments_of(api_world, other.account_id))
    r = top_up(client, api_world, other.account_id, {"amount_fen": 100}, key())
    assert r.status_code == 404
    assert r.json()["detail"] == "billing account not found / 未找到该热水账户"  # as for one that does not exist
    assert (balance(api_world, other.account_id), len(payments_of(api_world, other.account_id))) == before
    # Roles outside billing/policy.py: 403 before anything is looked up.
    r = top_up(client, api_world, other.account_id, {"amount_fen": 100}, key(), who=Role.engineer)
    assert r.status_code == 403


# --- top-ups -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [100.0, 99.5, "100", "100.00", None, True, 0, -5, 100_000_001], ids=repr)
def test_amounts_must_be_positive_integer_fen(client: TestClient, api_world: World, amount: Any) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    r = top_up(client, api_world, account, {"amount_fen": amount, "method": "counter"}, key())
    assert r.status_code == 422, r.text
    assert payments_of(api_world, account) == []


def test_a_top_up_needs_an_idempotency_key(client: TestClient, api_world: World) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    r = top_up(client, api_world, account, {"amount_fen": 100}, None)
    assert r.status_code == 422
    assert any("Idempotency-Key" in str(e["loc"]) for e in r.json()["detail"])
    assert payments_of(api_world, account) == []


def test_the_same_key_pays_once_and_another_amount_is_refused(client: TestClient, api_world: World) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    k = key()
    first = top_up(client, api_world, account, {"amount_fen": 5000, "method": "bank_transfer"}, k)
    assert first.status_code == 201, first.text
    assert first.json()["balance_fen"] == 5000
    assert first.json()["actor"] == "billing_clerk-user"
    again = top_up(client, api_world, account, {"amount_fen": 5000, "method": "bank_transfer"}, k)
    assert again.status_code == 200
    assert again.json()["payment_id"] == first.json()["payment_id"]
    assert again.json()["replayed"] is True
    other = top_up(client, api_world, account, {"amount_fen": 6000, "method": "bank_transfer"}, k)
    assert other.status_code == 409
    message = other.json()["detail"]
    assert "idempotency key" in message
    assert "¥50.00" in message
    assert "¥60.00" in message
    assert "幂等键" in message
    assert len(payments_of(api_world, account)) == 1
    assert balance(api_world, account) == (5000, 5000)
    with Session(api_world.engine) as s:
        audited = s.scalars(select(AuditLog).where(AuditLog.object == f"billing_account:{account}")).all()
    assert [a.action for a in audited] == ["billing.top_up"]


def test_refunds_and_adjustments_need_a_reason_and_record_the_user(client: TestClient, api_world: World) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    assert top_up(client, api_world, account, {"amount_fen": 10000}, key()).status_code == 201
    url = f"/api/billing/accounts/{account}"
    for missing in ({"amount_fen": 100}, {"amount_fen": 100, "reason": "   "}):
        assert client.post(f"{url}/refunds", headers=bearer(api_world, CLERK), json=missing).status_code == 422
        assert (
            client.post(f"{url}/adjustments", headers=bearer(api_world, Role.manager), json=missing).status_code == 422
        )
    # More than the balance is never refunded.
    r = client.post(f"{url}/refunds", headers=bearer(api_world, CLERK), json={"amount_fen": 10001, "reason": "退费"})
    assert r.status_code == 409
    assert "退款金额超过余额" in r.json()["detail"]
    r = client.post(f"{url}/refunds", headers=bearer(api_world, CLERK), json={"amount_fen": 3000, "reason": "退房退费"})
    assert r.status_code == 201, r.text
    assert (r.json()["actor"], r.json()["reason"], r.json()["balance_fen"]) == ("billing_clerk-user", "退房退费", 7000)
    # The clerk may not adjust (billing/policy.py); the manager may, either way.
    assert (
        client.post(
            f"{url}/adjustments", headers=bearer(api_world, CLERK), json={"amount_fen": 1, "reason": "x"}
        ).status_code
        == 403
    )
    r = client.post(
        f"{url}/adjustments", headers=bearer(api_world, Role.manager), json={"amount_fen": -500, "reason": "抄表差错"}
    )
    assert r.status_code == 201
    assert r.json()["actor"] == "manager-user"
    assert r.json()["balance_fen"] == 6500
    assert balance(api_world, account) == (6500, 6500)
    with Session(api_world.engine) as s:
        actions = [
            a.actor + ":" + a.action
            for a in s.scalars(
                select(AuditLog).where(AuditLog.object == f"billing_account:{account}").order_by(AuditLog.id)
            )
        ]
    assert actions[-2:] == ["billing_clerk-user:billing.refund", "manager-user:billing.adjustment"]


# --- tariffs, holds, runs ------------------------------------------------------------------------------------------


def test_tariffs_are_never_retroactive(client: TestClient, api_world: World) -> None:
    with Session(api_world.engine) as s, s.begin():
        code = make_estate(s).code
    h = bearer(api_world, "head-office")
    tiers = [{"up_to_m3": "10", "price_fen_per_m3": 2500}, {"price_fen_per_m3": 3200}]
    with pinned(INSTANTS["sh-1200"]):  # 2026-11-26 12:00 Shanghai
        for day in ("2026-11-25", "2026-11-26"):  # yesterday, and today from 00:00 (already under way)
            r = client.post(
                f"/api/billing/estates/{code}/tariffs", headers=h, json={"effective_from": day, "tiers": tiers}
            )
            assert r.status_code == 422, r.text
            assert "不得追溯" in r.json()["detail"]
        r = client.post(
            f"/api/billing/estates/{code}/tariffs", headers=h, json={"effective_from": "2026-11-27", "tiers": tiers}
        )
        assert r.status_code == 201, r.text
        start = datetime.fromisoformat(r.json()["effective_from"])
        assert start == datetime(2026, 11, 26, 16, tzinfo=UTC)  # 00:00 Shanghai
        # Amounts are integer fen per m³; a float price is refused.
        bad = [{"price_fen_per_m3": 25.5}]
        r = client.post(
            f"/api/billing/estates/{code}/tariffs", headers=h, json={"effective_from": "2026-12-01", "tiers": bad}
        )
        assert r.status_code == 422
    listed = client.get(f"/api/billing/estates/{code}/tariffs", headers=h).json()
    assert [t["tiers"] for t in listed] == [
        [{"up_to_m3": "10.000", "price_fen_per_m3": 2500}, {"up_to_m3": None, "price_fen_per_m3": 3200}]
    ]


def test_a_held_interval_is_confirmed_once(client: TestClient, api_world: World) -> None:
    hold = new_hold(api_world.engine, api_world.estate)
    h = bearer(api_world, Role.engineer)  # the engineer who swapped the meter records it
    listed = client.get(f"/api/billing/estates/{api_world.estate}/holds", headers=h).json()
    assert hold in {x["hold_id"] for x in listed}
    body = {"old_final_register": "120.5", "new_initial_register": "1.0", "replaced_at": HOLD_REPLACED_AT}
    # The old meter's final reading below the interval's start is refused.
    r = client.post(f"/api/billing/holds/{hold}/confirm", headers=h, json=body | {"old_final_register": "99"})
    assert r.status_code == 422
    r = client.post(f"/api/billing/holds/{hold}/confirm", headers=h, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["recorded_by"] == "engineer-user"
    assert client.post(f"/api/billing/holds/{hold}/confirm", headers=h, json=body).status_code == 409
    listed = client.get(f"/api/billing/estates/{api_world.estate}/holds", headers=h).json()
    assert hold not in {x["hold_id"] for x in listed}
    with Session(api_world.engine) as s:
        assert s.scalar(select(func.count()).select_from(MeterReplacement).where(MeterReplacement.hold_id == hold)) == 1


def test_a_billing_run_charges_up_to_now_never_the_future(client: TestClient, api_world: World) -> None:
    h = bearer(api_world, CLERK)
    url = f"/api/billing/estates/{api_world.estate}/runs"
    r = client.post(url, headers=h, json={"up_to": "2999-01-01T00:00:00+08:00"})
    assert r.status_code == 422
    r = client.post(url, headers=h, json={})
    assert r.status_code == 200, r.text
    assert r.json()["meters"] >= 1
    assert isinstance(r.json()["amount_fen"], int)
    again = client.post(url, headers=h, json={})
    assert again.json()["charges"] == 0  # idempotent: nothing charged twice


# --- 1,000 concurrent top-ups through a real server ------------------------------------------------------------


@pytest.fixture
def live_server(api_world: World) -> Iterator[str]:
    """The API in uvicorn on a free port, in a thread of this process, with a pool of its own."""
    engine = create_engine(api_world.engine.url.render_as_string(hide_password=False), pool_size=60, max_overflow=10)
    app = create_app(Settings(), engine=engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="billing-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        engine.dispose()


def test_1000_concurrent_top_ups_over_100_keys_pay_exactly_100_times(live_server: str, api_world: World) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    amount = 1234
    keys = [f"conc-{account}-{i:03d}-{uuid.uuid4().hex[:8]}" for i in range(100)]
    calls = [k for k in keys for _ in range(10)]
    random.Random(11).shuffle(calls)
    headers = bearer(api_world, CLERK)
    url = f"{live_server}/api/billing/accounts/{account}/top-ups"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(limits=limits, timeout=120) as http:

        def pay(k: str) -> tuple[str, int, int]:
            r = http.post(url, headers=headers | {"Idempotency-Key": k}, json={"amount_fen": amount})
            return k, r.status_code, r.json()["payment_id"] if r.status_code < 300 else -1

        with ThreadPoolExecutor(max_workers=48) as pool:
            results = list(pool.map(pay, calls))
    statuses = Counter(status for _, status, _ in results)
    assert statuses == {201: 100, 200: 900}, statuses
    by_key: dict[str, set[int]] = {}
    for k, _, pid in results:
        by_key.setdefault(k, set()).add(pid)
    assert all(len(ids) == 1 for ids in by_key.values())  # every retry of a key got the first payment
    assert len({pid for ids in by_key.values() for pid in ids}) == 100
    assert len(payments_of(api_world, account)) == 100
    assert balance(api_world, account) == (100 * amount, 100 * amount)
    with Session(api_world.engine) as s:
        n = s.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.key.in_([f"payment:{k}" for k in keys]))
        )
        assert n == 100
        assert queries.unbalanced_transactions(s) == []
    # A reused key with another amount, after the storm: refused with the clear message, nothing written.
    r = httpx.post(url, headers=headers | {"Idempotency-Key": keys[0]}, json={"amount_fen": amount + 1}, timeout=30)
    assert r.status_code == 409
    assert "幂等键" in r.json()["detail"]
    assert balance(api_world, account) == (100 * amount, 100 * amount)
