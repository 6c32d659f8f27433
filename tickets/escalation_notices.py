"""Tell people about an escalation: one WeCom group-robot message naming the role, an e-mail to each
active staff user of that role on the ticket's estate who has an address, and a line in the log.

Called by `tickets.escalation.escalate_due` in its transaction for each new 'escalated' event; the
deliveries are queued (`notifications.service.enqueue`) and sent by the worker after commit, so a
rolled-back escalation sends nothing. The delivery key is the escalation's own identity
(ticket, clock, due time, level): the same escalation never notifies twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.channels import EMAIL, LOG, WECOM_ROBOT
from notifications.recipients import staff_emails
from notifications.service import enqueue
from storage.models import Estate, Ticket
from tickets.const import CLOCK_LABELS, ESCALATION_ROLE_LABELS, NOTIFY_STAFF_ROLE, PRIORITY_LABELS, Clock, Priority

SOURCE = "ticket_escalation"


@dataclass(frozen=True, slots=True)
class Escalation:
    ticket: Ticket
    detail: Mapping[str, Any]  # the 'escalated' event's detail: clock, level, notify_role, due_at, breached_at


def delivery_key(ticket_id: int, detail: Mapping[str, Any]) -> str:
    return f"ticket:{ticket_id}:escalated:{detail['clock']}:{detail['level']}:{detail['due_at']}"


def _local(iso: str, tz: str) -> str:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def compose(ticket: Ticket, estate: Estate, detail: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject, WeCom markdown, e-mail text) in Chinese, times in the estate's timezone."""
    role_zh = ESCALATION_ROLE_LABELS.get(str(detail["notify_role"]), (str(detail["notify_role"]), ""))[0]
    clock_zh = CLOCK_LABELS[Clock(detail["clock"])][0]
    priority_zh = PRIORITY_LABELS[Priority(ticket.priority)][0] if ticket.priority in set(Priority) else ticket.priority
    due = _local(str(detail["due_at"]), estate.timezone)
    subject = f"【工单升级】{ticket.number} {clock_zh}已超时，请{role_zh}跟进"
    lines = [
        ("工单", f"{ticket.number} {ticket.title}"),
        ("小区", estate.name),
        ("超时", f"{clock_zh}（应于 {due} 前）"),
        ("优先级", priority_zh),
        ("升级", f"第 {detail['level']} 级，通知{role_zh}"),
    ]
    markdown = f"**@{role_zh}** 请跟进：\n" + "\n".join(f"> {k}：{v}" for k, v in lines)
    text = f"{role_zh}您好：\n\n以下工单{clock_zh}已超时，已升级至您处理。\n\n"
    text += "\n".join(f"{k}：{v}" for k, v in lines)
    text += "\n\n—— Steward 物业平台（自动发送，请勿回复）"
    return subject, markdown, text


def enqueue_escalation_notices(session: Session, escalations: Sequence[Escalation], now: datetime) -> list[int]:
    """Queue the deliveries for new escalations; returns the delivery ids (existing ones for repeats)."""
    if not escalations:
        return []
    estates = {
        e.id: e for e in session.scalars(select(Estate).where(Estate.id.in_({x.ticket.estate_id for x in escalations})))
    }
    ids: list[int] = []
    for esc in escalations:
        ticket, detail = esc.ticket, esc.detail
        estate = estates[ticket.estate_id]
        role = str(detail["notify_role"])
        subject, markdown, text = compose(ticket, estate, detail)
        # A notice target may be named differently from the staff role that reads it (服务中心经理 is the
        # 项目经理 account), or have no account yet (客服主管): then the group message and the log carry it.
        staff_role = NOTIFY_STAFF_ROLE.get(role, role)
        ids += enqueue_staff_notice(
            session,
            key=delivery_key(ticket.id, detail),
            estate_id=estate.id,
            group=f"role:{role}",
            email_roles=[staff_role] if staff_role is not None else [],
            subject=subject,
            markdown=markdown,
            text=text,
            source=SOURCE,
            now=now,
        )
    return ids


def enqueue_staff_notice(
    session: Session,
    *,
    key: str,
    estate_id: int,
    group: str,
    email_roles: Sequence[str],
    subject: str,
    markdown: str,
    text: str,
    source: str,
    now: datetime,
) -> list[int]:
    """The path every staff notice of an estate takes (escalations, the daily summary): a line in the log, one WeCom
    group-robot message (`group` names whom it is for), and an e-mail to each active staff user of `email_roles` on
    the estate who has an address; all queued under `key`, so the same notice is never queued twice."""
    # The log always records it, so an estate without a robot or mail server still has the trail.
    targets = [(LOG, group, text), (WECOM_ROBOT, group, markdown)]
    if email_roles:
        targets += [(EMAIL, address, text) for address in staff_emails(session, estate_id, email_roles)]
    return [
        enqueue(
            session,
            key=key,
            channel=channel,
            recipient=recipient,
            subject=subject,
            body=body,
            source=source,
            at=now,
            estate_id=estate_id,
        )
        for channel, recipient, body in targets
    ]


__all__ = ["SOURCE", "Escalation", "compose", "delivery_key", "enqueue_escalation_notices", "enqueue_staff_notice"]
