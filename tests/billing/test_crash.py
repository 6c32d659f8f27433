"""A billing run killed with SIGKILL at random points, then rerun, gives exactly one clean run's charges;
two concurrent runs produce one set. Real PostgreSQL, real processes (`python -m billing.tasks`)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from billing import queries
from billing.pricing import Tier
from billing.service import add_tariff
from billing.tasks import billing_run
from tests.billing.factory import make_estate

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime.fromisoformat("2026-11-28T00:00:00+08:00")  # the readings cross into December (tiers restart)
UP_TO = T0 + timedelta(days=10)
METERS, READINGS = 30, 36
ROUNDS, KILLS_PER_ROUND = 5, 4  # 20 kills
BILLING_TABLES = (
    "meter_charges, meter_replacements, billing_holds, billing_cursors, payments, ledger_entries,"
    " ledger_transactions, billing_supply_changes, billing_supply_states, billing_notices, billing_household_flags,"
    " billing_accounts"
)


def load(url: str) -> None:
    engine = create_engine(url)
    rnd = random.Random(7)
    with Session(engine) as session, session.begin():
        estate_id, households = make_estate(session, METERS, register_max="1000.000")
        add_tariff(
            session,
            estate_id=estate_id,
            effective_from=datetime.fromisoformat("2026-01-01T00:00:00+08:00"),
            tiers=[Tier(Decimal(1), 1850), Tier(None, 2775)],
            actor="zhou",
        )
        add_tariff(
            session,
            estate_id=estate_id,
            effective_from=T0 + timedelta(days=1, hours=5),
            tiers=[Tier(None, 2100)],
            actor="zhou",
        )
        rows = []
        for i, hh in enumerate(households):
            reg = Decimal("995.000") if i % 7 == 0 else Decimal(rnd.randint(0, 500))  # some roll over
            for k in range(READINGS):
                reg = (reg + Decimal(rnd.randint(0, 90)) / 1000 * 5) % 1000
                if i == 3 and k == 20:
                    reg = Decimal("0.200")  # a reset: held for a person to confirm
                rows.append({"ts": T0 + timedelta(hours=5 * k), "d": hh.device_id, "r": reg})
        session.execute(text("INSERT INTO meter_readings (ts, device_id, register) VALUES (:ts, :d, :r)"), rows)
    engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    with Session(engine) as session:
        charges = [
            tuple(r)
            for r in session.execute(
                text(
                    "SELECT d.code, c.from_ts, c.to_ts, c.kind, c.volume_m3, c.value_fen, c.amount_fen,"
                    " t.key IS NOT NULL FROM meter_charges c JOIN devices d ON d.id = c.device_id"
                    " LEFT JOIN ledger_transactions t ON t.id = c.transaction_id ORDER BY d.code, c.from_ts"
                )
            )
        ]
        balances = [
            tuple(r)
            for r in session.execute(
                text(
                    "SELECT u.code, a.balance_fen FROM billing_accounts a JOIN units u ON u.id = a.unit_id"
                    " ORDER BY u.code"
                )
            )
        ]
        holds = [
            tuple(r)
            for r in session.execute(text("SELECT device_id, from_ts, to_ts, status FROM billing_holds ORDER BY 1, 2"))
        ]
        tx = session.scalar(text("SELECT count(*) FROM ledger_transactions"))
        assert queries.unbalanced_transactions(session) == []
        assert queries.balance_mismatches(session) == []
    engine.dispose()
    return {"charges": charges, "balances": balances, "holds": holds, "transactions": tx}


def truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {BILLING_TABLES}"))  # TRUNCATE fires no row trigger: a test-only reset
    engine.dispose()


def spawn(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing.tasks", url, UP_TO.isoformat()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigkill_at_random_points_then_rerun_gives_one_clean_run(fresh_database: str) -> None:
    load(fresh_database)
    started = time.monotonic()
    proc = spawn(fresh_database)
    ready = time.monotonic()
    assert proc.wait(timeout=300) == 0
    run_s = time.monotonic() - ready
    expected = snapshot(fresh_database)
    # One charge per stretch of like intervals (billing.coalesce), not one per reading: a month, a tariff
    # version, a rollover or the interval across the tariff change each start a new one.
    assert METERS * 2 <= len(expected["charges"]) < METERS * READINGS / 4
    assert [h[3] for h in expected["holds"]] == ["held"]
    assert any(c[3] == "rollover" for c in expected["charges"])
    rnd = random.Random(int(started))
    kills = 0
    for _ in range(ROUNDS):
        truncate(fresh_database)
        for _ in range(KILLS_PER_ROUND):
            proc = spawn(fresh_database)
            time.sleep(rnd.uniform(0, run_s))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            kills += 1
            partial = snapshot(fresh_database)  # whatever committed is balanced and a prefix of the clean run
            assert set(partial["charges"]) <= set(expected["charges"])
        proc = spawn(fresh_database)
        assert proc.wait(timeout=300) == 0
        assert snapshot(fresh_database) == expected
    assert kills >= 20


def test_two_concurrent_runs_produce_one_set(fresh_database: str) -> None:
    load(fresh_database)
    engine = create_engine(fresh_database)
    factory = sessionmaker(engine, expire_on_commit=False)
    billing_run(factory, UP_TO)
    expected = snapshot(fresh_database)
    truncate(fresh_database)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            billing_run(factory, UP_TO)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert snapshot(fresh_database) == expected
    billing_run(factory, UP_TO)  # and a third, later, adds nothing
    assert snapshot(fresh_database) == expected
    engine.dispose()
