"""How far a streaming read replica (``STEWARD_DATABASE_READ_URL``) trails the primary, for the ingest page and
the API's ingest status, and the log position a client's last write reached (read-your-writes, web/replica.py).

Two views of one lag, because each side can be wrong alone:

- on the replica, ``now() - pg_last_xact_replay_timestamp()``: how old the newest replayed transaction is. On an
  idle primary this grows without the replica being behind, so it counts as 0 when everything received has been
  replayed while the WAL receiver streams. A replica that is not streaming is reported as such, and its lag is
  the age of its newest replayed transaction, growing while it is cut off (Steward's primary is never idle for
  long: ingest and the worker write all the time).
- on the primary, ``pg_stat_replication``: each standby's state and its write/flush/replay lag as the primary
  measured them. The lag columns need superuser or the ``pg_monitor`` role; without it they read as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Standby:
    """One row of the primary's ``pg_stat_replication``."""

    name: str  # application_name (the replica's cluster_name or 'walreceiver')
    client: str | None
    state: str | None  # streaming, catchup, backup, …
    sync_state: str | None
    replay_lag_s: float | None
    behind_bytes: int | None  # primary's current WAL position minus the standby's replay position


@dataclass(frozen=True)
class ReplicaStatus:
    configured: bool
    reachable: bool = False
    in_recovery: bool | None = None  # False: the read URL points at a primary (misconfigured)
    streaming: bool | None = None  # the replica's WAL receiver is connected
    replay_lag_s: float | None = None  # from the replica, 0 when all it received is replayed
    behind_bytes: int | None = None  # received but not yet replayed, on the replica
    standbys: list[Standby] = field(default_factory=list)
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.configured and self.reachable and bool(self.in_recovery) and bool(self.streaming)


NOT_CONFIGURED = ReplicaStatus(configured=False)

_REPLICA_SIDE = text(
    """
    SELECT pg_is_in_recovery(),
           EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
           CASE WHEN NOT pg_is_in_recovery() THEN NULL
                WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
                     AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0
                ELSE GREATEST(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, 0.0) END,
           CASE WHEN pg_is_in_recovery()
                THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END
    """
)

_PRIMARY_SIDE = text(
    """
    SELECT application_name, host(client_addr), state, sync_state,
           EXTRACT(EPOCH FROM replay_lag)::float8,
           CASE WHEN replay_lsn IS NOT NULL THEN pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END
    FROM pg_stat_replication ORDER BY application_name, client_addr
    """
)


def standbys(primary: Session | Connection) -> list[Standby]:
    """The primary's view of its streaming standbys (empty when none are connected)."""
    return [Standby(*row) for row in primary.execute(_PRIMARY_SIDE).all()]


def replica_status(primary: Session | Connection, replica: Engine | None) -> ReplicaStatus:
    """The replica's lag, or NOT_CONFIGURED when ``replica`` is None (reads go to the primary)."""
    if replica is None:
        return NOT_CONFIGURED
    seen = standbys(primary)
    try:
        with replica.connect() as conn:
            in_recovery, streaming, lag, behind = conn.execute(_REPLICA_SIDE).one()
    except SQLAlchemyError as exc:
        return ReplicaStatus(configured=True, standbys=seen, error=str(getattr(exc, "orig", exc)).splitlines()[0])
    return ReplicaStatus(
        configured=True,
        reachable=True,
        in_recovery=in_recovery,
        streaming=streaming,
        replay_lag_s=lag,
        behind_bytes=behind,
        standbys=seen,
    )


def current_wal_lsn(primary: Session | Connection) -> str:
    """Where the primary's written WAL ends now: a client's writes committed before this call are at or before it.

    The write position, not the insert position: the insert position can point past a page header that no
    standby receives until more WAL follows. With synchronous_commit on (PostgreSQL's default, and Steward never
    turns it off) a commit returns only after its record is flushed, so it lies before the write position."""
    return str(primary.scalar(text("SELECT pg_current_wal_lsn()::text")))


def replayed(replica: Session, lsn: str) -> bool:
    """Whether the replica has replayed the primary's WAL up to ``lsn`` (so it shows what was written by then)."""
    return bool(replica.scalar(text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"), {"lsn": lsn}))
