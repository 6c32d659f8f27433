"""A throwaway primary and a real streaming replica of it, for tests of STEWARD_DATABASE_READ_URL.

The primary is a fresh cluster (initdb in a temporary directory, wal_level=replica, a replication entry in
pg_hba.conf) rather than the shared test server: a base backup of the shared server would copy every other
test run's databases. The replica is ``pg_basebackup -R`` of it, started with pg_ctl on another free port; both
are stopped and deleted at the end. The PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) come from
/usr/lib/postgresql/<major>/bin or PATH. Without them the tests skip, unless a STEWARD_REQUIRE_* variable is set
(CI sets them and has the binaries), which makes that a failure.

As root (containers, CI), PostgreSQL refuses to run: the servers run as the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from steward.broker import free_port

TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def server_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's server binaries, or those on PATH; None when there are none."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all((directory / tool).exists() for tool in TOOLS):
            return directory
    return None


def required() -> bool:
    return any(k.startswith("STEWARD_REQUIRE_") and v not in ("", "0", "false") for k, v in os.environ.items())


def bin_dir_or_skip() -> Path:
    found = server_bin_dir()
    if found is None:
        reason = "no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) for a streaming replica"
        if required():
            pytest.fail(f"STEWARD_REQUIRE_* is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


@dataclass(frozen=True)
class ReplicaPair:
    primary_url: str  # SQLAlchemy URLs (postgresql+psycopg://) of the database `steward` on each server
    replica_url: str
    primary_dir: Path
    replica_dir: Path


class _Runner:
    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(root, entry.pw_uid, entry.pw_gid)

    def __call__(self, tool: str, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            [str(self.bin_dir / tool), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")


def _wait(check: str, url: str | Engine, timeout: float = 30) -> None:
    """Until ``check`` (a SELECT of one boolean) is true on the server at ``url``."""
    deadline = time.monotonic() + timeout
    engine = create_engine(url) if isinstance(url, str) else url
    try:
        while True:
            try:
                with engine.connect() as conn:
                    if conn.scalar(text(check)):
                        return
            except OperationalError:  # not accepting connections yet
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{check!r} not true at {engine.url} after {timeout} s")
            time.sleep(0.02)
    finally:
        if isinstance(url, str):
            engine.dispose()


@contextmanager
def streaming_replica(bin_dir: Path) -> Iterator[ReplicaPair]:
    """A primary with one streaming standby; the database ``steward`` exists on both (empty)."""
    root = Path(tempfile.mkdtemp(prefix="steward-replica-"))
    os.chmod(root, 0o700)
    run = _Runner(bin_dir, root)
    primary, replica = root / "primary", root / "replica"
    p_port, r_port = free_port(), free_port()
    started: list[Path] = []
    try:
        run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {p_port}\nunix_socket_directories = '{root}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                # A test server: nothing to keep across a crash, and fsync would only slow the test.
                "fsync = off\nfull_page_writes = off\ncluster_name = 'steward-primary'\n"
            )
        with (primary / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        run("pg_ctl", "-D", str(primary), "-l", str(root / "primary.log"), "-w", "start")
        started.append(primary)
        admin = f"postgresql+psycopg://postgres@127.0.0.1:{p_port}/postgres"
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE steward"))
        engine.dispose()
        run("pg_basebackup", "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres", "-D", str(replica), "-R", "-X",
            "stream", "-c", "fast", "--no-sync")  # fmt: skip
        with (replica / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {r_port}\ncluster_name = 'steward-replica'\n")
        run("pg_ctl", "-D", str(replica), "-l", str(root / "replica.log"), "-w", "start")
        started.append(replica)
        replica_url = f"postgresql+psycopg://postgres@127.0.0.1:{r_port}/steward"
        _wait("SELECT pg_is_in_recovery()", replica_url)
        _wait("SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming')", admin)
        yield ReplicaPair(
            primary_url=f"postgresql+psycopg://postgres@127.0.0.1:{p_port}/steward",
            replica_url=replica_url,
            primary_dir=primary,
            replica_dir=replica,
        )
    finally:
        for data in reversed(started):
            # Already down or not stopping: the directory goes anyway.
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def wait_replayed(primary: str | Engine, replica: str | Engine, timeout: float = 10) -> None:
    """Until the replica has replayed everything the primary had written when this was called."""
    engine = create_engine(primary) if isinstance(primary, str) else primary
    with engine.connect() as conn:
        lsn = conn.scalar(text("SELECT pg_current_wal_lsn()::text"))
    if isinstance(primary, str):
        engine.dispose()
    _wait(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn", replica, timeout)
