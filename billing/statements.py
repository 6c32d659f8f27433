"""Quarterly statements per household, derived from the ledger and meter_charges (issue 11 §3).

A statement row per (account, quarter): opening balance, the quarter's charges (m³ and fen, by tariff
version), late readings of closed quarters booked here (上期补收), payments, refunds, adjustments, the
closing balance and the first and last register reading. Every figure is read back from what the
charging and the ledger wrote; nothing is computed twice:

* opening / closing = −Σ the household's ledger entries dated before the quarter's start / end;
* payments, refunds, adjustments = the quarter's transactions of that kind (by ledger date);
* charges = the meter_charges whose interval ends in the quarter (their tier month lies in it) and that
  were not booked elsewhere; late = those booked here (`booked_period`, billing/periods.py).
The table's check (closing = opening + payments − refunds + adjustments − charges − late) ties the two
sources together: a charge whose ledger date and quarter disagreed would fail the write, not print.

The run (`statement_run`) is resumable and idempotent: it first charges every meter of the estate up
to the quarter's end (`tasks.billing_run`, itself resumable), then writes statements in groups of
accounts, one transaction each, under ``pg_advisory_xact_lock(STATEMENT_LOCK_SPACE, estate)``; a row is
an upsert on (account, period) that changes only when its content `digest` differs. So a rerun, or a
run killed midway and rerun, leaves exactly the rows of one clean run, and two runs at once one set.
A closed quarter is never written again (`close_period` writes its final statements in the same
transaction that closes it, under the period lock that keeps charges out).

`python -m billing.statements DATABASE_URL 2026Q4 [ESTATE_ID]` runs it once (the crash tests).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from billing import periods
from billing.const import METER_KIND, STATEMENT_LOCK_SPACE, AccountKind, PeriodStatus
from billing.periods import Quarter
from billing.service import audit
from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import BillingAccount, BillingPeriod, BillingStatement, Estate, MeterCharge

GROUP = 500  # accounts per transaction

_LEDGER = text(
    """
    SELECT en.account_id,
      -coalesce(sum(en.amount_fen) FILTER (WHERE t.at < :s), 0) AS opening,
      -coalesce(sum(en.amount_fen) FILTER (WHERE t.at < :e), 0) AS closing,
      -coalesce(sum(en.amount_fen) FILTER (WHERE t.at >= :s AND t.at < :e AND t.kind = 'payment'), 0) AS payments,
      coalesce(sum(en.amount_fen) FILTER (WHERE t.at >= :s AND t.at < :e AND t.kind = 'refund'), 0) AS refunds,
      -coalesce(sum(en.amount_fen) FILTER (WHERE t.at >= :s AND t.at < :e AND t.kind = 'adjustment'), 0)
        AS adjustments
    FROM ledger_entries en JOIN ledger_transactions t ON t.id = en.transaction_id
    WHERE en.account_id = ANY(CAST(:a AS int[])) AND t.at < :e
    GROUP BY en.account_id
    """
)
# The quarter's own charges: interval ending in it (its tier month is one of the quarter's), not booked later.
_CHARGES = text(
    """
    SELECT c.account_id, (p->>'tariff_id')::int AS tariff_id, sum((p->>'volume_m3')::numeric) AS volume,
           sum((p->>'value_fen')::numeric) AS value
    FROM meter_charges c CROSS JOIN LATERAL jsonb_array_elements(c.pricing) p
    WHERE c.account_id = ANY(CAST(:a AS int[])) AND c.month BETWEEN :m0 AND :m1 AND c.booked_period IS NULL
    GROUP BY 1, 2
    """
)
_CHARGE_TOTALS = text(
    """
    SELECT c.account_id, coalesce(sum(c.amount_fen), 0) AS fen, coalesce(sum(c.volume_m3), 0) AS m3
    FROM meter_charges c
    WHERE c.account_id = ANY(CAST(:a AS int[])) AND c.month BETWEEN :m0 AND :m1 AND c.booked_period IS NULL
    GROUP BY 1
    """
)
_LATE = text(
    """
    SELECT c.account_id, d.code, c.month, c.from_ts, c.to_ts, c.volume_m3, c.amount_fen
    FROM meter_charges c JOIN devices d ON d.id = c.device_id
    WHERE c.booked_period = :p AND c.account_id = ANY(CAST(:a AS int[]))
    ORDER BY c.account_id, d.code, c.from_ts
    """
)
_READINGS = text(
    """
    SELECT a.id AS account_id, f.ts AS first_ts, f.register AS first_reg, l.ts AS last_ts, l.register AS last_reg
    FROM billing_accounts a JOIN devices dv ON dv.unit_id = a.unit_id AND dv.kind = :kind
    CROSS JOIN LATERAL (
      SELECT m.ts, m.register FROM meter_readings m WHERE m.device_id = dv.id AND m.ts >= :s AND m.ts < :e
      ORDER BY m.ts LIMIT 1) f
    CROSS JOIN LATERAL (
      SELECT m.ts, m.register FROM meter_readings m WHERE m.device_id = dv.id AND m.ts >= :s AND m.ts < :e
      ORDER BY m.ts DESC LIMIT 1) l
    WHERE a.id = ANY(CAST(:a AS int[]))
    """
)
_TARIFFS = text("SELECT id, effective_from FROM tariffs WHERE estate_id = :e")


def _m3(value: Any) -> str:
    """A volume as a fixed 6-place string (what Numeric(20, 6) stores): the digest sees what is stored."""
    return f"{Decimal(value):.6f}"


def _digest(row: dict[str, Any]) -> str:
    # The figures only: the row's own key (account, estate) is what the upsert matches on.
    body = {k: v for k, v in row.items() if k not in ("digest", "generated_at", "account_id", "estate_id")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def compute(session: Session, estate_id: int, quarter: Quarter, account_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The statement rows of `account_ids` for `quarter` (dicts of billing_statements columns), from the ledger."""
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound("estate not found / 未找到该小区")
    zone = ZoneInfo(estate.timezone)
    start, end = quarter.bounds(zone)
    m0, m1 = quarter.months()
    ids = sorted(account_ids)
    p = {"a": ids, "s": start, "e": end, "m0": date(quarter.year, m0, 1), "m1": date(quarter.year, m1, 1)}
    ledger = {r.account_id: r for r in session.execute(_LEDGER, p)}
    totals = {r.account_id: r for r in session.execute(_CHARGE_TOTALS, p)}
    tariffs: dict[int, datetime] = {r.id: r.effective_from for r in session.execute(_TARIFFS, {"e": estate_id})}
    by_tariff: dict[int, list[dict[str, Any]]] = {}
    for r in session.execute(_CHARGES, p):
        by_tariff.setdefault(r.account_id, []).append(
            {
                "tariff_id": r.tariff_id,
                "effective_from": tariffs[r.tariff_id].isoformat() if r.tariff_id in tariffs else None,
                "volume_m3": _m3(r.volume),
                "value_fen": _m3(r.value),
            }
        )
    late: dict[int, list[dict[str, Any]]] = {}
    for r in session.execute(_LATE, {"a": ids, "p": quarter.label}):
        late.setdefault(r.account_id, []).append(
            {
                "device": r.code,
                "period": periods.quarter_of(r.to_ts, estate.timezone).label,
                "from": r.from_ts.astimezone(zone).isoformat(),
                "to": r.to_ts.astimezone(zone).isoformat(),
                "volume_m3": _m3(r.volume_m3),
                "amount_fen": int(r.amount_fen),
            }
        )
    readings: dict[int, tuple[Any, Any, Any, Any]] = {}
    for r in session.execute(_READINGS, {**p, "kind": METER_KIND}):
        have = readings.get(r.account_id)
        first = (r.first_ts, r.first_reg) if have is None or r.first_ts < have[0] else (have[0], have[1])
        last = (r.last_ts, r.last_reg) if have is None or r.last_ts > have[2] else (have[2], have[3])
        readings[r.account_id] = (*first, *last)
    now = clock.now()
    rows = []
    for a in ids:
        lg, tot = ledger.get(a), totals.get(a)
        lates = late.get(a, [])
        first_ts, first_reg, last_ts, last_reg = readings.get(a, (None, None, None, None))
        row: dict[str, Any] = {
            "estate_id": estate_id,
            "account_id": a,
            "period": quarter.label,
            "starts_at": start,
            "ends_at": end,
            "opening_fen": int(lg.opening) if lg else 0,
            "charges_fen": int(tot.fen) if tot else 0,
            "charges_m3": _m3(tot.m3 if tot else 0),
            "late_fen": sum(x["amount_fen"] for x in lates),
            "late_m3": _m3(sum((Decimal(x["volume_m3"]) for x in lates), Decimal(0))),
            "payments_fen": int(lg.payments) if lg else 0,
            "refunds_fen": int(lg.refunds) if lg else 0,
            "adjustments_fen": int(lg.adjustments) if lg else 0,
            "closing_fen": int(lg.closing) if lg else 0,
            "first_reading_at": first_ts,
            "first_register": first_reg,
            "last_reading_at": last_ts,
            "last_register": last_reg,
            "by_tariff": sorted(by_tariff.get(a, []), key=lambda t: t["tariff_id"]),
            "late": lates,
        }
        row["digest"] = _digest(row)
        row["generated_at"] = now
        rows.append(row)
    return rows


def write(session: Session, estate_id: int, quarter: Quarter, account_ids: Sequence[int]) -> int:
    """Compute and upsert the statements of `account_ids` (caller's transaction); rows written or changed.

    Refuses a closed quarter (409): its statements are final."""
    session.execute(text("SELECT pg_advisory_xact_lock(:s, :e)"), {"s": STATEMENT_LOCK_SPACE, "e": estate_id})
    status = session.scalar(
        select(BillingPeriod.status).where(BillingPeriod.estate_id == estate_id, BillingPeriod.period == quarter.label)
    )
    if status == PeriodStatus.closed:
        raise Conflict(f"{quarter.label} is closed: its statements are final / 该季度已结账，对账单不再变动")
    rows = compute(session, estate_id, quarter, account_ids)
    if not rows:
        return 0
    stmt = pg_insert(BillingStatement).values(rows)
    excluded = stmt.excluded
    changed = session.execute(
        stmt.on_conflict_do_update(
            index_elements=["account_id", "period"],
            set_={c: excluded[c] for c in rows[0] if c not in ("account_id", "period", "estate_id")},
            where=BillingStatement.digest != excluded.digest,
        ).returning(BillingStatement.id)
    ).all()
    session.flush()
    return len(changed)


def household_accounts(session: Session, estate_id: int, before: datetime) -> list[int]:
    """The estate's household hot-water accounts with a life before `before`, in id order: opened
    before it, or charged for water used before it (an account opened when its meter was first billed)."""
    used = select(MeterCharge.id).where(MeterCharge.account_id == BillingAccount.id, MeterCharge.from_ts < before)
    return list(
        session.scalars(
            select(BillingAccount.id)
            .where(
                BillingAccount.estate_id == estate_id,
                BillingAccount.kind == AccountKind.hot_water.value,
                or_(BillingAccount.opened_at < before, used.exists()),
            )
            .order_by(BillingAccount.id)
        )
    )


@dataclass
class StatementResult:
    quarter: str
    estates: list[int] = field(default_factory=list)
    statements: int = 0  # rows considered
    written: int = 0  # rows inserted or changed
    skipped_closed: list[int] = field(default_factory=list)  # estates whose quarter is closed already


def statement_run(
    factory: Callable[[], Session],
    quarter: Quarter,
    *,
    estate_id: int | None = None,
    on_group: Callable[[int], None] | None = None,
    charge: bool = True,
) -> StatementResult:
    """Charge up to the quarter's end, then write every household's statement (groups of `GROUP` accounts).

    A quarter under way gets statements to date (rewritten as it goes on); one not started is refused.
    ``charge=False``: the caller has charged past the quarter's end already (the worker's billing job)."""
    from billing.tasks import billing_run  # tasks imports nothing of this module; run-time import keeps it so

    result = StatementResult(quarter.label)
    with factory() as session:
        if estate_id is not None:
            estates = [(estate_id, session.scalar(select(Estate.timezone).where(Estate.id == estate_id)))]
            if estates[0][1] is None:
                raise NotFound("estate not found / 未找到该小区")
        else:
            estates = [
                (r.id, r.timezone) for r in session.execute(select(Estate.id, Estate.timezone).order_by(Estate.id))
            ]
    for eid, tz in estates:
        assert tz is not None
        start, end = quarter.bounds(tz)
        if start > clock.now():
            raise InvalidInput(f"{quarter.label} has not started / 该季度尚未开始")
        with factory() as session, session.begin():
            if periods.ensure(session, eid, quarter).status == PeriodStatus.closed:
                result.skipped_closed.append(eid)
                continue
        # Charging first reaches the quarter's end: every interval ending before it is charged (or held).
        if charge:
            billing_run(factory, end - timedelta(microseconds=1), estate_id=eid)
        with factory() as session:
            accounts = household_accounts(session, eid, end)
        result.estates.append(eid)
        for i in range(0, len(accounts), GROUP):
            group = accounts[i : i + GROUP]
            try:
                with factory() as session, session.begin():
                    result.written += write(session, eid, quarter, group)
            except Conflict:  # closed meanwhile: the close wrote the final statements
                result.skipped_closed.append(eid)
                break
            result.statements += len(group)
            if on_group is not None:
                on_group(eid)
    return result


def close_period(session: Session, estate_id: int, quarter: Quarter, *, actor: str) -> BillingPeriod:
    """Close an estate's quarter (caller's transaction): final statements for every household, then closed.

    Takes the period lock exclusively first, so every charge already committing is in and none commits
    into the quarter after; run `statement_run` before (charging up to the quarter's end) so this
    transaction has little left to rewrite."""
    if not actor.strip():
        raise Conflict("closing a quarter needs an actor / 结账需要操作人")
    periods.lock(session, estate_id)
    period = periods.ensure(session, estate_id, quarter)
    session.refresh(period, with_for_update=True)
    periods.check_closable(session, period, clock.now())
    accounts = household_accounts(session, estate_id, period.ends_at)
    for i in range(0, len(accounts), GROUP):
        write(session, estate_id, quarter, accounts[i : i + GROUP])
    period.status = PeriodStatus.closed.value
    period.closed_at = clock.now()
    period.closed_by = actor
    session.flush()
    audit(session, actor, "billing.close_period", f"estate:{estate_id}", {"period": quarter.label})
    return period


def due_quarter(now: datetime, tz: str) -> Quarter:
    """The quarter whose statements are due at `now`: the one that ended last in the estate's time zone."""
    return periods.quarter_of(now, tz).previous()


def due_quarter_of(session: Session, estate_id: int, now: datetime) -> Quarter:
    """`due_quarter` for an estate by id (the pages' and the API's default quarter)."""
    tz = session.scalar(select(Estate.timezone).where(Estate.id == estate_id))
    if tz is None:
        raise NotFound("estate not found / 未找到该小区")
    return due_quarter(now, tz)


def statements_due(factory: Callable[[], Session], now: datetime) -> list[StatementResult]:
    """The billing job's step after charging: each estate's last ended quarter, until someone closes it."""
    out = []
    with factory() as session:
        with_accounts = select(BillingAccount.id).where(BillingAccount.estate_id == Estate.id).exists()
        estates = [
            (r.id, r.timezone)
            for r in session.execute(select(Estate.id, Estate.timezone).where(with_accounts).order_by(Estate.id))
        ]
    for eid, tz in estates:
        # The job's billing run has just charged every meter up to now, past the quarter's end.
        out.append(statement_run(factory, due_quarter(now, tz), estate_id=eid, charge=False))
    return out


def main(argv: list[str]) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    url, quarter = argv[0], periods.parse(argv[1])
    estate_id = int(argv[2]) if len(argv) > 2 else None
    engine = create_engine(url)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    result = statement_run(sessionmaker(engine, expire_on_commit=False), quarter, estate_id=estate_id)
    sys.stdout.write(f"done {result.statements} statements, {result.written} written\n")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
