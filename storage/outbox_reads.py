"""The device commands of the outbox with their delivery status, read for the JSON API and the pages.

It lives here rather than in ``worker`` (an entry point that the API and the pages must not import): the
outbox is platform plumbing that several domains write (tickets' valve closures, billing's supply
restrictions, access's ACL pushes). Scoping is by estate, through the command's device: callers pass the
estates the user may see (the domain policy decides which), None for head office.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, any_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from storage.models import Alarm, BillingSupplyChange, Device, Outbox, Ticket
from storage.paging import Paged

STATUSES = ("pending", "sent", "acknowledged", "refused", "expired", "failed")
STATUS_LABELS = {
    "pending": ("待发送", "Pending"),
    "sent": ("已发送，待设备确认", "Sent, awaiting ack"),
    "acknowledged": ("设备已确认", "Acknowledged"),
    "refused": ("已拒绝", "Refused"),  # the device answered but did not apply it; the reason in last_error
    "expired": ("已过期", "Expired"),
    "failed": ("失败", "Failed"),
}
# Why a command was queued, from what its writer put in the payload: billing's supply changes give a
# ``billing_*`` reason (billing/supply.py), the alarm → ticket path a ticket number (tickets/from_alarms.py).
ORIGINS = ("alarm", "billing", "other")


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: int
    estate_id: int | None
    device_id: int | None
    device_code: str | None
    topic: str
    command: str  # the topic's last segment: valve, acl, ...
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    expires_at: datetime | None
    expired_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    origin: str = "other"  # one of ORIGINS
    reason: str | None = None  # the payload's reason, e.g. billing_restriction, vacant_flow
    action: str | None = None  # the payload's action, e.g. close / open
    ticket_id: int | None = None  # the repair ticket the command belongs to (alarm origin)
    ticket_number: str | None = None
    account_id: int | None = None  # the household account whose supply change queued it (billing origin)
    alarm_id: int | None = None  # the "command not acknowledged" alarm it raised, if any


def _origin() -> ColumnElement[str]:
    reason = Outbox.payload["reason"].astext
    return case(
        (reason.like("billing\\_%"), "billing"),
        (or_(Outbox.payload["ticket"].astext.is_not(None), reason == "vacant_flow"), "alarm"),
        else_="other",
    )


def _commands_stmt(
    *,
    estate_ids: Collection[int] | None,
    status: str | None,
    device_id: int | None = None,
    device_code: str | None = None,
    command: str | None = None,
    action: str | None = None,
    origins: Collection[str] | None = None,
) -> Select[Any]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown command status {status!r} (one of {', '.join(STATUSES)})")
    unknown = sorted(set(origins or ()) - set(ORIGINS))
    if unknown:
        raise InvalidInput(f"unknown command origin {unknown[0]!r} (one of {', '.join(ORIGINS)})")
    origin = _origin().label("origin")
    # The links are correlated lookups of one row each: the page shows a handful of commands at a time.
    account = (
        select(BillingSupplyChange.account_id)
        .where(Outbox.id == any_(BillingSupplyChange.outbox_ids))
        .order_by(BillingSupplyChange.id)
        .limit(1)
        .scalar_subquery()
    )
    alarm = (
        select(Alarm.id)
        .where(Alarm.device_id == Outbox.device_id, Alarm.detail["outbox_id"].astext == cast(Outbox.id, String))
        .order_by(Alarm.id)
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        select(Outbox, Device.estate_id, Device.code, origin, Ticket.id, Ticket.number, account, alarm)
        .outerjoin(Device, Device.id == Outbox.device_id)
        .outerjoin(
            Ticket,
            and_(Ticket.number == Outbox.payload["ticket"].astext, Ticket.estate_id == Device.estate_id),
        )
        .order_by(Outbox.created_at.desc(), Outbox.id.desc())
    )
    if estate_ids is not None:
        stmt = stmt.where(Device.estate_id.in_(list(estate_ids)))
    if status is not None:
        stmt = stmt.where(Outbox.status == status)
    if device_id is not None:
        stmt = stmt.where(Outbox.device_id == device_id)
    if device_code:
        stmt = stmt.where(Device.code == device_code)
    if command:
        # steward/{estate}/down/{device}/{command} (protocol.topics.downlink)
        stmt = stmt.where(func.split_part(Outbox.topic, "/", 5) == command)
    if action:
        stmt = stmt.where(Outbox.payload["action"].astext == action)
    if origins is not None:
        stmt = stmt.where(_origin().in_(list(origins)))
    return stmt


def _command_row(row: Any) -> CommandRow:
    o, estate_id, code, origin, ticket_id, ticket_number, account_id, alarm_id = row
    payload = dict(o.payload or {})
    return CommandRow(
        id=o.id,
        estate_id=estate_id,
        device_id=o.device_id,
        device_code=code,
        topic=o.topic,
        command=o.topic.rsplit("/", 1)[-1],
        payload=payload,
        status=o.status,
        attempts=o.attempts,
        created_at=o.created_at,
        sent_at=o.sent_at,
        acked_at=o.acked_at,
        expires_at=o.expires_at,
        expired_at=o.expired_at,
        next_attempt_at=o.next_attempt_at,
        last_error=o.last_error,
        origin=str(origin),
        reason=str(payload["reason"]) if payload.get("reason") else None,
        action=str(payload["action"]) if payload.get("action") else None,
        ticket_id=ticket_id,
        ticket_number=ticket_number,
        account_id=account_id,
        alarm_id=alarm_id,
    )


def commands_page(
    session: Session,
    *,
    estate_ids: Collection[int] | None = None,
    status: str | None = None,
    device_code: str | None = None,
    command: str | None = None,
    action: str | None = None,
    origins: Collection[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Paged[CommandRow]:
    """One page of commands newest first, with the count the filters match; `origins` None: every origin
    (the caller's policy narrows it, e.g. the billing clerk sees billing's commands only)."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1..1000 and offset ≥ 0")
    stmt = _commands_stmt(
        estate_ids=estate_ids,
        status=status,
        device_code=device_code,
        command=command,
        action=action,
        origins=origins,
    )
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.execute(stmt.limit(limit).offset(offset)).all()
    return Paged(items=[_command_row(r) for r in rows], total=int(total))


def list_commands(
    session: Session,
    *,
    estate_ids: Collection[int] | None = None,
    status: str | None = None,
    device_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[CommandRow]:
    """Commands newest first; `estate_ids` None: every estate (rows without a device only for head office)."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1..1000 and offset ≥ 0")
    stmt = _commands_stmt(estate_ids=estate_ids, status=status, device_id=device_id)
    return [_command_row(r) for r in session.execute(stmt.limit(limit).offset(offset)).all()]


def command_status_counts(
    session: Session, *, estate_ids: Collection[int] | None = None, origins: Collection[str] | None = None
) -> dict[str, int]:
    """How many commands are in each status (every status present, zero included)."""
    stmt = select(Outbox.status, func.count()).outerjoin(Device, Device.id == Outbox.device_id).group_by(Outbox.status)
    if estate_ids is not None:
        stmt = stmt.where(Device.estate_id.in_(list(estate_ids)))
    if origins is not None:
        stmt = stmt.where(_origin().in_(list(origins)))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(s): int(n) for s, n in session.execute(stmt).all()})
    return counts


__all__ = [
    "ORIGINS",
    "STATUSES",
    "STATUS_LABELS",
    "CommandRow",
    "command_status_counts",
    "commands_page",
    "list_commands",
]
