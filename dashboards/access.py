"""Access-card pages: the card register with search (``/access/cards``), a household's cards with its free quota
and the issue form (``/access/household``), one card with the lost and return flows (``/access/cards/{id}``), and
the printable 《智能卡发放登记表》 (A4, ``/access/cards/{id}/print``), and the door controllers' whitelist sync
(``/access/controllers``: 待同步 / 已同步, versions, since when; also on each card's page).

Who may see or do what is ``access.policy`` (the JSON API asks it too); every POST checks again. Stewards and
project managers read the register without card numbers. A card or unit outside the viewer's estates is a 404.
Staff cards are issued from the register page (no unit; doors by role).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from access import policy, queries, service
from access.const import CardFormat, CardStatus, CardType
from access.policy import Action
from core.errors import StewardError
from core.roles import Role
from dashboards import i18n
from dashboards.forms import clean_text, flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import estate_of
from dashboards.render import TEMPLATES
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility import queries as facility_queries
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
REGISTER = "/access/cards"
HOUSEHOLD = "/access/household"
UNIT_CODE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
# Cards a household is issued from its page; staff cards need a role and no unit (JSON API).
HOUSEHOLD_TYPES = [t.value for t in CardType if t != CardType.staff]
METHODS = ["counter", "bank_transfer", "online"]


def _reader(viewer: Viewer) -> Viewer:
    return require(viewer, policy.may(viewer.role, Action.view_register))


def _desk(viewer: Viewer) -> Viewer:
    return require(viewer, policy.may(viewer.role, Action.manage_cards))


def _yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"


def _hours(profile: dict[str, Any] | None, lang: i18n.Lang) -> str:
    if not profile:
        return i18n.t("card_any_time", lang)
    days = "、".join(i18n.t(f"weekday_{d}", lang) for d in profile.get("days", []))
    windows = ", ".join(f"{a}–{b}" for a, b in profile.get("windows", []))
    return f"{days} {windows}"


def card_view(r: queries.CardRow, lang: i18n.Lang) -> dict[str, Any]:
    """The display values of one card (labels in the viewer's language, times in the estate's zone)."""
    tz = i18n.zone(r.timezone)

    def when(ts: datetime | None) -> str:
        return i18n.format_time(ts, tz, seconds=False)

    until = when(r.valid_until) if r.valid_until else i18n.t("card_until_revoked", lang)
    return {
        "id": r.id,
        "estate": r.estate_name,
        "estate_code": r.estate_code,
        "building": r.building_code or "",
        "unit": r.unit_code or "",
        "type": r.card_type,
        "type_label": i18n.t(f"ctype_{r.card_type}", lang),
        "format": r.format,
        "uid": r.uid,
        "wiegand": f"{r.wiegand26} / {r.wiegand34}" if r.wiegand26 else "",
        "holder": r.holder_name,
        "phone": r.holder_phone,
        "staff_role": i18n.role_label(r.staff_role, lang) if r.staff_role else "",
        "validity": f"{when(r.valid_from)} — {until}",
        "hours": _hours(r.time_profile, lang),
        "doors": "、".join(
            f"{name}（{code}）" if name and name != code else code
            for code, name in zip(r.doors, r.door_names, strict=True)
        ),
        "status": r.status,
        "status_label": i18n.t(f"cstatus_{r.status}", lang),
        "status_note": f"{when(r.status_at)} {r.status_by} {r.status_reason}" if r.status != CardStatus.active else "",
        "issued": when(r.issued_at),
        "issuer": r.issued_by,
        "fee": i18n.t("card_free", lang) if r.free and not r.fee_fen else f"¥{_yuan(r.fee_fen)}",
        "deposit": f"¥{_yuan(r.deposit_fen)}（{i18n.t('deposit_' + r.deposit_state, lang)}）" if r.deposit_fen else "—",
        "deposit_state": r.deposit_state,
        "replaces": r.replaces_id,
        "active": r.status == CardStatus.active,
        "returnable": r.status in (CardStatus.active, CardStatus.expired, CardStatus.revoked),
    }


def _card_row(session: SessionDep, viewer: Viewer, card_id: int) -> queries.CardRow:
    row = (
        queries.card(session, card_id, viewer.visible, show_uids=policy.may(viewer.role, Action.view_uids))
        if 0 < card_id < 2**31
        else None
    )
    if row is None:
        raise PageError(404, viewer)
    return row


# --- the register --------------------------------------------------------------------------------------------------


@router.get(REGISTER, response_class=HTMLResponse)
def register_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Query(max_length=32)] = "",
    q: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    """The estate's cards, newest first, searchable by unit, holder or (card desk) UID."""
    _reader(viewer)
    estates = facility_queries.visible_estates(session, viewer.visible)
    if not estates:
        raise PageError(404, viewer)
    chosen = estate_of(session, estate, viewer) if estate else estates[0]
    show_uids = policy.may(viewer.role, Action.view_uids)
    statuses = [status] if status in CardStatus.__members__ else None
    page = queries.register(
        session,
        chosen.id,
        q=q.replace("\x00", "") or None,
        statuses=statuses,
        show_uids=show_uids,
        limit=100,
        offset=offset,
    )
    more = {"estate": chosen.code, "q": q, "status": status, "offset": offset + 100}
    return form_page(
        request,
        "access/register.html",
        viewer,
        estates=estates,
        estate=chosen,
        q=q,
        current_status=status if statuses else "",
        statuses=list(CardStatus.__members__),
        cards=[card_view(r, viewer.lang) for r in page.items],
        total=page.total,
        next_url=f"{REGISTER}?{urlencode(more)}" if offset + 100 < page.total else None,
        show_uids=show_uids,
        can_manage=policy.may(viewer.role, Action.manage_cards),
        can_read_swipes=policy.may(viewer.role, Action.read_swipes),
        can_view_sync=policy.may(viewer.role, Action.view_sync),
        roles=[(r.value, i18n.role_label(r.value, viewer.lang)) for r in Role],
        formats=[f.value for f in CardFormat],
    )


# --- a household -----------------------------------------------------------------------------------------------------


def _household_url(estate: str, unit: str) -> str:
    return f"{HOUSEHOLD}?{urlencode({'estate': estate, 'unit': unit})}"


@router.get(HOUSEHOLD, response_class=HTMLResponse)
def household_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Query(max_length=32)],
    unit: Annotated[str, Query(max_length=32)],
) -> HTMLResponse:
    """A household's cards with its free quota, and (card desk) the issue form and move-out."""
    _reader(viewer)
    e = estate_of(session, estate, viewer)
    h = (
        queries.household(session, e.id, unit, show_uids=policy.may(viewer.role, Action.view_uids))
        if UNIT_CODE.match(unit)
        else None
    )
    if h is None:
        raise PageError(404, viewer)
    return form_page(
        request,
        "access/household.html",
        viewer,
        estate=e,
        h=h,
        cards=[card_view(r, viewer.lang) for r in h.cards],
        next_fee=_yuan(h.next_fee_fen),
        types=HOUSEHOLD_TYPES,
        formats=[f.value for f in CardFormat],
        methods=METHODS,
        can_manage=policy.may(viewer.role, Action.manage_cards),
        residents=h.residents,
    )


def _day(value: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise StewardError("!bad_card_form", 422) from exc


Field = Annotated[str, Form(max_length=64)]


@router.post(HOUSEHOLD + "/issue")
def issue_from_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Field,
    unit: Field,
    card_type: Field,
    uid: Field,
    holder_name: Field,
    holder_phone: Annotated[str, Form(max_length=32)] = "",
    card_format: Field = CardFormat.mifare4.value,
    valid_until_date: Annotated[str, Form(max_length=10)] = "",
    method: Field = "counter",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    same_origin(request, viewer)
    _desk(viewer)
    e = estate_of(session, estate, viewer)
    unit_id = queries.unit_id_by_code(session, e.id, unit) if UNIT_CODE.match(unit) else None
    if unit_id is None:
        raise PageError(404, viewer)
    back = _household_url(e.code, unit)
    try:
        if card_type not in HOUSEHOLD_TYPES or card_format not in CardFormat.__members__ or method not in METHODS:
            raise StewardError("!bad_card_form", 422)
        card = service.issue(
            session,
            estate_id=e.id,
            card_type=card_type,
            uid=uid,
            card_format=card_format,
            holder_name=clean_text(holder_name, "bad_card_form"),
            holder_phone=clean_text(holder_phone, "bad_card_form"),
            unit_id=unit_id,
            valid_until=_day(valid_until_date),
            actor=viewer.username,
            method=method,
            note=clean_text(note, "bad_card_form"),
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(back, exc)
    return flash_ok(f"{REGISTER}/{card.id}", "flash_card_issued")


@router.post(REGISTER + "/staff")
def issue_staff_card(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Field,
    staff_role: Field,
    uid: Field,
    holder_name: Field,
    holder_phone: Annotated[str, Form(max_length=32)] = "",
    card_format: Field = CardFormat.mifare4.value,
    valid_until_date: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A staff card (no unit; its doors follow the role: equipment rooms for 工程部 and management)."""
    same_origin(request, viewer)
    _desk(viewer)
    e = estate_of(session, estate, viewer)
    back = f"{REGISTER}?{urlencode({'estate': e.code})}"
    try:
        if staff_role not in Role.__members__ or card_format not in CardFormat.__members__:
            raise StewardError("!bad_card_form", 422)
        card = service.issue(
            session,
            estate_id=e.id,
            card_type=CardType.staff,
            uid=uid,
            card_format=card_format,
            holder_name=clean_text(holder_name, "bad_card_form"),
            holder_phone=clean_text(holder_phone, "bad_card_form"),
            staff_role=staff_role,
            valid_until=_day(valid_until_date),
            actor=viewer.username,
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(back, exc)
    return flash_ok(f"{REGISTER}/{card.id}", "flash_card_issued")


@router.post(HOUSEHOLD + "/move-out")
def move_out_from_page(
    request: Request, session: SessionDep, viewer: ViewerDep, estate: Field, unit: Field
) -> Response:
    same_origin(request, viewer)
    _desk(viewer)
    e = estate_of(session, estate, viewer)
    unit_id = queries.unit_id_by_code(session, e.id, unit) if UNIT_CODE.match(unit) else None
    if unit_id is None:
        raise PageError(404, viewer)
    service.move_out(session, unit_id, actor=viewer.username)
    return flash_ok(_household_url(e.code, unit), "flash_moved_out")


# --- one card --------------------------------------------------------------------------------------------------------


def sync_view(r: queries.ControllerSyncRow, tz: Any, lang: i18n.Lang) -> dict[str, Any]:
    """One controller's sync state for a page: 待同步 since when, or 已同步 since its ack."""
    return {
        "code": r.code,
        "name": r.name,
        "doors": ", ".join(r.doors),
        "pending": r.pending,
        "label": i18n.t("sync_pending" if r.pending else "sync_synced", lang),
        "versions": f"{r.applied_version} / {r.desired_version}",
        "since": i18n.format_time(r.pending_since if r.pending else r.applied_at, tz),
        "reported": "—"
        if r.reported_version is None
        else f"v{r.reported_version} · {i18n.format_time(r.reported_at, tz)}"
        + (
            ""
            if r.reported_matches is None
            else " · " + i18n.t("sync_report_ok" if r.reported_matches else "sync_report_differs", lang)
        ),
    }


@router.get("/access/controllers", response_class=HTMLResponse)
def controllers_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    """Each door controller of the estate: 待同步 / 已同步, applied and desired version, since when, its own report."""
    require(viewer, policy.may(viewer.role, Action.view_sync))
    estates = facility_queries.visible_estates(session, viewer.visible)
    if not estates:
        raise PageError(404, viewer)
    chosen = estate_of(session, estate, viewer) if estate else estates[0]
    tz = i18n.zone(chosen.timezone)
    rows = queries.controller_sync(session, viewer.visible, estate_id=chosen.id)
    return form_page(
        request,
        "access/controllers.html",
        viewer,
        estates=estates,
        estate=chosen,
        rows=[sync_view(r, tz, viewer.lang) for r in rows],
        pending=sum(1 for r in rows if r.pending),
    )


@router.get(REGISTER + "/{card_id}", response_class=HTMLResponse)
def card_page(card_id: int, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    row = _card_row(session, viewer, card_id)
    tz = i18n.zone(row.timezone)
    controllers = queries.controller_sync(
        session, viewer.visible, controller_ids=queries.controllers_of_card(session, row.id)
    )
    return form_page(
        request,
        "access/card.html",
        viewer,
        c=card_view(row, viewer.lang),
        household=_household_url(row.estate_code, row.unit_code) if row.unit_code else None,
        methods=METHODS,
        formats=[f.value for f in CardFormat],
        can_manage=policy.may(viewer.role, Action.manage_cards),
        controllers=[sync_view(r, tz, viewer.lang) for r in controllers],
        can_view_sync=policy.may(viewer.role, Action.view_sync),
    )


@router.post(REGISTER + "/{card_id}/lost")
def lost_from_page(
    card_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    replacement_uid: Field = "",
    card_format: Field = CardFormat.mifare4.value,
    method: Field = "counter",
) -> Response:
    same_origin(request, viewer)
    _desk(viewer)
    _card_row(session, viewer, card_id)
    back = f"{REGISTER}/{card_id}"
    try:
        if card_format not in CardFormat.__members__ or method not in METHODS:
            raise StewardError("!bad_card_form", 422)
        result = service.report_lost(
            session,
            card_id,
            actor=viewer.username,
            replacement_uid=replacement_uid.strip() or None,
            replacement_format=card_format,
            method=method,
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(back, exc)
    target = f"{REGISTER}/{result.replacement.id}" if result.replacement else back
    return flash_ok(target, "flash_card_lost")


@router.post(REGISTER + "/{card_id}/return")
def return_from_page(
    card_id: int, request: Request, session: SessionDep, viewer: ViewerDep, method: Field = "counter"
) -> Response:
    same_origin(request, viewer)
    _desk(viewer)
    _card_row(session, viewer, card_id)
    back = f"{REGISTER}/{card_id}"
    try:
        if method not in METHODS:
            raise StewardError("!bad_card_form", 422)
        service.return_card(session, card_id, actor=viewer.username, method=method)
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(back, exc)
    return flash_ok(back, "flash_card_returned")


@router.get(REGISTER + "/{card_id}/print", response_class=HTMLResponse)
def print_register_form(card_id: int, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    """The 《智能卡发放登记表》 of one card, A4, for the holder's signature."""
    _reader(viewer)
    row = _card_row(session, viewer, card_id)
    lang = viewer.lang

    def t(key: str, **fmt: object) -> str:
        return i18n.t(key, lang, **fmt)

    body = TEMPLATES.get_template("access/register_print.html").render(lang=lang, t=t, c=card_view(row, lang))
    response = HTMLResponse(body)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # A self-contained document: its own inline print stylesheet and nothing else.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return response


# --- the swipe log (whereabouts: the card desk only, every read audited) ------------------------------------------


@router.get("/access/swipes", response_class=HTMLResponse)
def swipes_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Annotated[str, Query(max_length=32)] = "",
    door: Annotated[str, Query(max_length=64)] = "",
    card: Annotated[str, Query(max_length=40)] = "",
    granted: Annotated[str, Query(max_length=5)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    """Swipes at the estate's doors, newest first, by door, card and outcome (PIPL Art. 28: audited)."""
    require(viewer, policy.may(viewer.role, Action.read_swipes))
    estates = facility_queries.visible_estates(session, viewer.visible)
    if not estates:
        raise PageError(404, viewer)
    chosen = estate_of(session, estate, viewer) if estate else estates[0]
    outcome = {"yes": True, "no": False}.get(granted)
    card_uid = card if re.fullmatch(r"[0-9A-Fa-f :-]*", card) else ""
    page = queries.swipes(
        session,
        chosen.id,
        door=door.replace("\x00", "") or None,
        card_uid=card_uid or None,
        granted=outcome,
        limit=100,
        offset=offset,
    )
    filters = {"door": door or None, "card": card_uid or None, "granted": outcome, "offset": offset, "page": True}
    service.audit_swipe_read(session, viewer.username, chosen.id, filters, len(page.items))
    tz = i18n.zone(chosen.timezone)
    rows = [
        {
            "ts": i18n.format_time(r.ts, tz),
            "door": r.door,
            "controller": r.controller,
            "uid": r.card_uid,
            "granted": r.granted,
            "reason": r.reason or "",
            "card_id": r.card_id,
            "holder": r.holder_name or "",
            "unit": r.unit_code or "",
        }
        for r in page.items
    ]
    more = {"estate": chosen.code, "door": door, "card": card_uid, "granted": granted, "offset": offset + 100}
    return form_page(
        request,
        "access/swipes.html",
        viewer,
        estates=estates,
        estate=chosen,
        door=door,
        card=card_uid,
        granted=granted if outcome is not None else "",
        rows=rows,
        total=page.total,
        next_url=f"/access/swipes?{urlencode(more)}" if offset + 100 < page.total else None,
    )


@router.get("/access", include_in_schema=False)
def access_home(viewer: ViewerDep) -> RedirectResponse:
    _reader(viewer)
    return RedirectResponse(REGISTER, status_code=303)
