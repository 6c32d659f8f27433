"""The billing crash scenario (30 meters, 36 readings, a tariff change, rollovers and a reset), shared by
tests/billing/test_crash.py (20 SIGKILLs) and bench/billing_kill.py (50): load it, run `python -m billing.tasks`
as a child, snapshot what a run wrote, truncate the billing tables between rounds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from billing import queries
from billing.pricing import Tier
from billing.service import add_tariff
from devkit.billing_factory import make_estate

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime.fromisoformat("2026-11-28T00:00:00+08:00")  # the readings cross into December (tiers restart)
UP_TO = T0 + timedelta(days=10)
METERS, READINGS = 30, 36
ROUNDS, KILLS_PER_ROUND = 5, 4  # 20 kills
BILLING_TABLES = (
    "billing_statements, billing_periods, billing_manual_readings, meter_charges, meter_replacements, billing_holds,"
    " billing_cursors, payments, ledger_entries,"
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
        # Every column but when it was written: a rerun must leave the clean run's figures, row for row.
        statements = [
            tuple(r)
            for r in session.execute(
                text(
                    "SELECT u.code, s.period, s.opening_fen, s.charges_fen, s.charges_m3, s.late_fen, s.late_m3,"
                    " s.payments_fen, s.refunds_fen, s.adjustments_fen, s.closing_fen, s.first_reading_at,"
                    " s.first_register, s.last_reading_at, s.last_register, s.by_tariff::text, s.late::text, s.digest"
                    " FROM billing_statements s JOIN billing_accounts a ON a.id = s.account_id"
                    " JOIN units u ON u.id = a.unit_id ORDER BY u.code, s.period"
                )
            )
        ]
        assert queries.unbalanced_transactions(session) == []
        assert queries.balance_mismatches(session) == []
    engine.dispose()
    return {"charges": charges, "balances": balances, "holds": holds, "transactions": tx, "statements": statements}


def truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {BILLING_TABLES}"))  # TRUNCATE fires no row trigger: a test-only reset
    engine.dispose()


QUARTER = "2026Q4"  # the scenario's readings all lie in it


def spawn(url: str, *, statements: bool = False) -> subprocess.Popen[str]:
    """A billing run up to UP_TO as a child process; with ``statements``, the 2026Q4 statement run instead
    (which charges up to the quarter's end first, then writes every household's statement)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["billing.statements", url, QUARTER] if statements else ["billing.tasks", url, UP_TO.isoformat()]
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc
