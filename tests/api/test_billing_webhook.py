"""The signed payment webhook: a good signature pays once per provider transaction id; a bad or missing signature,
an unknown provider or a stale timestamp is 401 and writes nothing; an unknown account is 404 and writes nothing.

The clock is pinned (the timestamp tolerance is judged against `core.clock`); the app is the API tests' one,
built with the test provider's secret (tests/api/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.routes.billing_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from storage.models import AuditLog, LedgerEntry, LedgerTransaction, Payment
from tests.support.billing_world import WEBHOOK_PROVIDER, WEBHOOK_SECRET, fresh_account
from tests.support.clock import INSTANTS, FrozenClock, pinned
from tests.support.world import World

URL = f"/api/billing/webhook/{WEBHOOK_PROVIDER}"


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    with pinned(INSTANTS["sh-2001"]) as c:
        yield c


def notification(account: int, amount: Any = 8800, txn: str | None = None) -> bytes:
    body = {"transaction_id": txn or uuid.uuid4().hex, "account_id": account, "amount_fen": amount}
    return json.dumps(body, separators=(",", ":")).encode()


def post(
    client: TestClient,
    raw: bytes,
    stamp: int,
    *,
    secret: str = WEBHOOK_SECRET,
    signature: str | None = None,
    url: str = URL,
) -> Any:
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: signature if signature is not None else sign(secret, stamp, raw),
    }
    return client.post(url, content=raw, headers=headers)


def written(world: World) -> tuple[int, int, int]:
    """Rows in payments, ledger transactions and ledger entries (all of them: a refusal writes none anywhere)."""
    with Session(world.engine) as s:
        return (
            int(s.scalar(select(func.count()).select_from(Payment)) or 0),
            int(s.scalar(select(func.count()).select_from(LedgerTransaction)) or 0),
            int(s.scalar(select(func.count()).select_from(LedgerEntry)) or 0),
        )


def test_a_good_signature_pays(client: TestClient, api_world: World, frozen: FrozenClock) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    txn = "4200001234" + uuid.uuid4().hex[:12]
    r = post(client, notification(account, 8800, txn), int(frozen().timestamp()))
    assert r.status_code == 200, r.text
    assert r.json()["replayed"] is False
    assert r.json()["balance_fen"] == 8800
    with Session(api_world.engine) as s:
        [p] = s.scalars(select(Payment).where(Payment.account_id == account)).all()
        assert (p.method, p.provider_ref, p.amount_fen, p.actor) == ("online", txn, 8800, f"webhook:{WEBHOOK_PROVIDER}")
        assert p.received_at == frozen()
        audit = s.scalars(select(AuditLog).where(AuditLog.object == f"billing_account:{account}")).one()
        assert audit.action == "billing.webhook_payment"


def test_a_replay_pays_once(client: TestClient, api_world: World, frozen: FrozenClock) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    raw = notification(account, 5000)
    first = post(client, raw, int(frozen().timestamp()))
    frozen.advance(timedelta(seconds=40))  # the provider retries a little later, re-signing with a new timestamp
    again = post(client, raw, int(frozen().timestamp()))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["payment_id"] == first.json()["payment_id"]
    assert again.json()["replayed"] is True
    assert again.json()["balance_fen"] == 5000
    with Session(api_world.engine) as s:
        assert s.scalar(select(func.count()).select_from(Payment).where(Payment.account_id == account)) == 1
    # The same transaction id with another amount is refused, not paid.
    other = json.loads(raw) | {"amount_fen": 5001}
    r = post(client, json.dumps(other).encode(), int(frozen().timestamp()))
    assert r.status_code == 409


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "tampered body", "no signature", "garbage signature", "bare hex", "other scheme"],
)
def test_a_bad_signature_is_401_and_writes_nothing(
    client: TestClient, api_world: World, frozen: FrozenClock, case: str
) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    stamp = int(frozen().timestamp())
    raw = notification(account)
    good = sign(WEBHOOK_SECRET, stamp, raw)
    before = written(api_world)
    if case == "wrong secret":
        r = post(client, raw, stamp, secret="not-the-secret-0123456789")
    elif case == "tampered body":
        r = post(client, notification(account, 880000), stamp, signature=good)  # signed for ¥88, claims ¥8,800
    elif case == "no signature":
        r = client.post(URL, content=raw, headers={"Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp)})
    elif case == "garbage signature":
        r = post(client, raw, stamp, signature="v1=" + "0" * 64)
    elif case == "bare hex":
        r = post(client, raw, stamp, signature=good.removeprefix("v1="))
    else:
        r = post(client, raw, stamp, signature="v0=" + good.removeprefix("v1="))
    assert r.status_code == 401, r.text
    assert written(api_world) == before


@pytest.mark.parametrize("offset_s", [-301, 301, -86_400])
def test_a_stale_timestamp_is_401_even_when_signed(
    client: TestClient, api_world: World, frozen: FrozenClock, offset_s: int
) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    before = written(api_world)
    r = post(client, notification(account), int(frozen().timestamp()) + offset_s)
    assert r.status_code == 401
    assert "timestamp" in r.json()["detail"]
    assert written(api_world) == before
    # At the edge of the tolerance it is accepted.
    r = post(client, notification(account), int(frozen().timestamp()) - 300)
    assert r.status_code == 200, r.text


def test_an_old_signature_cannot_be_replayed_with_a_fresh_timestamp(
    client: TestClient, api_world: World, frozen: FrozenClock
) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    raw = notification(account)
    old = int(frozen().timestamp()) - 3600
    before = written(api_world)
    r = post(client, raw, int(frozen().timestamp()), signature=sign(WEBHOOK_SECRET, old, raw))
    assert r.status_code == 401
    assert written(api_world) == before


def test_an_unknown_provider_is_401(client: TestClient, api_world: World, frozen: FrozenClock) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    before = written(api_world)
    r = post(client, notification(account), int(frozen().timestamp()), url="/api/billing/webhook/nobodypay")
    assert r.status_code == 401
    assert written(api_world) == before


def test_an_unknown_account_is_404_and_recorded_nowhere(
    client: TestClient, api_world: World, frozen: FrozenClock
) -> None:
    before = written(api_world)
    r = post(client, notification(2_000_000_000), int(frozen().timestamp()))
    assert r.status_code == 404
    assert written(api_world) == before


@pytest.mark.parametrize("amount", [88.0, "8800", 0, -1])
def test_a_signed_body_still_needs_integer_fen(
    client: TestClient, api_world: World, frozen: FrozenClock, amount: Any
) -> None:
    account = fresh_account(api_world.engine, api_world.estate)
    before = written(api_world)
    r = post(client, notification(account, amount), int(frozen().timestamp()))
    assert r.status_code == 422
    assert written(api_world) == before


def test_the_module_documents_the_headers_and_body() -> None:
    import api.routes.billing_webhook as hook

    doc = hook.__doc__ or ""
    assert TIMESTAMP_HEADER in doc
    assert SIGNATURE_HEADER in doc
    assert all(field in doc for field in ("transaction_id", "account_id", "amount_fen", "HMAC-SHA256"))
