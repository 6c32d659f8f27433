"""Operations pages: every device command of the viewer's estates (``/commands``, live) and every notification
delivery (``/notifications``) with "retry now" for failed ones.

Who may see what: ``alarms.policy`` (commands; the billing clerk sees billing's valve commands only) and
``notifications.policy`` (deliveries, masked recipients, retry). The JSON API asks the same policies; the reads
are ``storage.outbox_reads`` and ``notifications.queries``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from alarms import policy as command_policy
from core import clock, glossary
from core.errors import StewardError
from dashboards import i18n
from dashboards.forms import flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import viewer_tz
from dashboards.render import page_data, render_fragment
from dashboards.streaming import stream
from dashboards.viewer import PageError, Viewer, ViewerDep, can_see, require, safe_next
from facility import queries as facility
from notifications import policy as delivery_policy
from notifications import queries as delivery_queries
from notifications import service as delivery_service
from notifications.channels import CHANNEL_NAMES
from storage import outbox_reads
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50

# The reason a writer put in a command's payload (billing/supply.py, tickets/from_alarms.py).
REASONS: dict[str, tuple[str, str]] = {
    "billing_restriction": ("欠费限供", "Supply restricted (arrears)"),
    "billing_suspension": ("欠费停供", "Supply suspended (arrears)"),
    "billing_restoration": ("缴费恢复供水", "Supply restored (paid)"),
    "vacant_flow": glossary.VACANT_METER_RUNNING,
}
ACTIONS: dict[str, tuple[str, str]] = {"close": ("关阀", "Close valve"), "open": ("开阀", "Open valve")}
ORIGINS: dict[str, tuple[str, str]] = {
    "alarm": ("报警工单", "Alarm / ticket"),
    "billing": ("热水收费", "Hot-water billing"),
    "other": ("其他", "Other"),
}
CHANNELS: dict[str, tuple[str, str]] = {
    "log": ("日志", "Log"),
    "email": ("电子邮件", "E-mail"),
    "wecom_robot": ("企业微信群机器人", "WeCom group robot"),
}
SOURCES: dict[str, tuple[str, str]] = {
    "ticket_escalation": ("工单升级", "Ticket escalation"),
    "billing_notice": ("热水通知", "Hot-water notice"),
    "daily_summary": ("每日汇总", "Daily summary"),
}


def _scope(viewer: Viewer) -> list[int] | None:
    # Head office also sees what belongs to no estate (commands to unknown devices, company-wide messages).
    return None if viewer.all_estates else sorted(viewer.visible)


def _when(ts: datetime | None, tz: ZoneInfo) -> str:
    return i18n.format_time(ts, tz, seconds=False) if ts else ""


def _offset(value: int) -> int:
    return max(0, min(value, 1_000_000))


def _pager(total: int, offset: int, base: str) -> dict[str, Any]:
    sep = "&" if "?" in base else "?"
    return {
        "total": total,
        "first": offset + 1 if total else 0,
        "last": min(offset + PAGE_SIZE, total),
        "prev": f"{base}{sep}offset={max(0, offset - PAGE_SIZE)}" if offset > 0 else None,
        "next": f"{base}{sep}offset={offset + PAGE_SIZE}" if offset + PAGE_SIZE < total else None,
    }


# --- device commands --------------------------------------------------------------------------------------------


def _command_reader(viewer: Viewer) -> bool:
    return command_policy.may_read_commands(viewer.role)


def _commands_view(
    session: Session, viewer: Viewer, *, status: str, device: str, origin: str, offset: int
) -> dict[str, Any]:
    lang = viewer.lang
    tz = viewer_tz(session, viewer)
    allowed = command_policy.command_origins(viewer.role)
    origins: set[str] | None = set(allowed) if allowed is not None else None
    if origin in outbox_reads.ORIGINS:
        origins = {origin} & origins if origins is not None else {origin}
    found = outbox_reads.commands_page(
        session,
        estate_ids=_scope(viewer),
        status=status if status in outbox_reads.STATUSES else None,
        device_code=device or None,
        origins=origins,
        limit=PAGE_SIZE,
        offset=offset,
    )
    codes = facility.estate_codes(session, set(viewer.visible))
    see_tickets, see_accounts = can_see(viewer, "tickets"), can_see(viewer, "billing")
    rows = []
    for r in found.items:
        kind = i18n.lookup(ACTIONS, r.action, lang) if r.command == "valve" and r.action else r.command
        link = None
        if r.ticket_id is not None and see_tickets:
            link = (f"/tickets/{r.ticket_id}", r.ticket_number or f"#{r.ticket_id}")
        elif r.account_id is not None and see_accounts:
            link = (f"/billing/accounts/{r.account_id}", i18n.t("ops_account_link", lang))
        rows.append(
            {
                "id": r.id,
                "estate": codes.get(r.estate_id, "") if r.estate_id is not None else "",
                "device": r.device_code or "",
                "kind": kind,
                "status": r.status,
                "status_label": i18n.lookup(outbox_reads.STATUS_LABELS, r.status, lang),
                "created": _when(r.created_at, tz),
                "sent": _when(r.sent_at, tz),
                "acked": _when(r.acked_at, tz),
                "expires": _when(r.expires_at, tz),
                "attempts": r.attempts,
                # A refused command's last_error is the device's reason (version_gap, …): said in words.
                "error": (
                    i18n.lookup(i18n.REFUSAL_REASONS, r.last_error, lang, r.last_error)
                    if r.status == "refused" and r.last_error
                    else r.last_error or ""
                ),
                "origin": r.origin,
                "origin_label": i18n.lookup(ORIGINS, r.origin, lang),
                "reason": i18n.lookup(REASONS, r.reason, lang) if r.reason else "",
                "ticket_number": r.ticket_number or "",
                "link": link,
                "alarm_id": r.alarm_id,
            }
        )
    counts = outbox_reads.command_status_counts(session, estate_ids=_scope(viewer), origins=origins)
    return {
        "rows": rows,
        "counts": counts,
        "pager": _pager(found.total, offset, _commands_url(status, device, origin)),
        "now": i18n.format_time(clock.now(), tz, date=False),
    }


def _commands_url(status: str, device: str, origin: str, path: str = "/commands", offset: int = 0) -> str:
    query = urlencode(
        [(k, v) for k, v in (("status", status), ("device", device), ("origin", origin), ("offset", offset)) if v]
    )
    return path + ("?" + query if query else "")


Filter = Annotated[str, Query(max_length=64)]


@router.get("/commands", response_class=HTMLResponse)
def commands_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    status: Filter = "",
    device: Filter = "",
    origin: Filter = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    require(viewer, _command_reader(viewer))
    status = status if status in outbox_reads.STATUSES else ""
    origin = origin if origin in outbox_reads.ORIGINS else ""
    device = device.strip().replace("\x00", "")
    view = _commands_view(session, viewer, status=status, device=device, origin=origin, offset=_offset(offset))
    live = _commands_url(status, device, origin, "/live/commands", offset)
    allowed = command_policy.command_origins(viewer.role)
    return form_page(
        request,
        "operations/commands.html",
        viewer,
        v=view,
        current=status,
        device=device,
        origin=origin,
        statuses=outbox_reads.STATUSES,
        status_label=lambda s: i18n.lookup(outbox_reads.STATUS_LABELS, s, viewer.lang),
        origins=[o for o in outbox_reads.ORIGINS if allowed is None or o in allowed],
        origin_label=lambda o: i18n.lookup(ORIGINS, o, viewer.lang),
        billing_only=allowed is not None,
        page_data=page_data(viewer.lang, live, "html"),
    )


@router.get("/live/commands")
async def live_commands(
    request: Request,
    status: Filter = "",
    device: Filter = "",
    origin: Filter = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """The commands table again whenever ingest commits (acks arrive through ingest) and on the periodic tick."""

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        view = _commands_view(
            session, viewer, status=status, device=device.strip(), origin=origin, offset=_offset(offset)
        )
        return {"now": view["now"], "html": render_fragment("operations/_commands_body.html", viewer.lang, v=view)}

    return await stream(request, build, _command_reader, min_interval=2.0)


# --- notification deliveries ------------------------------------------------------------------------------------


@router.get("/notifications", response_class=HTMLResponse)
def notifications_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ViewerDep,
    status: Filter = "",
    channel: Filter = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    require(viewer, delivery_policy.may_read(viewer.role))
    lang = viewer.lang
    status = status if status in delivery_service.STATUSES else ""
    channel = channel if channel in CHANNEL_NAMES else ""
    offset = _offset(offset)
    tz = viewer_tz(session, viewer)
    found = delivery_queries.deliveries_page(
        session,
        status=status or None,
        channel=channel or None,
        estate_ids=_scope(viewer),
        limit=PAGE_SIZE,
        offset=offset,
    )
    codes = facility.estate_codes(session, set(viewer.visible))
    rows = [
        {
            "id": r.id,
            "channel": r.channel,
            "channel_label": i18n.lookup(CHANNELS, r.channel, lang),
            "recipient": delivery_policy.shown_recipient(r.recipient, viewer.role),
            "subject": r.subject,
            "source": i18n.lookup(SOURCES, r.source, lang, r.source),
            "estate": codes.get(r.estate_id, "") if r.estate_id is not None else "",
            "status": r.status,
            "status_label": i18n.lookup(delivery_service.STATUS_LABELS, r.status, lang),
            "attempts": r.attempts,
            "next": _when(r.next_attempt_at, tz) if r.status in ("pending", "failed") else "",
            "error": r.last_error or "",
            "created": _when(r.created_at, tz),
            "sent": _when(r.sent_at, tz),
            "retryable": r.status in delivery_service.RETRYABLE,
        }
        for r in found.items
    ]
    query = urlencode([(k, v) for k, v in (("status", status), ("channel", channel)) if v])
    here = "/notifications" + ("?" + query if query else "")
    return form_page(
        request,
        "operations/notifications.html",
        viewer,
        rows=rows,
        current=status,
        channel=channel,
        statuses=delivery_service.STATUSES,
        status_label=lambda s: i18n.lookup(delivery_service.STATUS_LABELS, s, lang),
        channels=CHANNEL_NAMES,
        channel_label=lambda c: i18n.lookup(CHANNELS, c, lang),
        counts=delivery_queries.status_counts(session, estate_ids=_scope(viewer)),
        pager=_pager(found.total, offset, here),
        here=here + (("&" if "?" in here else "?") + f"offset={offset}" if offset else ""),
        can_retry=delivery_policy.may_retry(viewer.role),
        tz=tz.key,
    )


@router.post("/notifications/{delivery_id}/retry", response_model=None)
def notifications_retry(
    delivery_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    back: Annotated[str, Form(max_length=300)] = "/notifications",
) -> Response:
    same_origin(request, viewer)
    require(viewer, delivery_policy.may_retry(viewer.role))
    exists, estate_id = (
        delivery_queries.delivery_estate(session, delivery_id) if 0 < delivery_id < 2**62 else (False, None)
    )
    visible = estate_id in viewer.visible if estate_id is not None else viewer.all_estates
    if not exists or not visible:
        raise PageError(404, viewer)
    target = safe_next(back) if back.startswith("/notifications") else "/notifications"
    try:
        delivery_service.retry_now(session, delivery_id, actor=viewer.username, now=clock.now())
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "ops_retry_queued")
