"""What each ingest process last reported (the ``ingest_status`` rows ingest/health.py writes), read once
for the JSON API, the public /health and the ingest page.

It lives here rather than in ``ingest``: ingest is an entry point (layer 5) that the API and the pages must
not import, and the row is platform plumbing, not part of an estate's domain model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from storage.models import IngestStatus

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
