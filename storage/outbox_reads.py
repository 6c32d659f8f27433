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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from storage.models import Device, Outbox

STATUSES = ("pending", "sent", "acknowledged", "refused", "expired", "failed")
STATUS_LABELS = {
    "pending": ("待发送", "Pending"),
    "sent": ("已发送，待设备确认", "Sent, awaiting ack"),
    "acknowledged": ("设备已确认", "Acknowledged"),
    "refused": ("已拒绝", "Refused"),  # the device answered but did not apply it; the reason in last_error
    "expired": ("已过期", "Expired"),
    "failed": ("失败", "Failed"),
}


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
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown command status {status!r} (one of {', '.join(STATUSES)})")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1..1000 and offset ≥ 0")
    stmt = (
        select(Outbox, Device.estate_id, Device.code)
        .outerjoin(Device, Device.id == Outbox.device_id)
        .order_by(Outbox.created_at.desc(), Outbox.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if estate_ids is not None:
        stmt = stmt.where(Device.estate_id.in_(list(estate_ids)))
    if status is not None:
        stmt = stmt.where(Outbox.status == status)
    if device_id is not None:
        stmt = stmt.where(Outbox.device_id == device_id)
    return [
        CommandRow(
            id=o.id,
            estate_id=estate_id,
            device_id=o.device_id,
            device_code=code,
            topic=o.topic,
            command=o.topic.rsplit("/", 1)[-1],
            payload=dict(o.payload or {}),
            status=o.status,
            attempts=o.attempts,
            created_at=o.created_at,
            sent_at=o.sent_at,
            acked_at=o.acked_at,
            expires_at=o.expires_at,
            expired_at=o.expired_at,
            next_attempt_at=o.next_attempt_at,
            last_error=o.last_error,
        )
        for o, estate_id, code in session.execute(stmt).all()
    ]


def command_status_counts(session: Session, *, estate_ids: Collection[int] | None = None) -> dict[str, int]:
    """How many commands are in each status (every status present, zero included)."""
    stmt = select(Outbox.status, func.count()).outerjoin(Device, Device.id == Outbox.device_id).group_by(Outbox.status)
    if estate_ids is not None:
        stmt = stmt.where(Device.estate_id.in_(list(estate_ids)))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(s): int(n) for s, n in session.execute(stmt).all()})
    return counts


__all__ = ["STATUSES", "STATUS_LABELS", "CommandRow", "command_status_counts", "list_commands"]
