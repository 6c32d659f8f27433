"""Swipe-log retention: access events older than their estate's limit are deleted (issue 12 §4).

Swipes say where a resident was and when: sensitive personal information under PIPL Art. 28, kept only
as long as needed — 180 days by default, ``estates.policy.access_swipe_retention_days`` per estate (a
longer period only where a contract or the police require it). The worker's ``access_retention`` job
calls `purge_swipes` every hour; it deletes in bounded chunks so a first run over years of history
never holds a long lock on the table ingest writes to. Door events (held or forced open, stored in the
same table with no card) go with them: they are the controller's log, not an alarm's record (an alarm
keeps its own evidence).

A DELETE rather than TimescaleDB's drop_chunks retention policy: the limit is per estate and chunks
hold every estate's rows; on a hypertable the DELETE still only touches the old chunks' indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from access.const import SWIPE_RETENTION_DAYS, SWIPE_RETENTION_KEY
from access.service import estate_setting
from storage.models import Estate

CHUNK = 10_000  # rows per DELETE: a bounded lock and WAL burst per statement

_DELETE_OLD = text(
    "DELETE FROM access_events ae WHERE (ae.controller_id, ae.ts, ae.card_uid) IN ("
    " SELECT e.controller_id, e.ts, e.card_uid FROM access_events e"
    " JOIN devices d ON d.id = e.controller_id"
    " WHERE d.estate_id = :estate AND e.ts < :cutoff LIMIT :chunk)"
)


@dataclass
class PurgeResult:
    deleted: dict[str, int] = field(default_factory=dict)  # estate code → rows deleted

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def retention_of(estate: Estate) -> timedelta:
    return timedelta(days=estate_setting(estate.policy or {}, SWIPE_RETENTION_KEY, SWIPE_RETENTION_DAYS))


def purge_swipes(session: Session, now: datetime, *, chunk: int = CHUNK) -> PurgeResult:
    """Delete every estate's access events older than its retention at ``now`` (flushes, never commits)."""
    result = PurgeResult()
    for estate in session.query(Estate).order_by(Estate.id):
        cutoff = now - retention_of(estate)
        deleted = 0
        while True:
            cursor = session.execute(_DELETE_OLD, {"estate": estate.id, "cutoff": cutoff, "chunk": chunk})
            n = cursor.rowcount or 0  # type: ignore[attr-defined]  # a DELETE's CursorResult
            deleted += n
            if n < chunk:
                break
        if deleted:
            result.deleted[estate.code] = deleted
    return result


__all__ = ["CHUNK", "PurgeResult", "purge_swipes", "retention_of"]
