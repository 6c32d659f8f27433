"""The hot-water notice queue (approve, send, cancel), printable notices (A4, one per page) and PDF export.

Who may see and act is ``billing.policy`` (view_notices, approve_notices — the JSON API asks it too);
every POST checks again. A notice outside the viewer's estates is a 404, like a missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from billing import notice_queries, notices
from billing.const import NoticeStatus
from billing.policy import Action, may
from core.errors import StewardError
from dashboards import i18n
from dashboards.forms import clean_text, flash_error, flash_ok, form_page, same_origin
from dashboards.pdf import html_to_pdf
from dashboards.render import TEMPLATES
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
QUEUE = "/billing/notices"

# This page's strings (kept here, beside the page, so the billing pages of other branches merge cleanly).
STRINGS: dict[str, tuple[str, str]] = {
    "title": ("通知队列", "Notice queue"),
    "nav": ("热水通知", "Hot-water notices"),
    "pending": ("待处理", "Pending"),
    "all": ("全部", "All"),
    "number": ("编号", "Number"),
    "unit": ("房号", "Unit"),
    "kind": ("类型", "Kind"),
    "status": ("状态", "Status"),
    "balance": ("余额", "Balance"),
    "effective": ("载明日期", "Stated date"),
    "created": ("生成", "Created"),
    "actions": ("操作", "Actions"),
    "approve": ("审批", "Approve"),
    "send": ("发送", "Send"),
    "cancel": ("作废", "Cancel"),
    "reason": ("原因", "Reason"),
    "print": ("打印", "Print"),
    "pdf": ("PDF", "PDF"),
    "print_all": ("批量打印", "Print all"),
    "pdf_all": ("批量导出 PDF", "Export all as PDF"),
    "empty": ("没有通知", "No notices"),
    "need_reason": ("请填写作废原因", "Give a reason to cancel"),
    "legal": (
        "限供、停供仅在小区开启限供开关后、书面通知载明日期满 15 天（停供再满 3 天）方可实施；夜间、周末、法定节假日及困难家庭一律不实施；物业费欠费不影响热水供应。",  # noqa: E501
        "Restriction and suspension happen only where the estate enabled them, 15 days (suspension: 3 more) after "
        "a written notice stating the date; never at night, on weekends or public holidays, nor for vulnerable "
        "households; property-fee arrears never affect hot water.",
    ),
}
KIND: dict[str, tuple[str, str]] = {
    "renewal": ("续费通知", "Renewal"),
    "renewal_second": ("第二次续费通知", "Second renewal"),
    "restriction": ("限供通知", "Restriction"),
    "suspension": ("停供通知", "Suspension"),
    "restoration": ("恢复供水通知", "Restoration"),
}
STATUS: dict[str, tuple[str, str]] = {
    "draft": ("草稿", "Draft"),
    "approved": ("已审批", "Approved"),
    "sent": ("已发送", "Sent"),
    "cancelled": ("已作废", "Cancelled"),
}
PENDING = (NoticeStatus.draft, NoticeStatus.approved)


def _tr(lang: i18n.Lang) -> Callable[[str], str]:
    def tn(key: str) -> str:
        pair = STRINGS.get(key)
        return (pair[1] if lang == "en" else pair[0]) if pair else key

    return tn


def _viewer(viewer: Viewer, action: Action = Action.view_notices) -> Viewer:
    return require(viewer, may(viewer.role, action))


def _statuses(status: str) -> Collection[NoticeStatus] | None:
    if status == "all":
        return None
    if status in NoticeStatus.__members__:
        return (NoticeStatus(status),)
    return PENDING


def _row(r: notice_queries.NoticeRow, lang: i18n.Lang) -> dict[str, Any]:
    tz = i18n.zone(r.estate_timezone)

    def when(ts: datetime | None) -> str:
        return i18n.format_time(ts, tz, seconds=False) if ts else ""

    return {
        "id": r.id,
        "number": r.number,
        "unit": f"{r.building_code} · {r.unit_code}",
        "kind": r.kind,
        "kind_label": i18n.lookup(KIND, r.kind, lang),
        "status": r.status,
        "status_label": i18n.lookup(STATUS, r.status, lang),
        "balance": notices.yuan(r.balance_fen),
        "effective": when(r.effective_at),
        "created": f"{when(r.created_at)} {r.created_by}",
        "body": r.body,
    }


@router.get(QUEUE, response_class=HTMLResponse)
def queue_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    status: Annotated[str, Query(max_length=16)] = "pending",
) -> HTMLResponse:
    _viewer(viewer)
    rows = notice_queries.queue(session, viewer.visible, statuses=_statuses(status))
    return form_page(
        request,
        "billing/notices.html",
        viewer,
        tn=_tr(viewer.lang),
        rows=[_row(r, viewer.lang) for r in rows],
        current=status if status == "all" or status in NoticeStatus.__members__ else "pending",
        statuses=["pending", *NoticeStatus.__members__, "all"],
        status_label=lambda s: _tr(viewer.lang)(s) if s in ("pending", "all") else i18n.lookup(STATUS, s, viewer.lang),
        can_approve=may(viewer.role, Action.approve_notices),
    )


def _print_html(rows: list[notice_queries.NoticeRow], lang: i18n.Lang) -> str:
    return TEMPLATES.get_template("billing/notice_print.html").render(
        lang=lang, notices=[_row(r, lang) for r in rows], title=_tr(lang)("print")
    )


def _printable(session: SessionDep, viewer: Viewer, notice_id: int | None, status: str) -> str:
    _viewer(viewer)
    if notice_id is not None:
        row = notice_queries.notice(session, notice_id, viewer.visible)
        if row is None:
            raise PageError(404, viewer)
        rows = [row]
    else:
        # Oldest first: the order the clerk hands them out, and the order of the numbers.
        rows = list(reversed(notice_queries.queue(session, viewer.visible, statuses=_statuses(status))))
    return _print_html(rows, viewer.lang)


def _html(body: str) -> HTMLResponse:
    response = HTMLResponse(body)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # A self-contained document: its own inline print stylesheet and nothing else.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return response


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"', "Cache-Control": "no-store"},
    )


def _pdf_or_error(html: str, name: str, viewer: Viewer) -> Response:
    try:
        return _pdf(html_to_pdf(html), name)
    except StewardError as exc:
        en, _, zh = exc.message.partition(" / ")
        return Response(zh if viewer.lang == "zh" and zh else en, status_code=exc.status_code, media_type="text/plain")


@router.get(QUEUE + "/print", response_class=HTMLResponse)
def print_batch(
    session: ReadSessionDep, viewer: ViewerDep, status: Annotated[str, Query(max_length=16)] = "pending"
) -> HTMLResponse:
    """Every notice of the queue view, one per A4 page."""
    return _html(_printable(session, viewer, None, status))


@router.get(QUEUE + "/print.pdf")
def print_batch_pdf(
    session: ReadSessionDep, viewer: ViewerDep, status: Annotated[str, Query(max_length=16)] = "pending"
) -> Response:
    return _pdf_or_error(_printable(session, viewer, None, status), "notices", viewer)


@router.get(QUEUE + "/{notice_id}/print", response_class=HTMLResponse)
def print_one(notice_id: int, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    return _html(_printable(session, viewer, notice_id, ""))


@router.get(QUEUE + "/{notice_id}/pdf")
def print_one_pdf(notice_id: int, session: ReadSessionDep, viewer: ViewerDep) -> Response:
    html = _printable(session, viewer, notice_id, "")
    return _pdf_or_error(html, f"notice-{notice_id}", viewer)


def _step(
    request: Request, session: SessionDep, viewer: Viewer, notice_id: int, step: str, back: str, reason: str = ""
) -> Response:
    same_origin(request, viewer)
    _viewer(viewer, Action.approve_notices)
    if notice_queries.notice(session, notice_id, viewer.visible) is None:
        raise PageError(404, viewer)
    target = back if back.startswith(QUEUE) else QUEUE  # flash_* redirects through safe_next too
    try:
        if step == "approve":
            notices.approve(session, notice_id, actor=viewer.username)
        elif step == "send":
            notices.send(session, notice_id, actor=viewer.username)
        else:
            if not reason.strip():
                raise StewardError(f"{STRINGS['need_reason'][1]} / {STRINGS['need_reason'][0]}", 422)
            notices.cancel(session, notice_id, actor=viewer.username, reason=clean_text(reason, "bad_text"))
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, f"flash_{step}")


Back = Annotated[str, Form(max_length=200)]


@router.post(QUEUE + "/{notice_id}/approve")
def approve(notice_id: int, request: Request, session: SessionDep, viewer: ViewerDep, back: Back = QUEUE) -> Response:
    return _step(request, session, viewer, notice_id, "approve", back)


@router.post(QUEUE + "/{notice_id}/send")
def send(notice_id: int, request: Request, session: SessionDep, viewer: ViewerDep, back: Back = QUEUE) -> Response:
    return _step(request, session, viewer, notice_id, "send", back)


@router.post(QUEUE + "/{notice_id}/cancel")
def cancel(
    notice_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Back = QUEUE,
) -> Response:
    return _step(request, session, viewer, notice_id, "cancel", back, reason)
