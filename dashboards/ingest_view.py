"""What the ingest page shows: ingest processes (head office only), dead letters and quarantined messages of
the viewer's estates, read through ``storage.ingest_reads`` and scoped by ``accounts.policy``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from accounts import policy
from core import clock
from dashboards import i18n, ingest_reasons
from dashboards.i18n import Lang
from storage import ingest_reads
from storage.models import DeadLetter, QuarantinedMessage
from storage.replication import ReplicaStatus

DEAD_LETTERS_SHOWN = 50
QUARANTINE_GROUPS_SHOWN = 50


def _scope(column: Any, all_estates: bool, codes: list[str]) -> Any:
    """Head office sees every message; estate staff only those on their estates' topics (as the JSON API)."""
    return policy.topic_scope(column, all_estates, codes)


def replica_view(status: ReplicaStatus, lang: Lang) -> dict[str, Any]:
    """The read replica's card: its state as one word with a level, its lag, and the primary's standbys."""
    if not status.configured:
        state, level = "replica_none", ""
    elif not status.reachable:
        state, level = "replica_unreachable", "bad"
    elif not status.in_recovery:
        state, level = "replica_not_replica", "bad"
    elif not status.streaming:
        state, level = "replica_not_streaming", "bad"
    else:
        state, level = "replica_streaming", ""
    return {
        "configured": status.configured,
        "state": i18n.t(state, lang),
        "level": level,
        "lag": None if status.replay_lag_s is None else f"{status.replay_lag_s:.3f}",
        "behind_bytes": status.behind_bytes,
        "error": status.error,
        "standbys": [
            {
                "name": s.name,
                "client": s.client or "",
                "state": s.state or "",
                "lag": "" if s.replay_lag_s is None else f"{s.replay_lag_s:.3f}",
                "behind_bytes": "" if s.behind_bytes is None else s.behind_bytes,
            }
            for s in status.standbys
        ],
    }


def ingest_view(
    session: Session,
    all_estates: bool,
    codes: list[str],
    lang: Lang,
    tz: ZoneInfo,
    *,
    show_processes: bool,
    replica: ReplicaStatus | None = None,
) -> dict[str, Any]:
    """``replica``: the read replica's status, shown to whoever sees the ingest processes (None: not shown)."""
    now = clock.now()
    statuses = [
        {
            "instance": s.instance,
            "status": s.status,
            "status_text": i18n.lookup(i18n.INGEST_STATUS, s.status, lang, fallback=s.status),
            "reported": i18n.format_time(s.updated_at, tz),
            "age": i18n.format_age((now - s.updated_at).total_seconds(), lang),
            "counters": [(i18n.lookup(i18n.COUNTERS, k, lang), v) for k, v in s.counters.items() if isinstance(v, int)],
        }
        # Ingest processes span every estate: accounts.policy.may_see_ingest_status, as the JSON API asks.
        for s in (ingest_reads.ingest_statuses(session) if show_processes else [])
    ]
    day = now - timedelta(hours=24)
    dl_scope = _scope(DeadLetter.topic, all_estates, codes)
    dead = ingest_reads.latest_dead_letters(session, dl_scope, DEAD_LETTERS_SHOWN)
    dead_24h = ingest_reads.count_since(session, DeadLetter, dl_scope, day)
    q_scope = _scope(QuarantinedMessage.topic, all_estates, codes)
    groups = ingest_reads.quarantine_groups(session, q_scope, QUARANTINE_GROUPS_SHOWN)
    q_24h = ingest_reads.count_since(session, QuarantinedMessage, q_scope, day)
    return {
        "statuses": statuses,
        "dead_letters": [
            {
                "id": r.id,
                "received_at": i18n.format_time(r.received_at, tz),
                "topic": r.topic,
                "error": ingest_reasons.dead_letter_reason(r.error, lang).label,
                "error_raw": r.error,
                "payload": r.payload[:200].decode("utf-8", errors="replace"),
            }
            for r in dead
        ],
        "dead_24h": dead_24h,
        "quarantine": [
            {
                "device_code": g.device_code,
                "reason": i18n.lookup(i18n.QUARANTINE_REASONS, g.reason, lang, fallback=g.reason),
                "reason_code": g.reason,
                "count": g.count,
                "last": i18n.format_time(g.last, tz),
                "detail": ingest_reasons.quarantine_detail(g.reason, g.latest.detail, lang, tz).label
                if g.latest is not None
                else "",
                "detail_raw": g.latest.detail if g.latest is not None else "",
                "topic": g.latest.topic if g.latest is not None else "",
            }
            for g in groups
        ],
        "quarantined_24h": q_24h,
        "replica": replica_view(replica, lang) if replica is not None else None,
    }
