"""Reads of the delivery queue for the pages and the API: newest first, filtered by status, channel, source, estate."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from notifications.channels import CHANNEL_NAMES
from notifications.service import STATUSES
from storage.models import NotificationDelivery
from storage.paging import Paged, fetch_page


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


def _row(r: NotificationDelivery) -> DeliveryRow:
    return DeliveryRow(
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


def _stmt(
    *,
    status: str | None,
    channel: str | None,
    source: str | None,
    estate_ids: Collection[int] | None,
) -> Select[Any]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown delivery status {status!r} (one of {', '.join(STATUSES)})")
    if channel is not None and channel not in CHANNEL_NAMES:
        raise InvalidInput(f"unknown channel {channel!r} (one of {', '.join(CHANNEL_NAMES)})")
    d = NotificationDelivery
    stmt = select(d).order_by(d.created_at.desc(), d.id.desc())
    if status is not None:
        stmt = stmt.where(d.status == status)
    if channel is not None:
        stmt = stmt.where(d.channel == channel)
    if source is not None:
        stmt = stmt.where(d.source == source)
    if estate_ids is not None:
        stmt = stmt.where(d.estate_id.in_(list(estate_ids)))
    return stmt


def _check_window(limit: int, offset: int) -> None:
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1..1000 and offset ≥ 0")


def list_deliveries(
    session: Session,
    *,
    status: str | None = None,
    source: str | None = None,
    channel: str | None = None,
    estate_ids: Collection[int] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DeliveryRow]:
    """Deliveries newest first. `estate_ids` None: every estate (head office); else only those estates'
    (company-wide deliveries, without an estate, are for head office only)."""
    _check_window(limit, offset)
    stmt = _stmt(status=status, channel=channel, source=source, estate_ids=estate_ids)
    return [_row(r) for r in session.scalars(stmt.limit(limit).offset(offset))]


def deliveries_page(
    session: Session,
    *,
    status: str | None = None,
    channel: str | None = None,
    source: str | None = None,
    estate_ids: Collection[int] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Paged[DeliveryRow]:
    """One page of deliveries newest first, with the count the filters match (scope as `list_deliveries`)."""
    _check_window(limit, offset)
    found = fetch_page(
        session,
        _stmt(status=status, channel=channel, source=source, estate_ids=estate_ids),
        limit=limit,
        offset=offset,
    )
    return Paged(items=[_row(r) for r in found.items], total=found.total)


def delivery(session: Session, delivery_id: int) -> DeliveryRow | None:
    found = session.get(NotificationDelivery, delivery_id)
    return _row(found) if found is not None else None


def delivery_estate(session: Session, delivery_id: int) -> tuple[bool, int | None]:
    """(exists, its estate id) — the caller's scope check before acting on one delivery."""
    row = session.execute(
        select(NotificationDelivery.estate_id).where(NotificationDelivery.id == delivery_id)
    ).one_or_none()
    return (False, None) if row is None else (True, row[0])


def status_counts(session: Session, *, estate_ids: Collection[int] | None = None) -> dict[str, int]:
    """How many deliveries are in each status (every status present, zero included)."""
    d = NotificationDelivery
    stmt = select(d.status, func.count()).group_by(d.status)
    if estate_ids is not None:
        stmt = stmt.where(d.estate_id.in_(list(estate_ids)))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(s): int(n) for s, n in session.execute(stmt).all()})
    return counts


__all__ = ["DeliveryRow", "deliveries_page", "delivery", "delivery_estate", "list_deliveries", "status_counts"]
