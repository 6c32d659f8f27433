"""Reads of the delivery queue for the pages and the API: newest first, filtered by status, source, estate."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from notifications.service import STATUSES
from storage.models import NotificationDelivery


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    key: str
    channel: str
    recipient: str
    subject: str
    source: str
    estate_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def list_deliveries(
    session: Session,
    *,
    status: str | None = None,
    source: str | None = None,
    estate_ids: Collection[int] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DeliveryRow]:
    """Deliveries newest first. `estate_ids` None: every estate (head office); else only those estates'
    (company-wide deliveries, without an estate, are for head office only)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown delivery status {status!r} (one of {', '.join(STATUSES)})")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1..1000 and offset ≥ 0")
    d = NotificationDelivery
    stmt = select(d).order_by(d.created_at.desc(), d.id.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(d.status == status)
    if source is not None:
        stmt = stmt.where(d.source == source)
    if estate_ids is not None:
        stmt = stmt.where(d.estate_id.in_(list(estate_ids)))
    return [
        DeliveryRow(
            r.id,
            r.key,
            r.channel,
            r.recipient,
            r.subject,
            r.source,
            r.estate_id,
            r.status,
            r.attempts,
            r.next_attempt_at,
            r.last_error,
            r.created_at,
            r.sent_at,
        )
        for r in session.scalars(stmt)
    ]


def status_counts(session: Session, *, estate_ids: Collection[int] | None = None) -> dict[str, int]:
    """How many deliveries are in each status (every status present, zero included)."""
    d = NotificationDelivery
    stmt = select(d.status, func.count()).group_by(d.status)
    if estate_ids is not None:
        stmt = stmt.where(d.estate_id.in_(list(estate_ids)))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(s): int(n) for s, n in session.execute(stmt).all()})
    return counts


__all__ = ["DeliveryRow", "list_deliveries", "status_counts"]
