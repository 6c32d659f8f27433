"""Online-payment notifications: ``POST /api/billing/webhook/{provider}``, opened only by a signature.

No login: the payment provider's server calls it. What opens it is an HMAC-SHA256 signature made with the
provider's own secret (settings ``STEWARD_PAYMENT_WEBHOOK_SECRETS``, a JSON map ``{"<provider>": "<secret>"}``).

Request
  Headers
    ``X-Steward-Timestamp``: the time of sending, whole Unix seconds (e.g. ``1796349600``);
    ``X-Steward-Signature``: ``v1=`` + lowercase hex of HMAC-SHA256(secret, ``<timestamp>`` + ``.`` + raw body),
    computed over the exact bytes sent (the body is never re-serialised before checking).
  Body (JSON, UTF-8)::

    {"transaction_id": "4200001234202612040001",  # the provider's id of the payment: the idempotency key
     "account_id": 42,                             # the household's hot-water account (on the payment order)
     "amount_fen": 10000,                          # integer fen (¥100.00); a float or string is refused
     "paid_at": "2026-12-04T10:00:00+08:00"}       # optional; default: when the notification arrives

Answers
  200 ``{"payment_id", "replayed", "balance_fen"}``: paid; a replay of a paid ``transaction_id`` pays nothing
  again and answers the same payment (``replayed: true``).
  401: unknown provider, missing or wrong signature, or a timestamp more than
  ``STEWARD_PAYMENT_WEBHOOK_TOLERANCE_S`` (300 s) from the server's clock — nothing is written.
  404: no such household account — nothing is written. 409: the transaction id was paid with another amount or
  account. 422: a body that does not match the schema (checked only after the signature).

The signature is compared in constant time (``hmac.compare_digest``); the timestamp is inside the signed text,
so an old notification cannot be replayed with a fresh timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from accounts import service as accounts
from api.routes.tickets import BodyTime
from api.schemas import Input
from billing import service
from billing.const import PaymentMethod
from core import clock
from core.settings import Settings
from web.deps import SessionDep
from web.errors import NotAuthenticated, error_responses

TIMESTAMP_HEADER = "X-Steward-Timestamp"
SIGNATURE_HEADER = "X-Steward-Signature"
SCHEME = "v1="

router = APIRouter(prefix="/api/billing/webhook", tags=["billing"])
Provider = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,24}$", description="payment provider, e.g. wechatpay")]


def sign(secret: str, timestamp: int | str, raw_body: bytes) -> str:
    """The ``X-Steward-Signature`` value for a body (providers and tests sign the same way)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


class PaymentNotificationIn(Input):
    transaction_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="the provider's payment id")
    account_id: int = Field(ge=1, le=2_147_483_647)
    amount_fen: int = Field(gt=0, le=100_000_000, description="integer fen")
    paid_at: BodyTime | None = None


class WebhookOut(BaseModel):
    payment_id: int
    replayed: bool
    balance_fen: int


_REFUSED = "invalid or missing signature / 签名无效"


async def verified_provider(
    request: Request,
    provider: Provider,
    timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER, description="Unix seconds")] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, description="v1=<hex HMAC-SHA256>")] = None,
) -> str:
    """The provider, once the signature over the raw body and the timestamp are good; 401 otherwise."""
    settings: Settings = request.app.state.settings
    secret = settings.payment_webhook_secrets.get(provider)
    if secret is None or not timestamp or not signature or not timestamp.isdigit() or len(timestamp) > 12:
        raise NotAuthenticated(_REFUSED)
    raw = await request.body()
    expected = sign(secret.get_secret_value(), timestamp, raw)
    # Compare first, in constant time, and only then look at the clock: a forger learns nothing from timing.
    good = hmac.compare_digest(expected.encode(), signature.strip().encode())
    skew = abs(clock.now().timestamp() - int(timestamp))
    if not good:
        raise NotAuthenticated(_REFUSED)
    if skew > settings.payment_webhook_tolerance_s:
        raise NotAuthenticated("stale timestamp / 通知时间戳超出允许范围")
    return provider


@router.post(
    "/{provider}",
    response_model=WebhookOut,
    responses=error_responses(400, 401, 404, 409, 422),
    openapi_extra={"x-signature": {"header": SIGNATURE_HEADER, "timestamp": TIMESTAMP_HEADER}},
)
async def payment_notification(
    body: PaymentNotificationIn,
    session: SessionDep,
    provider: Annotated[str, Depends(verified_provider)],
) -> WebhookOut:
    """A provider's signed notice of an online payment: pays the household once per transaction id."""
    # The work in one worker-thread call, the commit after it: see api/routes/billing.py top_up for why.
    return await run_in_threadpool(_pay, session, provider, body)


def _pay(session: Session, provider: str, body: PaymentNotificationIn) -> WebhookOut:
    actor = f"webhook:{provider}"
    at: datetime | None = body.paid_at
    result = service.record_payment(
        session,
        account_id=body.account_id,
        amount_fen=body.amount_fen,
        method=PaymentMethod.online,
        # ':' never appears in a clerk's Idempotency-Key, so a provider's id never meets a counter payment's.
        idempotency_key=f"{provider}:{body.transaction_id}",
        actor=actor,
        received_at=at,
        provider_ref=body.transaction_id,
    )
    p = result.payment
    if result.created:
        detail = {"payment_id": p.id, "amount_fen": p.amount_fen, "transaction_id": body.transaction_id}
        accounts.audit(session, actor, "billing.webhook_payment", f"billing_account:{p.account_id}", detail)
    balance = service.get_account(session, p.account_id).balance_fen
    return WebhookOut(payment_id=p.id, replayed=not result.created, balance_fen=balance)
