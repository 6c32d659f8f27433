"""Prepaid hot-water billing: household balances with days of use left, one account in full, top-ups, refunds,
adjustments, tariffs, held intervals and billing runs.

Every route takes its permission from billing/policy.py (the pages ask it too): a role outside an action's set
gets 403; an object of an estate the caller does not act on is 404, like one that does not exist. Money is
integer fen in and out; a float or a string for an amount is refused (422). A top-up needs an
``Idempotency-Key`` header: the same key with the same amount returns the first payment (200), with another
amount or account it is refused (409) — a retried request never pays twice.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from accounts import service as accounts
from api.deps import EstateCode, ObjectId, PageDep
from api.routes.tickets import BodyTime
from api.schemas import NO_NUL, Input, Output, Page
from billing import desk, overview, policy, queries, service, tasks
from billing.const import PaymentMethod
from billing.policy import Action
from billing.pricing import Tier
from core import clock
from core.errors import InvalidInput, NotFound
from storage.models import StaffUser
from web.deps import CurrentUser, SessionDep
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/billing", tags=["billing"], responses=error_responses(401, 403, 404, 422))
CONFLICT = error_responses(400, 409)

MAX_FEN = 100_000_000  # ¥1,000,000: far above any household top-up; a bigger figure is a typo
Fen = Annotated[int, Field(gt=0, le=MAX_FEN, description="integer fen (分), e.g. 10000 = ¥100.00")]
SignedFen = Annotated[
    int, Field(ge=-MAX_FEN, le=MAX_FEN, description="integer fen; > 0 credits the household, < 0 debits it")
]
Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*\S[^\x00]*$")]
Register = Annotated[str, Field(pattern=r"^\d{1,12}(\.\d{1,6})?$", description="meter register in m³, e.g. 1234.567")]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="a fresh random key per payment (e.g. a UUID); a retry sends the same key",
    ),
]


def _day(value: Any) -> Any:
    # Strict models take no strings for dates: only YYYY-MM-DD here.
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return value
    return value


Day = Annotated[date, BeforeValidator(_day)]


def _allowed(action: Action) -> Any:
    def check(user: CurrentUser) -> StaffUser:
        if not policy.may(user.role, action):
            raise Forbidden("your role may not do this / 当前角色无此权限")
        return user

    return Depends(check)


Viewers = Annotated[StaffUser, _allowed(Action.view_accounts)]
TopUpStaff = Annotated[StaffUser, _allowed(Action.top_up)]
RefundStaff = Annotated[StaffUser, _allowed(Action.refund)]
AdjustStaff = Annotated[StaffUser, _allowed(Action.adjust)]
TariffStaff = Annotated[StaffUser, _allowed(Action.manage_tariffs)]
HoldStaff = Annotated[StaffUser, _allowed(Action.confirm_hold)]
RunStaff = Annotated[StaffUser, _allowed(Action.run_billing)]


# --- I/O models ----------------------------------------------------------------------------------------------------


class AccountOut(BaseModel):
    account_id: int
    estate: str
    unit_id: int
    unit: str
    building: str
    balance_fen: int
    daily_fen: int | None = Field(description="average charge per day over the last 30 days, fen; null: no use")
    days_left: str | None = Field(description='days of average use the balance buys, e.g. "12.5"; null: no use')
    low: bool = Field(description="due a renewal notice: below ¥50 or below 30 days of use")
    held: int = Field(description="intervals waiting for a meter replacement / reset to be confirmed")


class ReadingOut(BaseModel):
    device: str
    ts: datetime
    register_m3: str
    valve: str | None


class ChargeOut(Output):
    id: int
    device_id: int
    from_ts: datetime
    to_ts: datetime
    from_register: str
    to_register: str
    kind: str
    volume_m3: str
    amount_fen: int
    hold_id: int | None


class LedgerLineOut(BaseModel):
    transaction_id: int
    kind: str
    at: datetime
    actor: str
    reason: str
    amount_fen: int = Field(description="from the household's side: + credits it, − debits it")


class HoldOut(BaseModel):
    hold_id: int
    account_id: int
    device: str
    kind: str
    status: str
    from_ts: datetime
    to_ts: datetime
    from_register: str
    to_register: str
    reason: str


class AccountDetailOut(AccountOut):
    readings: list[ReadingOut]
    charges: list[ChargeOut]
    ledger: list[LedgerLineOut]
    holds: list[HoldOut]


class TopUpIn(Input):
    amount_fen: Fen
    method: Literal["counter", "bank_transfer"] = "counter"


class PaymentOut(BaseModel):
    payment_id: int
    account_id: int
    amount_fen: int
    method: str
    idempotency_key: str
    received_at: datetime
    actor: str
    replayed: bool = Field(description="true: this key was paid before; nothing new was written")
    balance_fen: int


class RefundIn(Input):
    amount_fen: Fen
    method: Literal["counter", "bank_transfer"] = "counter"
    reason: Reason


class AdjustIn(Input):
    amount_fen: SignedFen
    reason: Reason


class PostingOut(BaseModel):
    transaction_id: int
    kind: str
    at: datetime
    actor: str
    reason: str
    replayed: bool
    balance_fen: int


class TierIn(Input):
    up_to_m3: Register | None = Field(default=None, description="the month's volume this tier prices up to; null: last")
    price_fen_per_m3: Annotated[int, Field(ge=0, le=1_000_000)]


class TariffIn(Input):
    effective_from: Day = Field(description="YYYY-MM-DD, from 00:00 estate time; never in the past")
    tiers: list[TierIn] = Field(min_length=1, max_length=8)
    note: Annotated[str, Field(max_length=500, pattern=NO_NUL)] = ""


class TierOut(BaseModel):
    up_to_m3: str | None
    price_fen_per_m3: int


class TariffOut(BaseModel):
    tariff_id: int
    effective_from: datetime
    tiers: list[TierOut]


class ConfirmIn(Input):
    old_final_register: Register
    new_initial_register: Register
    replaced_at: BodyTime
    kind: Literal["replacement", "reset"] = "replacement"
    note: Annotated[str, Field(max_length=500, pattern=NO_NUL)] = ""


class ConfirmOut(BaseModel):
    hold_id: int
    replacement_id: int
    kind: str
    recorded_by: str


class RunIn(Input):
    up_to: BodyTime | None = Field(default=None, description="charge readings up to this time (default: now)")


class RunOut(BaseModel):
    meters: int
    charges: int
    amount_fen: int
    held: list[int] = Field(description="holds that stop a meter (confirm them, then run again)")


# --- helpers -------------------------------------------------------------------------------------------------------


def _fen_per_day(value: Decimal | None) -> int | None:
    return None if value is None else int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _account_out(a: overview.AccountSummary) -> dict[str, Any]:
    return {
        "account_id": a.account_id,
        "estate": a.estate_code,
        "unit_id": a.unit_id,
        "unit": a.unit_code,
        "building": a.building_code,
        "balance_fen": a.balance_fen,
        "daily_fen": _fen_per_day(a.daily_fen),
        "days_left": None if a.days_left is None else str(a.days_left),
        "low": a.low,
        "held": a.held,
    }


def _estate_id(session: Session, user: StaffUser, code: str, action: Action) -> int:
    """The estate the caller acts on, or 404 whether it does not exist or is not the caller's."""
    estate_id = overview.estates_by_code(session, accounts.visible_estate_ids(session, user)).get(code)
    if estate_id is None or not policy.may_on_estate(session, user, action, estate_id):
        raise NotFound("estate not found / 未找到该小区")
    return estate_id


def _account_estate(session: Session, user: StaffUser, account_id: int, action: Action) -> int:
    estate_id = overview.account_estate(session, account_id)
    if estate_id is None or not policy.may_on_estate(session, user, action, estate_id):
        raise NotFound("billing account not found / 未找到该热水账户")
    return estate_id


def _balance(session: Session, account_id: int) -> int:
    return service.get_account(session, account_id).balance_fen


def _hold_out(h: overview.HoldRow, account_id: int) -> HoldOut:
    return HoldOut(
        hold_id=h.hold_id,
        account_id=account_id,
        device=h.device_code,
        kind=h.kind,
        status=h.status,
        from_ts=h.from_ts,
        to_ts=h.to_ts,
        from_register=str(h.from_register),
        to_register=str(h.to_register),
        reason=h.reason,
    )


# --- reads ---------------------------------------------------------------------------------------------------------


@router.get("/estates/{code}/accounts", response_model=Page[AccountOut])
def list_accounts(
    code: EstateCode,
    session: ReadSessionDep,
    user: Viewers,
    page: PageDep,
    low_only: Annotated[bool, Query(description="only households due a renewal notice")] = False,
) -> dict[str, Any]:
    """Household hot-water accounts of an estate: balance in fen and days of use left (low balances flagged)."""
    estate_id = _estate_id(session, user, code, Action.view_accounts)
    rows = overview.account_summaries(session, [estate_id], clock.now())
    if low_only:
        rows = [r for r in rows if r.low]
    items = [_account_out(r) for r in rows[page.offset : page.offset + page.limit]]
    return {"items": items, "total": len(rows), "limit": page.limit, "offset": page.offset}


@router.get("/accounts/{account_id}", response_model=AccountDetailOut)
def get_account(account_id: ObjectId, session: ReadSessionDep, user: Viewers) -> dict[str, Any]:
    """One household account: latest readings, charges, ledger lines (newest first) and held intervals."""
    _account_estate(session, user, account_id, Action.view_accounts)
    detail = overview.account_detail(session, account_id, clock.now())
    if detail is None:
        raise NotFound("billing account not found / 未找到该热水账户")
    out = _account_out(detail.summary)
    out["readings"] = [
        ReadingOut(device=r.device_code, ts=r.ts, register_m3=str(r.register), valve=r.valve) for r in detail.readings
    ]
    out["charges"] = [
        ChargeOut(
            id=c.id,
            device_id=c.device_id,
            from_ts=c.from_ts,
            to_ts=c.to_ts,
            from_register=str(c.from_register),
            to_register=str(c.to_register),
            kind=c.kind,
            volume_m3=str(c.volume_m3),
            amount_fen=c.amount_fen,
            hold_id=c.hold_id,
        )
        for c in detail.charges
    ]
    out["ledger"] = [
        LedgerLineOut(**{f: getattr(line, f) for f in LedgerLineOut.model_fields}) for line in detail.ledger
    ]
    out["holds"] = [_hold_out(h, account_id) for h in detail.holds]
    return out


@router.get("/estates/{code}/tariffs", response_model=list[TariffOut])
def list_tariffs(code: EstateCode, session: ReadSessionDep, user: Viewers) -> list[TariffOut]:
    """The estate's hot-water price versions, oldest first (each in force until the next)."""
    estate_id = _estate_id(session, user, code, Action.view_accounts)
    return [
        TariffOut(
            tariff_id=t.tariff_id,
            effective_from=t.effective_from,
            tiers=[TierOut(up_to_m3=None if u is None else str(u), price_fen_per_m3=p) for u, p in t.tiers],
        )
        for t in queries.tariffs(session, estate_id)
    ]


@router.get("/estates/{code}/holds", response_model=list[HoldOut])
def list_holds(code: EstateCode, session: ReadSessionDep, user: HoldStaff) -> list[HoldOut]:
    """Intervals held as a possible meter reset or replacement, waiting for the readings to be confirmed."""
    estate_id = _estate_id(session, user, code, Action.confirm_hold)
    return [
        HoldOut(
            hold_id=h.hold_id,
            account_id=h.account_id,
            device=h.device_code,
            kind=h.kind,
            status="held",
            from_ts=h.from_ts,
            to_ts=h.to_ts,
            from_register=str(h.from_register),
            to_register=str(h.to_register),
            reason=h.reason,
        )
        for h in queries.held_intervals(session, estate_ids=[estate_id])
    ]


# --- money ---------------------------------------------------------------------------------------------------------


@router.post(
    "/accounts/{account_id}/top-ups",
    response_model=PaymentOut,
    status_code=201,
    responses={**CONFLICT, 200: {"model": PaymentOut, "description": "The key was paid before: the same payment"}},
)
async def top_up(
    account_id: ObjectId,
    body: TopUpIn,
    key: IdempotencyKey,
    response: Response,
    session: SessionDep,
    user: TopUpStaff,
) -> PaymentOut:
    """Record a payment at the counter or by bank transfer (201); a retried key returns the first payment (200)."""
    # async, with the work in one worker-thread call: the payment's row locks are then released by the commit
    # (which FastAPI runs on a limiter of its own) without waiting for another worker thread. A sync route would
    # serialise its response in the shared thread pool *before* the commit, and with every pool thread blocked
    # on this account's row lock, a burst of retries on one household stalled until the pool timed out.
    out = await run_in_threadpool(_top_up, session, user, account_id, body, key)
    if out.replayed:
        response.status_code = 200
    return out


def _top_up(session: Session, user: StaffUser, account_id: int, body: TopUpIn, key: str) -> PaymentOut:
    _account_estate(session, user, account_id, Action.top_up)
    result = service.record_payment(
        session,
        account_id=account_id,
        amount_fen=body.amount_fen,
        method=PaymentMethod(body.method),
        idempotency_key=key,
        actor=user.username,
    )
    p = result.payment
    if result.created:
        detail = {"payment_id": p.id, "amount_fen": p.amount_fen, "method": p.method}
        accounts.audit(session, user, "billing.top_up", f"billing_account:{account_id}", detail)
    return PaymentOut(
        payment_id=p.id,
        account_id=p.account_id,
        amount_fen=p.amount_fen,
        method=p.method,
        idempotency_key=p.idempotency_key,
        received_at=p.received_at,
        actor=p.actor,
        replayed=not result.created,
        balance_fen=_balance(session, account_id),
    )


def _posting_out(session: Session, posted: service.Posted, account_id: int) -> PostingOut:
    tx = posted.transaction
    return PostingOut(
        transaction_id=tx.id,
        kind=tx.kind,
        at=tx.at,
        actor=tx.actor,
        reason=tx.reason,
        replayed=not posted.created,
        balance_fen=_balance(session, account_id),
    )


OptionalKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="optional: a retry with the same key posts nothing new",
    ),
]


@router.post("/accounts/{account_id}/refunds", response_model=PostingOut, status_code=201, responses=CONFLICT)
async def refund(
    account_id: ObjectId, body: RefundIn, session: SessionDep, user: RefundStaff, key: OptionalKey = None
) -> PostingOut:
    """Pay money back out of the balance (never beyond it); the logged-in user and the reason are audited."""

    def work() -> PostingOut:
        _account_estate(session, user, account_id, Action.refund)
        posted = service.refund(
            session,
            account_id=account_id,
            amount_fen=body.amount_fen,
            method=PaymentMethod(body.method),
            actor=user.username,
            reason=body.reason,
            key=key or uuid.uuid4().hex,
        )
        return _posting_out(session, posted, account_id)

    return await run_in_threadpool(work)  # locks taken and released without waiting for a pool thread (top_up)


@router.post("/accounts/{account_id}/adjustments", response_model=PostingOut, status_code=201, responses=CONFLICT)
async def adjust(
    account_id: ObjectId, body: AdjustIn, session: SessionDep, user: AdjustStaff, key: OptionalKey = None
) -> PostingOut:
    """A correcting posting (> 0 credits, < 0 debits the household); never an edit; audited with its reason."""

    def work() -> PostingOut:
        _account_estate(session, user, account_id, Action.adjust)
        posted = service.adjust(
            session,
            account_id=account_id,
            amount_fen=body.amount_fen,
            actor=user.username,
            reason=body.reason,
            key=key or uuid.uuid4().hex,
        )
        return _posting_out(session, posted, account_id)

    return await run_in_threadpool(work)  # as refund


# --- tariffs, holds, runs ------------------------------------------------------------------------------------------


@router.post("/estates/{code}/tariffs", response_model=TariffOut, status_code=201, responses=CONFLICT)
def add_tariff(code: EstateCode, body: TariffIn, session: SessionDep, user: TariffStaff) -> TariffOut:
    """Add a price version from a future date (tiers in fen per m³); a past date is refused (never retroactive)."""
    estate_id = _estate_id(session, user, code, Action.manage_tariffs)
    tiers = [Tier(None if t.up_to_m3 is None else Decimal(t.up_to_m3), t.price_fen_per_m3) for t in body.tiers]
    tariff = desk.add_future_tariff(
        session,
        estate_id=estate_id,
        effective_from=body.effective_from,
        tiers=tiers,
        actor=user.username,
        note=body.note,
    )
    return TariffOut(
        tariff_id=tariff.id,
        effective_from=tariff.effective_from,
        tiers=[
            TierOut(up_to_m3=None if t.up_to_m3 is None else str(t.up_to_m3), price_fen_per_m3=t.price_fen_per_m3)
            for t in tiers
        ],
    )


@router.post("/holds/{hold_id}/confirm", response_model=ConfirmOut, responses=CONFLICT)
def confirm_hold(hold_id: ObjectId, body: ConfirmIn, session: SessionDep, user: HoldStaff) -> ConfirmOut:
    """Record the old meter's final and the new meter's initial reading; the next run bills the interval once."""
    estate_id = overview.hold_estate(session, hold_id)
    if estate_id is None or not policy.may_on_estate(session, user, Action.confirm_hold, estate_id):
        raise NotFound("held interval not found / 未找到该暂停计费区间")
    record = service.confirm_hold(
        session,
        hold_id,
        old_final_register=Decimal(body.old_final_register),
        new_initial_register=Decimal(body.new_initial_register),
        replaced_at=body.replaced_at,
        actor=user.username,
        kind=body.kind,
        note=body.note,
    )
    return ConfirmOut(hold_id=hold_id, replacement_id=record.id, kind=record.kind, recorded_by=record.recorded_by)


@router.post("/estates/{code}/runs", response_model=RunOut, responses=CONFLICT)
def start_run(code: EstateCode, body: RunIn, request: Request, session: SessionDep, user: RunStaff) -> RunOut:
    """Charge every hot-water meter of the estate up to `up_to` now (meter by meter; safe to repeat)."""
    estate_id = _estate_id(session, user, code, Action.run_billing)
    now = clock.now()
    up_to = body.up_to or now
    if up_to > now:
        raise InvalidInput("a billing run cannot charge the future / 计费截止时间不能晚于当前时间")
    # Meter by meter, each in a transaction of its own (billing/tasks.py): a long run never holds the request's.
    result = tasks.billing_run(request.app.state.sessionmaker, up_to, estate_id=estate_id)
    held = sorted({m.held for m in result.meters if m.held is not None})
    detail = {"up_to": up_to.isoformat(), "charges": result.charges, "amount_fen": result.amount_fen}
    accounts.audit(session, user, "billing.run", f"estate:{code}", detail)
    return RunOut(meters=len(result.meters), charges=result.charges, amount_fen=result.amount_fen, held=held)
