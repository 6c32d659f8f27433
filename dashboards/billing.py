"""The billing clerk's pages: households with balance and days left (``/billing``), one account with its readings,
charges, ledger, held intervals and a top-up form (``/billing/accounts/{id}``), tariffs (``/billing/tariffs``), held
intervals to confirm (``/billing/holds``), and the live stream ``/live/billing`` that re-renders the list or the
account when a charge, payment or hold of the viewer's estates commits (``NOTIFY steward_billing``).

Who may see or do what is billing/policy.py, as for the JSON API: a role outside an action's set gets the 403
page, another estate's account is 404. The top-up form carries an idempotency key made when the form is rendered,
so a double submit (a double tap on a phone, a resent POST) pays once. Forms are protected like the ticket forms
(SameSite=Lax cookie, form-action 'self', an Origin check).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from accounts import service as accounts
from billing import desk, notice_queries, overview, policy, queries, service
from billing.const import PaymentMethod
from billing.policy import Action
from billing.pricing import Tier
from core import clock
from core.errors import StewardError
from dashboards import billing_view as bv
from dashboards import i18n
from dashboards.forms import flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import viewer_tz
from dashboards.render import live_page_data, render_fragment
from dashboards.streaming import marked_stream
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility.queries import visible_estates
from storage.models import Estate
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)

POLL_S = 5.0  # also re-read this often without a notification (a confirmed hold does not notify)
MIN_GAP_S = 0.5
EstateFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{0,32}$")]
Amount = re.compile(r"^\d{1,7}(\.\d{1,2})?$")


def may(viewer: Viewer, action: Action, estate_id: int | None = None) -> bool:
    """billing/policy.py for a page viewer: the role's action set, and the estate among the viewer's."""
    return policy.may(viewer.role, action) and (estate_id is None or estate_id in viewer.visible)


def account_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, may(viewer, Action.view_accounts))


def hold_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, may(viewer, Action.confirm_hold))


AccountViewer = Annotated[Viewer, Depends(account_viewer)]
HoldViewer = Annotated[Viewer, Depends(hold_viewer)]


def _estates(session: Session, viewer: Viewer, code: str | None) -> tuple[list[Estate], list[int]]:
    """The viewer's estates, and the ids the page shows (one when filtered; 404 for a code not theirs)."""
    estates = sorted(visible_estates(session, viewer.visible), key=lambda e: e.code)
    if not code:
        return estates, [e.id for e in estates]
    chosen = [e.id for e in estates if e.code == code]
    if not chosen:
        raise PageError(404, viewer)
    return estates, chosen


def _query(**params: str) -> str:
    kept = {k: v for k, v in params.items() if v}
    return "?" + urlencode(kept) if kept else ""


# --- the account list --------------------------------------------------------------------------------------


def _list_body(session: Session, viewer: Viewer, ids: list[int]) -> dict[str, Any]:
    tz = viewer_tz(session, viewer)
    return bv.accounts(session, ids, viewer.lang, tz, clock.now())


@router.get("/billing", response_class=HTMLResponse)
def accounts_page(
    request: Request, session: ReadSessionDep, viewer: AccountViewer, estate: EstateFilter = None
) -> HTMLResponse:
    estates, ids = _estates(session, viewer, estate)
    return form_page(
        request,
        "billing/accounts.html",
        viewer,
        b=_list_body(session, viewer, ids),
        estates=[(e.code, e.name) for e in estates],
        f={"estate": estate or ""},
        can_tariffs=True,
        can_holds=may(viewer, Action.confirm_hold),
        page_data=live_page_data(viewer.lang, "/live/billing" + _query(view="accounts", estate=estate or "")),
    )


# --- one account -------------------------------------------------------------------------------------------


def _visible_account(session: Session, viewer: Viewer, account_id: int) -> int:
    estate_id = overview.account_estate(session, account_id)
    if estate_id is None or estate_id not in viewer.visible:
        raise PageError(404, viewer)
    return estate_id


def _account_body(session: Session, viewer: Viewer, account_id: int) -> dict[str, Any]:
    estate_id = _visible_account(session, viewer, account_id)
    estate = session.get(Estate, estate_id)
    assert estate is not None
    detail = overview.account_detail(session, account_id, clock.now())
    if detail is None:
        raise PageError(404, viewer)
    return bv.account(
        detail,
        viewer.lang,
        i18n.zone(estate.timezone),
        clock.now(),
        supply=queries.supply(session, account_id),
        notices=notice_queries.queue(session, [estate_id], account_id=account_id, limit=50),
    )


@router.get("/billing/accounts/{account_id}", response_class=HTMLResponse)
def account_page(account_id: int, request: Request, session: ReadSessionDep, viewer: AccountViewer) -> HTMLResponse:
    body = _account_body(session, viewer, account_id)
    return form_page(
        request,
        "billing/account.html",
        viewer,
        d=body,
        can_top_up=may(viewer, Action.top_up),
        # A fresh key per rendering of the form: submitting this form again (double tap, resent POST) pays once.
        top_up_key=uuid.uuid4().hex,
        methods=[m.value for m in (PaymentMethod.counter, PaymentMethod.bank_transfer)],
        page_data=live_page_data(viewer.lang, f"/live/billing?view=account&account_id={account_id}"),
    )


def _fen(text: str) -> int:
    value = text.strip().replace(",", "").removeprefix("¥")
    if not Amount.match(value) or Decimal(value) <= 0:
        raise StewardError("!bad_amount", 422)
    return int(Decimal(value) * 100)


@router.post("/billing/accounts/{account_id}/top-up")
def top_up(
    account_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    amount: Annotated[str, Form(max_length=20)] = "",
    method: Annotated[str, Form(max_length=20)] = "counter",
    key: Annotated[str, Form(max_length=100, pattern=r"^[A-Za-z0-9._-]{8,100}$")] = "",
) -> Response:
    same_origin(request, viewer)
    require(viewer, may(viewer, Action.top_up))
    _visible_account(session, viewer, account_id)
    target = f"/billing/accounts/{account_id}"
    try:
        if method not in (PaymentMethod.counter, PaymentMethod.bank_transfer):
            raise StewardError("!bad_amount", 422)
        result = service.record_payment(
            session,
            account_id=account_id,
            amount_fen=_fen(amount),
            method=method,
            idempotency_key=key,
            actor=viewer.username,
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    if not result.created:
        return flash_ok(target, "flash_top_up_replayed")
    p = result.payment
    detail = {"payment_id": p.id, "amount_fen": p.amount_fen, "method": p.method, "via": "dashboards"}
    accounts.audit(session, viewer.username, "billing.top_up", f"billing_account:{account_id}", detail)
    return flash_ok(target, "flash_top_up")


# --- tariffs -----------------------------------------------------------------------------------------------


@router.get("/billing/tariffs", response_class=HTMLResponse)
def tariffs_page(
    request: Request, session: ReadSessionDep, viewer: AccountViewer, estate: EstateFilter = None
) -> HTMLResponse:
    estates, ids = _estates(session, viewer, estate)
    shown = [e for e in estates if e.id in ids]
    return form_page(
        request,
        "billing/tariffs.html",
        viewer,
        sections=[
            {"code": e.code, "name": e.name, "tariffs": bv.tariffs(session, e.id, viewer.lang, i18n.zone(e.timezone))}
            for e in shown
        ],
        can_add=may(viewer, Action.manage_tariffs),
        estates=[(e.code, e.name) for e in estates],
        f={"estate": estate or ""},
        page_data=live_page_data(viewer.lang, None),
    )


def _price_fen(text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"\d{1,6}(\.\d{1,2})?", value):
        raise StewardError("!bad_price", 422)
    return int(Decimal(value) * 100)


@router.post("/billing/tariffs")
def add_tariff(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Form(max_length=32)] = "",
    effective_from: Annotated[str, Form(max_length=10)] = "",
    price: Annotated[str, Form(max_length=12)] = "",
    up_to: Annotated[str, Form(max_length=12)] = "",
    price2: Annotated[str, Form(max_length=12)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    same_origin(request, viewer)
    require(viewer, may(viewer, Action.manage_tariffs))
    _, ids = _estates(session, viewer, estate or None)
    if not estate or len(ids) != 1:
        raise PageError(404, viewer)
    target = f"/billing/tariffs?estate={estate}"
    try:
        try:
            day = date.fromisoformat(effective_from.strip())
        except ValueError:
            raise StewardError("!bad_date", 422) from None
        if up_to.strip():
            if not re.fullmatch(r"\d{1,9}(\.\d{1,3})?", up_to.strip()) or not price2.strip():
                raise StewardError("!bad_price", 422)
            tiers = [Tier(Decimal(up_to.strip()), _price_fen(price)), Tier(None, _price_fen(price2))]
        else:
            tiers = [Tier(None, _price_fen(price))]
        desk.add_future_tariff(
            session,
            estate_id=ids[0],
            effective_from=day,
            tiers=tiers,
            actor=viewer.username,
            note=note.replace("\x00", "").strip(),
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "flash_tariff")


# --- held intervals ----------------------------------------------------------------------------------------


@router.get("/billing/holds", response_class=HTMLResponse)
def holds_page(
    request: Request, session: ReadSessionDep, viewer: HoldViewer, estate: EstateFilter = None
) -> HTMLResponse:
    _, ids = _estates(session, viewer, estate)
    tz = viewer_tz(session, viewer)
    return form_page(
        request,
        "billing/holds.html",
        viewer,
        holds=bv.holds(session, ids, viewer.lang, tz),
        tz=tz.key,
        can_accounts=may(viewer, Action.view_accounts),
        page_data=live_page_data(viewer.lang, None),
    )


def _register(text: str) -> Decimal:
    value = text.strip()
    if not re.fullmatch(r"\d{1,12}(\.\d{1,6})?", value):
        raise StewardError("!bad_register", 422)
    return Decimal(value)


@router.post("/billing/holds/{hold_id}/confirm")
def confirm_hold(
    hold_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    old_final: Annotated[str, Form(max_length=24)] = "",
    new_initial: Annotated[str, Form(max_length=24)] = "",
    replaced_at: Annotated[str, Form(max_length=20)] = "",
    kind: Annotated[str, Form(max_length=16)] = "replacement",
) -> Response:
    same_origin(request, viewer)
    require(viewer, may(viewer, Action.confirm_hold))
    estate_id = overview.hold_estate(session, hold_id)
    if estate_id is None or estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, estate_id)
    assert estate is not None
    target = "/billing/holds"
    try:
        try:
            when = datetime.fromisoformat(replaced_at.strip()).replace(tzinfo=i18n.zone(estate.timezone))
        except ValueError:
            raise StewardError("!bad_date", 422) from None
        service.confirm_hold(
            session,
            hold_id,
            old_final_register=_register(old_final),
            new_initial_register=_register(new_initial),
            replaced_at=when,
            actor=viewer.username,
            kind=kind if kind in ("replacement", "reset") else "replacement",
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "flash_confirm_hold")


# --- live: /live/billing -----------------------------------------------------------------------------------


@router.get("/live/billing")
async def live_billing(
    request: Request,
    view: Annotated[str, Query(pattern="^(accounts|account)$")] = "accounts",
    estate: EstateFilter = None,
    account_id: Annotated[int, Query(ge=1, le=2_147_483_647)] = 1,
) -> Response:
    """The account list's or one account's body, re-rendered when money or holds of the viewer's estates move."""

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        if view == "account":
            d = _account_body(session, viewer, account_id)
            return {"now": d["now"], "html": render_fragment("billing/_account_body.html", viewer.lang, d=d)}
        _, ids = _estates(session, viewer, estate)
        b = _list_body(session, viewer, ids)
        return {"now": b["now"], "html": render_fragment("billing/_accounts_body.html", viewer.lang, b=b)}

    def allowed(viewer: Viewer) -> bool:
        return may(viewer, Action.view_accounts)

    def mark(session: Session, viewer: Viewer) -> tuple[int, ...]:
        return overview.change_mark(session, viewer.visible)

    return await marked_stream(request, build, allowed, mark, poll_s=POLL_S, min_gap_s=MIN_GAP_S)
