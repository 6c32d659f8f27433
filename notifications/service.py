"""The delivery queue: `enqueue` in the caller's transaction, `dispatch_due` from the worker.

**Never twice for one notice.** A delivery is one (key, channel, recipient): `enqueue` inserts it with
``ON CONFLICT DO NOTHING`` and returns the row that exists, so a notice evaluated twice, or by two
workers, queues one delivery; once ``sent`` it is never claimed again.

**The guarantee: at least once to the channel, recorded honestly.** `dispatch_due` works in three steps,
each of its own transaction except the send:

1. *claim*: due rows (``pending`` / ``failed``, ``next_attempt_at <= now``) ``FOR UPDATE SKIP LOCKED``;
   each gets ``attempts + 1``, a lease (``next_attempt_at = now + LEASE``) and ``last_error`` saying the
   attempt is in flight; commit. Two dispatchers never hold the same row.
2. *send* each message outside any transaction (an SMTP or HTTP call may take seconds).
3. *record* each outcome in its own short transaction: ``sent`` + ``sent_at``; or ``failed`` with the
   error and ``next_attempt_at = now + backoff(attempts)``; or ``gave_up`` after `max_attempts` tries.

A crash after the send and before step 3 leaves the row claimed with its in-flight note: when the lease
runs out it is sent again (a duplicate message, never a lost one) and the page shows that an attempt's
outcome was unknown. A message is lost only if the channel accepted it and then lost it itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict, InvalidInput, NotFound
from notifications.channels import CHANNEL_NAMES, Channel, Message
from storage.models import AuditLog, NotificationDelivery

log = logging.getLogger(__name__)

PENDING, SENT, FAILED, GAVE_UP = "pending", "sent", "failed", "gave_up"
STATUSES = (PENDING, SENT, FAILED, GAVE_UP)
STATUS_LABELS = {
    PENDING: ("待发送", "Pending"),
    SENT: ("已发送", "Sent"),
    FAILED: ("发送失败，待重试", "Failed, will retry"),
    GAVE_UP: ("已放弃", "Gave up"),
}

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
MAX_ATTEMPTS = 8
# Longer than any channel's timeout: a claimed row is only taken again when its sender is surely gone.
LEASE = timedelta(minutes=5)
IN_FLIGHT = "in flight: attempt {n} claimed at {at}, outcome not recorded (sent again after the lease)"


def backoff(attempts: int, *, base: timedelta = BACKOFF_BASE, cap: timedelta = BACKOFF_MAX) -> timedelta:
    """The wait after the `attempts`-th failed try: 1, 2, 4, 8 … min, at most `cap`."""
    wait: timedelta = base * 2 ** max(0, attempts - 1)
    return min(cap, wait)


def enqueue(
    session: Session,
    *,
    key: str,
    channel: str,
    recipient: str,
    subject: str,
    body: str,
    source: str,
    at: datetime,
    estate_id: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Queue one delivery, due at `at`; idempotent on (key, channel, recipient). Returns the delivery id."""
    if channel not in CHANNEL_NAMES:
        raise InvalidInput(f"unknown notification channel {channel!r}")
    if not key or not recipient or len(key) > 200 or len(recipient) > 254:
        raise InvalidInput("a delivery needs a key (≤ 200 characters) and a recipient (≤ 254)")
    stmt = (
        insert(NotificationDelivery)
        .values(
            key=key,
            channel=channel,
            recipient=recipient,
            subject=subject[:200],
            body=body,
            source=source,
            estate_id=estate_id,
            extra=dict(extra or {}),
            status=PENDING,
            attempts=0,
            next_attempt_at=at,
            created_at=at,
        )
        .on_conflict_do_nothing(index_elements=["key", "channel", "recipient"])
        .returning(NotificationDelivery.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return int(new_id)
    return int(
        session.execute(
            select(NotificationDelivery.id).where(
                NotificationDelivery.key == key,
                NotificationDelivery.channel == channel,
                NotificationDelivery.recipient == recipient,
            )
        ).scalar_one()
    )


@dataclass(frozen=True, slots=True)
class DispatchResult:
    sent: int
    failed: int
    gave_up: int


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    channel: str
    attempts: int
    message: Message


def _claim(session: Session, channels: list[str], now: datetime, limit: int) -> list[_Claimed]:
    rows = session.scalars(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.status.in_([PENDING, FAILED]),
            NotificationDelivery.next_attempt_at <= now,
            NotificationDelivery.channel.in_(channels),
        )
        .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    out = []
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + LEASE
        row.last_error = IN_FLIGHT.format(n=row.attempts, at=now.isoformat())
        out.append(
            _Claimed(row.id, row.channel, row.attempts, Message(row.recipient, row.subject, row.body, dict(row.extra)))
        )
    session.flush()
    return out


def dispatch_due(
    factory: sessionmaker[Session],
    channels: Mapping[str, Channel],
    now: datetime,
    *,
    limit: int = 100,
    max_attempts: int = MAX_ATTEMPTS,
    backoff_cap: timedelta = BACKOFF_MAX,
) -> DispatchResult:
    """Send the due deliveries of the configured `channels` (others wait, pending); module doc for the guarantee."""
    if not channels:
        return DispatchResult(0, 0, 0)
    with factory() as session, session.begin():
        claimed = _claim(session, sorted(channels), now, limit)
    sent = failed = gave_up = 0
    for item in claimed:
        error: str | None = None
        try:
            channels[item.channel].send(item.message)
        except Exception as exc:  # any failure of a channel is a failed attempt, never a crashed job
            error = f"{type(exc).__name__}: {exc}"[:2000]
        values: dict[str, Any]
        if error is None:
            values = {"status": SENT, "sent_at": now, "last_error": None}
            sent += 1
        elif item.attempts >= max_attempts:
            values = {"status": GAVE_UP, "last_error": error}
            gave_up += 1
            log.error("notification %d gave up after %d attempts: %s", item.id, item.attempts, error)
        else:
            values = {
                "status": FAILED,
                "last_error": error,
                "next_attempt_at": now + backoff(item.attempts, cap=backoff_cap),
            }
            failed += 1
            log.warning("notification %d attempt %d failed: %s", item.id, item.attempts, error)
        with factory() as session, session.begin():
            # Only the attempt we claimed: if our lease ran out and another dispatcher re-claimed the row,
            # its attempt number differs and this (late) outcome must not overwrite its record.
            session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id == item.id, NotificationDelivery.attempts == item.attempts)
                .values(**values)
            )
    return DispatchResult(sent, failed, gave_up)


# Statuses a person may send again at once: a failed try waiting for its backoff, or one the dispatcher gave up on.
RETRYABLE = (FAILED, GAVE_UP)


def retry_now(session: Session, delivery_id: int, *, actor: str, now: datetime) -> NotificationDelivery:
    """Make a failed or given-up delivery due now (the next dispatcher run sends it), audited.

    It goes back to ``failed`` with its attempts kept: the record says how often it was tried, and a delivery
    that gave up gets one more try per retry rather than a fresh run of eight (a dead mail server is not
    hammered again because someone pressed the button)."""
    if not actor.strip():
        raise InvalidInput("actor is required / 须填写经办人")
    row = session.scalars(
        select(NotificationDelivery).where(NotificationDelivery.id == delivery_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound("delivery not found / 未找到该发送记录")
    if row.status not in RETRYABLE:
        raise Conflict(
            f"delivery {row.id} is {row.status}: only failed or given-up deliveries are retried / "
            "仅发送失败或已放弃的记录可立即重试"
        )
    before = {"status": row.status, "attempts": row.attempts, "next_attempt_at": row.next_attempt_at.isoformat()}
    row.status = FAILED
    row.next_attempt_at = now
    session.add(
        AuditLog(
            actor=actor,
            action="notification.retry",
            object=f"notification_delivery:{row.id}",
            detail={**before, "channel": row.channel, "key": row.key},
            at=now,
        )
    )
    session.flush()
    return row


__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "FAILED",
    "GAVE_UP",
    "LEASE",
    "MAX_ATTEMPTS",
    "PENDING",
    "RETRYABLE",
    "SENT",
    "STATUSES",
    "STATUS_LABELS",
    "DispatchResult",
    "backoff",
    "dispatch_due",
    "enqueue",
    "retry_now",
]
