"""What ingest recorded, read once for the JSON API, the public /health and the pages: what each ingest
process last reported (the ``ingest_status`` rows ingest/health.py writes), and the messages it refused
(dead letters, quarantined messages). Which topics a caller may see is ``accounts.policy.topic_scope``:
callers pass the filter it builds.

It lives here rather than in ``ingest``: ingest is an entry point (layer 5) that the API and the pages must
not import, and the row is platform plumbing, not part of an estate's domain model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from core import clock
from storage.models import DeadLetter, IngestStatus, QuarantinedMessage
from storage.paging import Paged, fetch_page

# An ingest process that has not reported for this long is presumed down.
INGEST_STALE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class IngestStatusRow:
    instance: str
    updated_at: datetime
    status: str  # as reported, or "stale" past INGEST_STALE_AFTER
    counters: dict[str, Any]


def ingest_statuses(session: Session) -> list[IngestStatusRow]:
    rows = session.scalars(select(IngestStatus).order_by(IngestStatus.instance)).all()
    now = clock.now()
    return [
        IngestStatusRow(
            instance=r.instance,
            updated_at=r.updated_at,
            status="stale" if now - r.updated_at > INGEST_STALE_AFTER else r.status,
            counters=r.counters,
        )
        for r in rows
    ]


def count_since(
    session: Session, model: type[DeadLetter] | type[QuarantinedMessage], scope: Any, since: datetime
) -> int:
    """Dead letters or quarantined messages received after ``since`` on the topics ``scope`` admits."""
    return session.scalar(select(func.count()).select_from(model).where(scope, model.received_at > since)) or 0


def latest_dead_letters(session: Session, scope: ColumnElement[bool], limit: int) -> list[DeadLetter]:
    return list(session.scalars(select(DeadLetter).where(scope).order_by(DeadLetter.id.desc()).limit(limit)))


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    received_at: datetime
    topic: str
    error: str
    payload_preview: str  # the first 200 bytes of the payload, undecodable bytes replaced


def dead_letters_page(session: Session, scope: ColumnElement[bool], *, limit: int, offset: int) -> Paged[DeadLetterRow]:
    """Dead letters on the topics ``scope`` admits, newest first."""
    page = fetch_page(
        session, select(DeadLetter).where(scope).order_by(DeadLetter.id.desc()), limit=limit, offset=offset
    )
    rows: list[DeadLetter] = list(page.items)
    return Paged(
        items=[
            DeadLetterRow(
                id=r.id,
                received_at=r.received_at,
                topic=r.topic,
                error=r.error,
                payload_preview=r.payload[:200].decode("utf-8", errors="replace"),
            )
            for r in rows
        ],
        total=page.total,
    )


def quarantine_page(
    session: Session, scope: ColumnElement[bool], *, reason: str | None = None, limit: int, offset: int
) -> Paged[QuarantinedMessage]:
    """Quarantined messages on the topics ``scope`` admits, optionally of one reason, newest first."""
    stmt = select(QuarantinedMessage).where(scope).order_by(QuarantinedMessage.id.desc())
    if reason:
        stmt = stmt.where(QuarantinedMessage.reason == reason)
    return fetch_page(session, stmt, limit=limit, offset=offset)


@dataclass(frozen=True)
class QuarantineGroup:
    device_code: str
    reason: str
    count: int
    last: datetime
    latest: QuarantinedMessage | None  # the newest message of the group


def quarantine_groups(session: Session, scope: ColumnElement[bool], limit: int) -> list[QuarantineGroup]:
    """Quarantined messages grouped by device and reason, most recently received group first."""
    groups = session.execute(
        select(
            QuarantinedMessage.device_code,
            QuarantinedMessage.reason,
            func.count(),
            func.max(QuarantinedMessage.received_at),
            func.max(QuarantinedMessage.id),
        )
        .where(scope)
        .group_by(QuarantinedMessage.device_code, QuarantinedMessage.reason)
        .order_by(func.max(QuarantinedMessage.received_at).desc())
        .limit(limit)
    ).all()
    latest = {
        m.id: m
        for m in session.scalars(select(QuarantinedMessage).where(QuarantinedMessage.id.in_([g[4] for g in groups])))
    }
    return [
        QuarantineGroup(code, reason, count, last, latest.get(last_id)) for code, reason, count, last, last_id in groups
    ]
