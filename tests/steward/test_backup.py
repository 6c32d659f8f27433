"""`steward db backup` / `steward db restore`: a dump restored into a fresh database is the same database.

Every table's row count is compared, and the money and ticket tables row by row (a checksum of each row's
text, in a fixed order). The TimescaleDB steps (pre/post-restore) run only with the extension, which the
test server does not have: `dump_has_timescaledb` is checked to say no here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from billing.service import open_account, record_payment
from devkit.postgres import create_database, drop_database
from storage.backup import dump_has_timescaledb
from storage.models import Estate, Point, Unit
from tests.support.world import add_samples, estate_file, populate

START = datetime(2026, 11, 20, 8, tzinfo=UTC)
MONEY_AND_TICKETS = ("ledger_transactions", "ledger_entries", "payments", "meter_charges", "tickets", "ticket_events")


def steward(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")} | {"STEWARD_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "steward", "db", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fingerprint(engine: Engine) -> tuple[dict[str, int], dict[str, str]]:
    """Row count of every table, and a checksum of the money and ticket tables' rows."""
    with engine.connect() as conn:
        tables = conn.scalars(text("select tablename from pg_tables where schemaname = 'public' order by 1")).all()
        counts = {t: int(conn.scalar(text(f'select count(*) from "{t}"')) or 0) for t in tables}
        sums = {
            t: str(
                conn.scalar(text(f"select md5(coalesce(string_agg(r::text, '|' order by r::text), '')) from \"{t}\" r"))
            )
            for t in MONEY_AND_TICKETS
        }
    return counts, sums


@pytest.fixture
def target(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_restore")
    yield url
    drop_database(pg_server_url, url)


def fill(url: str) -> None:
    """An estate with staff, readings, a ticket and paid hot-water accounts (ledger, payments)."""
    from tickets.service import open_ticket

    engine = create_engine(url)
    try:
        with Session(engine) as s, s.begin():
            populate(s, [estate_file("residents", "bk")], staff_in=["bk"], tokens=True, default_rules=True)
        with Session(engine) as s, s.begin():
            estate_id = s.scalars(select(Estate.id).where(Estate.code == "bk")).one()
            open_ticket(
                s, estate_id=estate_id, source="resident", category="water", priority="normal",
                title="厨房水龙头漏水", received_by="cli", reporter_name="张三", reporter_phone="13812345678",
            )  # fmt: skip
            units = s.scalars(select(Unit.id).order_by(Unit.id)).all()
            for n, unit_id in enumerate(units[:3]):
                account = open_account(s, unit_id)
                record_payment(
                    s, account_id=account.id, amount_fen=10_000 + n, method="counter", idempotency_key=f"bk-{n}",
                    actor="cli",
                )  # fmt: skip
            point_id = s.scalars(select(Point.id).order_by(Point.id)).first()
        assert point_id is not None
        add_samples(engine, point_id, [(START + timedelta(minutes=i), 20.0 + i / 10) for i in range(60)])
    finally:
        engine.dispose()


def test_backup_restores_into_a_fresh_database(fresh_database: str, target: str, tmp_path: Path) -> None:
    fill(fresh_database)
    dump = tmp_path / "steward.dump"
    done = steward(fresh_database, "backup", str(dump))
    assert done.returncode == 0, done.stdout + done.stderr
    assert dump.stat().st_size > 0
    assert not dump_has_timescaledb(dump)

    done = steward(target, "restore", str(dump))
    assert done.returncode == 0, done.stdout + done.stderr

    source_engine, target_engine = create_engine(fresh_database), create_engine(target)
    try:
        counts, sums = fingerprint(source_engine)
        assert counts["payments"] == 3
        assert counts["tickets"] == 1
        assert counts["samples"] >= 60
        assert fingerprint(target_engine) == (counts, sums)
    finally:
        source_engine.dispose()
        target_engine.dispose()

    # A restored database is a Steward database: the migrations find it at head.
    done = steward(target, "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr


def test_restore_refuses_a_database_that_is_not_empty(fresh_database: str, tmp_path: Path) -> None:
    dump = tmp_path / "steward.dump"
    assert steward(fresh_database, "backup", str(dump)).returncode == 0
    done = steward(fresh_database, "restore", str(dump))
    assert done.returncode != 0
    assert "empty" in done.stdout + done.stderr
