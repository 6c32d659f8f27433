"""Quarterly statements (``/billing/statements``: per estate and quarter, with the statement run and closing the
quarter), the printable A4 statement and its PDF, and the SOP's manual readings with their reconciliation
(``/billing/manual-readings``: entry form and the list of verdicts with their repair tickets).

Who may see or do what is billing/policy.py (view_statements, run_billing, close_period, record_manual_reading,
view_manual_readings), as for the JSON API; every POST checks again. Another estate's statement is a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from alarms import manual_readings as reconcile
from billing import periods, policy, statement_queries, statements
from billing.notices import yuan
from billing.policy import Action
from core import clock
from core.errors import StewardError
from dashboards import i18n
from dashboards.billing_notices import _html, _pdf_or_error
from dashboards.forms import clean_text, flash_error, flash_ok, form_page, same_origin
from dashboards.render import TEMPLATES
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility.queries import visible_estates
from storage.models import Estate
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
LIST = "/billing/statements"
READINGS = "/billing/manual-readings"
EstateFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{0,32}$")]
QuarterFilter = Annotated[str | None, Query(pattern=r"^(\d{4}Q[1-4])?$")]

# This page's strings (kept here, beside the page, so the billing pages of other branches merge cleanly).
STRINGS: dict[str, tuple[str, str]] = {
    "title": ("季度对账单", "Quarterly statements"),
    "readings_title": ("人工抄表核对", "Manual readings"),
    "estate": ("小区", "Estate"),
    "quarter": ("季度", "Quarter"),
    "show": ("查看", "Show"),
    "unit": ("房号", "Unit"),
    "opening": ("期初余额", "Opening"),
    "charges": ("本期用水", "Charges"),
    "late": ("上期补收", "Late readings"),
    "payments": ("本期缴费", "Payments"),
    "refunds": ("退款", "Refunds"),
    "adjustments": ("调账", "Adjustments"),
    "closing": ("期末余额", "Closing"),
    "readings": ("表底读数", "Register"),
    "print": ("打印", "Print"),
    "pdf": ("PDF", "PDF"),
    "print_all": ("批量打印", "Print all"),
    "open": ("未结账", "Open"),
    "closed": ("已结账", "Closed"),
    "closed_by": ("结账：{who} {when}", "Closed by {who} at {when}"),
    "run": ("生成对账单", "Write statements"),
    "close": ("结账", "Close the quarter"),
    "close_hint": (
        "结账后本季度对账单不再变动；之后到达的本季度读数计入下一个未结账季度（上期补收）。",
        "Once closed, the quarter's statements never change; readings of it that arrive later are booked in the "
        "next open quarter (late readings).",
    ),
    "empty": ("本季度还没有对账单", "No statements for this quarter yet"),
    "doc_title": ("热水费季度对账单", "Hot-water quarterly statement"),
    "period": ("账期", "Period"),
    "household": ("住户", "Household"),
    "first_reading": ("期初表底", "First reading"),
    "last_reading": ("期末表底", "Last reading"),
    "by_tariff": ("分价格用量", "Use by tariff"),
    "effective_from": ("价格生效", "Tariff from"),
    "volume": ("用量 m³", "Volume m³"),
    "amount": ("金额", "Amount"),
    "late_detail": ("上期补收明细（已结账季度的迟到读数）", "Late readings of closed quarters"),
    "used_in": ("用水季度", "Used in"),
    "interval": ("区间", "Interval"),
    "status_open_note": ("本季度尚未结账，数字可能变动", "The quarter is still open: figures may change"),
    "generated": ("生成时间", "Generated"),
    "device": ("水表", "Meter"),
    "read_at": ("抄表时间", "Read at"),
    "value": ("人工读数 m³", "Read m³"),
    "reader": ("抄表人", "Reader"),
    "note": ("备注", "Note"),
    "record": ("登记读数", "Record reading"),
    "register": ("系统表底 m³", "Register m³"),
    "difference": ("差值", "Difference"),
    "tolerance": ("允差", "Tolerance"),
    "verdict": ("核对结果", "Verdict"),
    "ticket": ("维修工单", "Ticket"),
    "outside_window": ("不在抄表期（季末月 25–30 日）", "outside the SOP window (25th–30th)"),
    "sop_hint": (
        "规程：每季末月 25 日至 30 日抄表。读数与系统表底之差超过允差（默认 0.5 m³ 与 2% 取大）即自动开维修工单。",
        "SOP: read on the 25th–30th of each quarter's last month. A difference from the register beyond the "
        "tolerance (default the larger of 0.5 m³ and 2 %) opens a repair ticket.",
    ),
    "no_readings": ("还没有人工抄表记录", "No manual readings yet"),
    "interpolated": ("插值", "interpolated"),
    "nearest": ("最近读数", "nearest"),
    "need_estate": ("请选择小区", "Choose an estate"),
    "bad_time": ("抄表时间无效", "Invalid reading time"),
}
VERDICT: dict[str, tuple[str, str]] = {
    "ok": ("一致", "OK"),
    "mismatch": ("不符", "Mismatch"),
    "no_data": ("无可比数据", "No data"),
}


def _tr(lang: i18n.Lang) -> Callable[..., str]:
    def tn(key: str, **fmt: object) -> str:
        pair = STRINGS.get(key)
        text = (pair[1] if lang == "en" else pair[0]) if pair else key
        return text.format(**fmt) if fmt else text

    return tn


def _may(viewer: Viewer, action: Action, estate_id: int | None = None) -> bool:
    return policy.may(viewer.role, action) and (estate_id is None or estate_id in viewer.visible)


def _estate(session: Session, viewer: Viewer, code: str | None) -> tuple[list[Estate], Estate | None]:
    """The viewer's estates and the one shown (the first when none is named; 404 for a code not theirs)."""
    estates = sorted(visible_estates(session, viewer.visible), key=lambda e: e.code)
    if not code:
        return estates, estates[0] if estates else None
    chosen = [e for e in estates if e.code == code]
    if not chosen:
        raise PageError(404, viewer)
    return estates, chosen[0]


def _q(**params: str) -> str:
    kept = {k: v for k, v in params.items() if v}
    return "?" + urlencode(kept) if kept else ""


def _m3(v: Decimal | str | None) -> str:
    if v is None:
        return "—"
    return f"{Decimal(v).quantize(Decimal('0.001'))}"


def _statement(s: statement_queries.StatementRow, lang: i18n.Lang) -> dict[str, Any]:
    tz = i18n.zone(s.timezone)

    def when(ts: datetime | None) -> str:
        return i18n.format_time(ts, tz, seconds=False) if ts else "—"

    return {
        "id": s.statement_id,
        "account_id": s.account_id,
        "estate": s.estate_name,
        "unit": s.unit_code,
        "period": s.period,
        "status": s.status,
        "span": f"{s.starts_at.astimezone(tz):%Y-%m-%d} – {(s.ends_at.astimezone(tz)):%Y-%m-%d}",
        "opening": yuan(s.opening_fen),
        "charges": yuan(s.charges_fen),
        "charges_m3": _m3(s.charges_m3),
        "late": yuan(s.late_fen),
        "late_fen": s.late_fen,
        "late_m3": _m3(s.late_m3),
        "payments": yuan(s.payments_fen),
        "refunds": yuan(s.refunds_fen),
        "adjustments": yuan(s.adjustments_fen),
        "closing": yuan(s.closing_fen),
        "negative": s.closing_fen < 0,
        "first": f"{_m3(s.first_register)} ({when(s.first_reading_at)})" if s.first_register is not None else "—",
        "last": f"{_m3(s.last_register)} ({when(s.last_reading_at)})" if s.last_register is not None else "—",
        "by_tariff": [
            {
                "from": when(datetime.fromisoformat(t["effective_from"])) if t.get("effective_from") else "—",
                "volume": _m3(t["volume_m3"]),
                "amount": yuan(Decimal(t["value_fen"])),
            }
            for t in s.by_tariff
        ],
        "late_lines": [
            {
                "device": x["device"],
                "period": x["period"],
                "interval": f"{x['from'][:16].replace('T', ' ')} – {x['to'][:16].replace('T', ' ')}",
                "volume": _m3(x["volume_m3"]),
                "amount": yuan(x["amount_fen"]),
            }
            for x in s.late
        ],
        "generated": when(s.generated_at),
    }


@router.get(LIST, response_class=HTMLResponse)
def statements_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    estate: EstateFilter = None,
    quarter: QuarterFilter = None,
) -> HTMLResponse:
    require(viewer, _may(viewer, Action.view_statements))
    estates, chosen = _estate(session, viewer, estate)
    tn = _tr(viewer.lang)
    rows: list[dict[str, Any]] = []
    quarters: list[str] = []
    period_info: dict[str, Any] = {"status": "open", "closed_note": ""}
    current = quarter or ""
    if chosen is not None:
        due = statements.due_quarter(clock.now(), chosen.timezone)
        known = statement_queries.estate_periods(session, chosen.id)
        quarters = sorted({p.period for p in known} | {due.label}, reverse=True)
        current = quarter or due.label
        rows = [_statement(s, viewer.lang) for s in statement_queries.estate_statements(session, chosen.id, current)]
        for p in known:
            if p.period == current:
                period_info["status"] = p.status
                if p.closed_at is not None:
                    period_info["closed_note"] = tn(
                        "closed_by",
                        who=p.closed_by or "",
                        when=i18n.format_time(p.closed_at, i18n.zone(chosen.timezone), seconds=False),
                    )
    eid = chosen.id if chosen else None
    return form_page(
        request,
        "billing/statements.html",
        viewer,
        tn=tn,
        estates=[(e.code, e.name) for e in estates],
        estate=chosen.code if chosen else "",
        quarters=quarters,
        quarter=current,
        rows=rows,
        period=period_info,
        can_run=eid is not None and _may(viewer, Action.run_billing, eid),
        can_close=eid is not None and _may(viewer, Action.close_period, eid) and period_info["status"] == "open",
        can_accounts=_may(viewer, Action.view_accounts),
        back=LIST + _q(estate=chosen.code if chosen else "", quarter=current),
    )


def _print_html(rows: list[statement_queries.StatementRow], lang: i18n.Lang) -> str:
    tn = _tr(lang)
    return TEMPLATES.get_template("billing/statement_print.html").render(
        lang=lang, tn=tn, statements=[_statement(r, lang) for r in rows], title=tn("doc_title")
    )


def _one(session: Session, viewer: Viewer, statement_id: int) -> statement_queries.StatementRow:
    require(viewer, _may(viewer, Action.view_statements))
    row = statement_queries.statement(session, statement_id)
    if row is None or row.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    return row


@router.get(LIST + "/print", response_class=HTMLResponse)
def print_batch(
    session: ReadSessionDep, viewer: ViewerDep, estate: EstateFilter = None, quarter: QuarterFilter = None
) -> HTMLResponse:
    """Every statement of an estate's quarter, one per A4 page."""
    require(viewer, _may(viewer, Action.view_statements))
    _, chosen = _estate(session, viewer, estate)
    if chosen is None:
        raise PageError(404, viewer)
    q = quarter or statements.due_quarter(clock.now(), chosen.timezone).label
    return _html(_print_html(statement_queries.estate_statements(session, chosen.id, q), viewer.lang))


@router.get(LIST + "/{statement_id}/print", response_class=HTMLResponse)
def print_one(statement_id: int, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    return _html(_print_html([_one(session, viewer, statement_id)], viewer.lang))


@router.get(LIST + "/{statement_id}/pdf")
def print_one_pdf(statement_id: int, session: ReadSessionDep, viewer: ViewerDep) -> Response:
    html = _print_html([_one(session, viewer, statement_id)], viewer.lang)
    return _pdf_or_error(html, f"statement-{statement_id}", viewer)


Code = Annotated[str, Form(pattern=r"^[a-z0-9-]{1,32}$")]
QuarterForm = Annotated[str, Form(pattern=r"^\d{4}Q[1-4]$")]


def _estate_for(session: Session, viewer: Viewer, code: str, action: Action) -> Estate:
    _, chosen = _estate(session, viewer, code)
    if chosen is None:
        raise PageError(404, viewer)
    require(viewer, _may(viewer, action, chosen.id))
    return chosen


@router.post(LIST + "/run")
def run(request: Request, session: SessionDep, viewer: ViewerDep, estate: Code, quarter: QuarterForm) -> Response:
    same_origin(request, viewer)
    chosen = _estate_for(session, viewer, estate, Action.run_billing)
    back = LIST + _q(estate=estate, quarter=quarter)
    try:
        statements.statement_run(request.app.state.sessionmaker, periods.parse(quarter), estate_id=chosen.id)
    except StewardError as exc:
        return flash_error(back, exc)
    return flash_ok(back, "flash_statements")


@router.post(LIST + "/close")
def close(request: Request, session: SessionDep, viewer: ViewerDep, estate: Code, quarter: QuarterForm) -> Response:
    same_origin(request, viewer)
    chosen = _estate_for(session, viewer, estate, Action.close_period)
    back = LIST + _q(estate=estate, quarter=quarter)
    try:
        statements.close_period(session, chosen.id, periods.parse(quarter), actor=viewer.username)
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(back, exc)
    return flash_ok(back, "flash_period_closed")


# --- manual readings ----------------------------------------------------------------------------------------------


def _reading(m: statement_queries.ManualReadingRow, tz: Any, lang: i18n.Lang) -> dict[str, Any]:
    tn = _tr(lang)
    return {
        "id": m.reading_id,
        "device": m.device_code,
        "unit": m.unit_code or "—",
        "read_at": i18n.format_time(m.read_at, tz, seconds=False),
        "value": _m3(m.value),
        "reader": m.reader,
        "note": m.note,
        "outside": not m.in_sop_window,
        "register": _m3(m.register),
        "method": tn(m.register_method) if m.register_method else "",
        "difference": _m3(m.difference),
        "tolerance": _m3(m.tolerance),
        "verdict": m.verdict,
        "verdict_label": i18n.lookup(VERDICT, m.verdict, lang),
        "ticket_id": m.ticket_id,
        "ticket_number": m.ticket_number,
    }


@router.get(READINGS, response_class=HTMLResponse)
def readings_page(
    request: Request, session: ReadSessionDep, viewer: ViewerDep, estate: EstateFilter = None
) -> HTMLResponse:
    require(viewer, _may(viewer, Action.view_manual_readings))
    estates, chosen = _estate(session, viewer, estate)
    tz = i18n.zone(chosen.timezone if chosen else None)
    rows = (
        [_reading(m, tz, viewer.lang) for m in statement_queries.manual_readings(session, chosen.id)] if chosen else []
    )
    return form_page(
        request,
        "billing/manual_readings.html",
        viewer,
        tn=_tr(viewer.lang),
        estates=[(e.code, e.name) for e in estates],
        estate=chosen.code if chosen else "",
        meters=statement_queries.meters_by_unit(session, chosen.id) if chosen else [],
        rows=rows,
        tz=tz.key,
        now_local=clock.now().astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
        can_record=chosen is not None and _may(viewer, Action.record_manual_reading, chosen.id),
    )


@router.post(READINGS)
def record_reading(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    estate: Code,
    device: Annotated[str, Form(max_length=64)],
    read_at: Annotated[str, Form(max_length=20)],
    value: Annotated[str, Form(max_length=24)],
    reader: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    same_origin(request, viewer)
    chosen = _estate_for(session, viewer, estate, Action.record_manual_reading)
    back = READINGS + _q(estate=estate)
    try:
        try:
            when = datetime.fromisoformat(read_at.strip()).replace(tzinfo=i18n.zone(chosen.timezone))
        except ValueError:
            raise StewardError(f"{STRINGS['bad_time'][1]} / {STRINGS['bad_time'][0]}", 422) from None
        device_id = statement_queries.household_meter(session, chosen.id, device.strip())
        if device_id is None:
            raise StewardError("no household hot-water meter with this code / 本小区无此住户热水表", 422)
        reconcile.record_and_reconcile(
            session,
            device_id=device_id,
            read_at=when,
            value=value.strip(),
            reader=clean_text(reader, "bad_text") or viewer.display_name,
            actor=viewer.username,
            note=clean_text(note, "bad_text"),
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(back, exc)
    return flash_ok(back, "flash_manual_reading")
