"""Charging hot-water consumption from the cumulative registers in `meter_readings` (domain-defaults §3).

Per meter, a cursor (`billing_cursors`) names the last reading the meter has been billed up to; the
first reading the billing sees becomes the baseline and is not charged. Charging walks the readings
after the cursor in device-time order, classifies each interval with `facility.meters.consumption`:

* normal / rollover → a `meter_charges` row keyed by (device, from_ts) — also unique on (device,
  to_ts) — and one ledger transaction keyed ``charge:<device>:<from_ts>``; the cursor moves on;
* an unusable reading (≥ register_max, negative) is skipped;
* a fall that is not a rollover (a reset, or a replaced meter) → a `billing_holds` row with the
  interval's two readings; the meter's billing stops there until a person records the old final and
  new initial registers (`service.confirm_hold`); the next run charges the held interval from that
  record, once (the charge carries the hold id, unique), and carries on.

Intervals of zero volume move the cursor and write nothing. A reading that arrives late with a time
at or before the cursor changes nothing: registers are cumulative, so its volume is already inside
the charged interval that spans it.

Crash safety and concurrency: a meter's charges, ledger and cursor move in one transaction (the
billing run's, one per group of meters; an ingest batch's), under
``pg_advisory_xact_lock(CHARGE_LOCK_SPACE, device_id)`` (ingest only tries it); a second run waits, then
finds the cursor moved and has nothing to do. The unique keys are the last line: a charge can never
be written twice, whatever the caller does.

Cost: intervals are priced one by one, in order (the month totals run through them), but written in
bulk (`write_charges`: the ledger transactions, their entries, one balance update per account and the
charge rows, a few statements per 1,000 charges). `charge_meters` is the ingest hook's path: many
meters at once, their state and new readings in one query, falling back to `charge_meter` for any
meter off the common path (no baseline yet, a hold, a reset, a replacement, no tariff).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from billing import events, periods, pricing
from billing.const import (
    CHARGE_LOCK_SPACE,
    METER_KIND,
    PERIOD_LOCK_SPACE,
    SYSTEM_ACTOR,
    AccountKind,
    HoldKind,
    HoldStatus,
    TransactionKind,
)
from billing.pricing import Part, TariffVersion, Tier
from billing.service import estate_account, open_account
from core import clock
from facility.meters import ConsumptionKind, Reading, consumption, replaced_volume
from storage.models import (
    BillingCursor,
    BillingHold,
    Device,
    Estate,
    MeterCharge,
    MeterReading,
    MeterReplacement,
    Tariff,
    TariffTier,
)

BATCH = 5000  # readings loaded per query while walking one meter
# One statement for every cached balance a chunk of charges moves. PostgreSQL locks the rows in the
# order it meets them; locking them in account order first keeps that order fixed, as `post` does.
# NO KEY UPDATE (what an UPDATE of balance_fen takes anyway), never FOR UPDATE: the entries' foreign
# keys hold KEY SHARE on the same accounts, and two runs both upgrading to FOR UPDATE deadlock.
_BALANCES_FALL = text(
    "WITH v AS (SELECT * FROM unnest(CAST(:a AS int[]), CAST(:f AS bigint[])) AS v(id, fall)), "
    "l AS (SELECT b.id FROM billing_accounts b JOIN v ON v.id = b.id ORDER BY b.id FOR NO KEY UPDATE OF b) "
    "UPDATE billing_accounts b SET balance_fen = b.balance_fen - v.fall FROM v JOIN l ON l.id = v.id "
    "WHERE b.id = v.id"
)
WRITE_CHUNK = 1000  # charges written per round of bulk statements (bounds memory and statement size)


@dataclass
class MeterResult:
    device_id: int
    charges: int = 0
    amount_fen: int = 0
    held: int | None = None  # the hold that stops this meter, if any
    skipped: bool = False  # wait=False and another transaction was charging the meter: nothing done
    unpriced: datetime | None = None  # an interval starting here had no tariff in force


@dataclass
class RunResult:
    meters: list[MeterResult] = field(default_factory=list)

    @property
    def charges(self) -> int:
        return sum(m.charges for m in self.meters)

    @property
    def amount_fen(self) -> int:
        return sum(m.amount_fen for m in self.meters)


def load_tariffs(session: Session, estate_id: int) -> list[TariffVersion]:
    """The estate's tariff versions by effective date, each with its tiers (one query: ingest asks per batch)."""
    rows = session.execute(
        select(Tariff.id, Tariff.effective_from, TariffTier.up_to_m3, TariffTier.price_fen_per_m3)
        .outerjoin(TariffTier, TariffTier.tariff_id == Tariff.id)
        .where(Tariff.estate_id == estate_id)
        .order_by(Tariff.effective_from, Tariff.id, TariffTier.seq)
    ).all()
    versions: dict[int, tuple[datetime, list[Tier]]] = {}
    for tariff_id, effective_from, up_to, price in rows:
        tiers = versions.setdefault(tariff_id, (effective_from, []))[1]
        if price is not None:
            tiers.append(Tier(up_to, price))
    return [TariffVersion(t, effective_from, tuple(tiers)) for t, (effective_from, tiers) in versions.items()]


def meters_to_bill(session: Session | Connection, estate_id: int | None = None) -> list[int]:
    """Hot-water meters of households, in id order (the run's deterministic order)."""
    stmt = select(Device.id).where(Device.kind == METER_KIND, Device.unit_id.is_not(None)).order_by(Device.id)
    if estate_id is not None:
        stmt = stmt.where(Device.estate_id == estate_id)
    return list(session.scalars(stmt))


class _Pricer:
    """Prices one meter's intervals against the account's month totals (see billing.pricing)."""

    def __init__(self, session: Session, account_id: int, tariffs: Sequence[TariffVersion], tz: ZoneInfo) -> None:
        self.session, self.account_id, self.tariffs, self.tz = session, account_id, tariffs, tz
        self.month_totals: dict[date, tuple[Decimal, Decimal]] = {}

    def totals(self, month: date) -> tuple[Decimal, Decimal]:
        if month not in self.month_totals:
            row = self.session.execute(
                select(
                    func.coalesce(func.sum(MeterCharge.volume_m3), 0), func.coalesce(func.sum(MeterCharge.value_fen), 0)
                ).where(MeterCharge.account_id == self.account_id, MeterCharge.month == month)
            ).one()
            self.month_totals[month] = (Decimal(row[0]), Decimal(row[1]))
        return self.month_totals[month]

    def price(self, from_ts: datetime, to_ts: datetime, volume: Decimal) -> tuple[date, list[Part]] | None:
        spans = pricing.split(self.tariffs, from_ts, to_ts, volume)
        if spans is None:
            return None
        local = to_ts.astimezone(self.tz)
        month = date(local.year, local.month, 1)
        cum_volume, _ = self.totals(month)
        parts = []
        for tariff, a, b, share in spans:
            parts.append(Part(tariff.id, a, b, share, pricing.tier_value(tariff.tiers, cum_volume, share)))
            cum_volume += share
        return month, parts

    def book(self, month: date, volume: Decimal, value: Decimal) -> tuple[Decimal, Decimal, int]:
        cum_volume, cum_value = self.totals(month)
        after = (cum_volume + volume, cum_value + value)
        self.month_totals[month] = after
        return after[0], after[1], pricing.amount_between(cum_value, after[1])


@dataclass(frozen=True, slots=True)
class Pending:
    """A priced charge waiting to be written: its meter_charges row, estate and the estate's revenue account."""

    row: dict[str, Any]
    estate_id: int
    revenue_id: int


# One statement per chunk of charges: the ledger transactions (``charge:<device>:<from_ts>``), their
# entries (household +x, revenue −x, as `service.post` books them) and the meter_charges rows, from
# arrays (one parameter per column), sent in binary on the raw psycopg connection as ingest/writer.py
# does: no per-element quoting in Python. It replaced three ORM bulk inserts whose per-row Python cost
# was most of ingest's time with charging on (bench/ingest.py --meter-stream). Charges of 0 fen (a sliver
# of volume that rounds to nothing) have no key and no transaction. Returns how many transactions it
# wrote, so the caller can refuse a chunk whose keys were taken (it cannot happen under the lock and
# the cursor; the unique keys are the last line).
_WRITE_CHARGES = (
    "WITH c AS ("
    " SELECT * FROM unnest("
    "  %(estate)b::int[], %(revenue)b::int[], %(key)b::text[], %(account)b::int[],"
    "  %(device)b::int[], %(from_ts)b::timestamptz[], %(to_ts)b::timestamptz[],"
    "  %(from_register)b::numeric[], %(to_register)b::numeric[], %(kind)b::text[],"
    "  %(volume)b::numeric[], %(month)b::date[], %(value)b::numeric[], %(cum_volume)b::numeric[],"
    "  %(cum_value)b::numeric[], %(amount)b::bigint[], %(pricing)b::text[], %(hold)b::int[],"
    "  %(charged_at)b::timestamptz[], %(at)b::timestamptz[], %(booked)b::text[]"
    " ) AS c(estate, revenue, key, account, device, from_ts, to_ts, from_register, to_register, kind, volume,"
    "        month, value, cum_volume, cum_value, amount, pricing, hold, charged_at, at, booked)"
    "), tx AS ("
    " INSERT INTO ledger_transactions (estate_id, kind, key, at, actor, reason)"
    " SELECT estate, %(tx_kind)s, key, at, %(actor)s, '' FROM c WHERE key IS NOT NULL"
    " ON CONFLICT (key) DO NOTHING RETURNING id, key"
    "), en AS ("
    " INSERT INTO ledger_entries (transaction_id, account_id, amount_fen)"
    " SELECT tx.id, x.account, x.amount FROM tx JOIN c ON c.key = tx.key"
    " CROSS JOIN LATERAL (VALUES (c.account, c.amount), (c.revenue, -c.amount)) AS x(account, amount)"
    "), ch AS ("
    " INSERT INTO meter_charges (account_id, device_id, from_ts, to_ts, from_register, to_register, kind,"
    "  volume_m3, month, value_fen, cum_volume_m3, cum_value_fen, amount_fen, pricing, hold_id, transaction_id,"
    "  charged_at, booked_period)"
    " SELECT c.account, c.device, c.from_ts, c.to_ts, c.from_register, c.to_register, c.kind, c.volume, c.month,"
    "  c.value, c.cum_volume, c.cum_value, c.amount, CAST(c.pricing AS jsonb), c.hold, tx.id, c.charged_at,"
    "  c.booked"
    " FROM c LEFT JOIN tx ON tx.key = c.key"
    ") SELECT count(*) FROM tx"
)


def _raw(session: Session) -> psycopg.Connection[Any]:
    """The session's psycopg connection, in the session's transaction (pending ORM writes flushed first)."""
    session.flush()
    raw = session.connection().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def write_charges(
    session: Session,
    pending: Sequence[Pending],
    falls: dict[int, int] | None = None,
    closed: Mapping[int, periods.Closed] | None = None,
) -> None:
    """Write priced charges in bulk (`_WRITE_CHARGES`, one statement per `WRITE_CHUNK`) and the cached
    balances (one update per account, in account order as `post` takes them: no deadlock between posters).

    A charge whose interval ends in a closed quarter (a late reading) is booked in the first open one:
    `booked_period` set, its transaction dated at that quarter's start (billing/periods.py). ``closed``
    is each estate's closed past as the caller read it after its locks; None reads it here (one query).

    With ``falls``, the balance moves are added to it for the caller to apply (`apply_falls`) just
    before its commit: the estate's revenue row is every charger's, and its lock is held from the
    update to the commit, so two runs would otherwise take turns for a whole transaction."""
    deferred = falls is not None
    falls = {} if falls is None else falls
    if closed is None:
        closed = periods.closed(session, {p.estate_id for p in pending}) if pending else {}
    for p in pending:
        c = closed.get(p.estate_id)
        p.row["booked_period"] = c.period if c is not None and p.row["to_ts"] < c.until else None
    # The account pages update when this commits (one notification per estate and transaction).
    for estate_id in sorted({p.estate_id for p in pending if p.row["amount_fen"] > 0}):
        events.changed(session, estate_id)
    for i in range(0, len(pending), WRITE_CHUNK):
        chunk = pending[i : i + WRITE_CHUNK]
        rows = [p.row for p in chunk]
        keys = [f"charge:{r['device_id']}:{r['from_ts'].isoformat()}" if r["amount_fen"] > 0 else None for r in rows]
        cursor = _raw(session).execute(
            _WRITE_CHARGES,
            {
                "estate": [p.estate_id for p in chunk],
                "revenue": [p.revenue_id for p in chunk],
                "key": keys,
                "account": [r["account_id"] for r in rows],
                "device": [r["device_id"] for r in rows],
                "from_ts": [r["from_ts"] for r in rows],
                "to_ts": [r["to_ts"] for r in rows],
                "from_register": [r["from_register"] for r in rows],
                "to_register": [r["to_register"] for r in rows],
                "kind": [r["kind"] for r in rows],
                "volume": [r["volume_m3"] for r in rows],
                "month": [r["month"] for r in rows],
                "value": [r["value_fen"] for r in rows],
                "cum_volume": [r["cum_volume_m3"] for r in rows],
                "cum_value": [r["cum_value_fen"] for r in rows],
                "amount": [r["amount_fen"] for r in rows],
                "pricing": [json.dumps(r["pricing"], separators=(",", ":")) for r in rows],
                "hold": [r["hold_id"] for r in rows],
                "tx_kind": TransactionKind.charge.value,
                "actor": SYSTEM_ACTOR,
                "charged_at": [r["charged_at"] for r in rows],
                # A late reading's charge: booked in the first open quarter and dated at its start.
                "at": [
                    r["to_ts"] if r["booked_period"] is None else closed[p.estate_id].until
                    for p, r in zip(chunk, rows, strict=True)
                ],
                "booked": [r["booked_period"] for r in rows],
            },
        )
        row = cursor.fetchone()
        written = row[0] if row is not None else 0
        paid = sum(1 for k in keys if k is not None)
        if written != paid:  # cannot happen under the lock and cursor; refuse rather than double
            raise RuntimeError(f"charges already posted: {paid - written} of {paid} keys were taken")
        for p in chunk:
            amount = p.row["amount_fen"]
            if amount > 0:
                # A household's balance is −Σ its entries, revenue's is Σ: both fall by the amount.
                falls[p.row["account_id"]] = falls.get(p.row["account_id"], 0) + amount
                falls[p.revenue_id] = falls.get(p.revenue_id, 0) + amount
    if not deferred:
        apply_falls(session, falls)


def apply_falls(session: Session, falls: dict[int, int]) -> None:
    """Lower the cached balances by ``falls`` (account → fen), one statement, accounts locked in id order."""
    if falls:
        accounts = sorted(falls)
        session.execute(_BALANCES_FALL, {"a": accounts, "f": [falls[a] for a in accounts]})


def charge_meter(
    session: Session, device_id: int, up_to: datetime, *, wait: bool = True, locked: bool = False
) -> MeterResult:
    """Charge one meter's intervals ending at or before `up_to`; flushes, never commits. Idempotent.

    With ``wait=False`` (ingest) a meter another transaction is charging is skipped (`skipped`) rather
    than waited for: that transaction, or the next billing run, charges it. ``locked``: the caller holds
    the meter's lock and its estate's period lock already (`lock_meters`); no lock statement is sent."""
    result = MeterResult(device_id)
    params = {"space": CHARGE_LOCK_SPACE, "id": device_id}
    if not locked and wait:
        session.execute(text("SELECT pg_advisory_xact_lock(:space, :id)"), params)
        session.execute(_ESTATE_LOCK, {"space": PERIOD_LOCK_SPACE, "d": [device_id]})
    elif not locked and (
        not session.scalar(text("SELECT pg_try_advisory_xact_lock(:space, :id)"), params)
        or session.scalar(_TRY_ESTATE_LOCK, {"space": PERIOD_LOCK_SPACE, "id": device_id}) is False
    ):
        result.skipped = True
        return result
    device = session.get(Device, device_id)
    if device is None or device.unit_id is None:
        return result
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    account = open_account(session, device.unit_id)
    revenue = estate_account(session, estate.id, AccountKind.revenue_hot_water)
    cursor = session.get(BillingCursor, device_id, populate_existing=True)
    if cursor is None:
        first = session.execute(
            select(MeterReading.ts, MeterReading.register)
            .where(MeterReading.device_id == device_id, MeterReading.ts <= up_to)
            .order_by(MeterReading.ts)
            .limit(1)
        ).first()
        if first is None:
            return result
        cursor = BillingCursor(
            device_id=device_id,
            account_id=account.id,
            last_ts=first.ts,
            last_register=first.register,
            updated_at=clock.now(),
        )
        session.add(cursor)
        session.flush()
    pricer = _Pricer(session, account.id, load_tariffs(session, estate.id), ZoneInfo(estate.timezone))
    register_max, resolution, multiplier = device.register_max, device.resolution, device.multiplier or Decimal(1)

    # Charges are priced one by one (the month totals run through them in order) but written in bulk:
    # a few multi-row statements per batch of readings instead of ~10 round trips per interval.
    pending: list[dict[str, Any]] = []

    def charge(prev: Reading, curr: Reading, volume: Decimal, kind: str, hold_id: int | None) -> bool:
        if volume > 0:
            priced = pricer.price(prev.ts, curr.ts, volume)
            if priced is None:
                result.unpriced = prev.ts
                return False
            month, parts = priced
            value = sum((p.value_fen for p in parts), Decimal(0))
            cum_volume, cum_value, amount = pricer.book(month, volume, value)
            pending.append(
                {
                    "account_id": account.id,
                    "device_id": device_id,
                    "from_ts": prev.ts,
                    "to_ts": curr.ts,
                    "from_register": prev.register,
                    "to_register": curr.register,
                    "kind": kind,
                    "volume_m3": volume,
                    "month": month,
                    "value_fen": value,
                    "cum_volume_m3": cum_volume,
                    "cum_value_fen": cum_value,
                    "amount_fen": amount,
                    "pricing": [p.as_json() for p in parts],
                    "hold_id": hold_id,
                    "transaction_id": None,
                    "charged_at": clock.now(),
                }
            )
            result.charges += 1
            result.amount_fen += amount
        cursor.last_ts, cursor.last_register, cursor.updated_at = curr.ts, curr.register, clock.now()
        return True

    def write_pending() -> None:
        write_charges(session, [Pending(c, estate.id, revenue.id) for c in pending])
        pending.clear()

    prev = Reading(cursor.last_ts, cursor.last_register)
    scan_from = prev.ts
    while True:
        hold = session.scalars(
            select(BillingHold).where(BillingHold.device_id == device_id, BillingHold.from_ts == prev.ts)
        ).one_or_none()
        if hold is not None:
            if hold.status == HoldStatus.held:
                result.held = hold.id
                break
            record = session.scalars(select(MeterReplacement).where(MeterReplacement.hold_id == hold.id)).one()
            if hold.to_ts > up_to:
                break
            volume = replaced_volume(
                hold.from_register,
                hold.to_register,
                record.old_final_register,
                record.new_initial_register,
                resolution=resolution,
                multiplier=multiplier,
            )
            curr = Reading(hold.to_ts, hold.to_register)
            if not charge(prev, curr, volume, record.kind, hold.id):
                break
            prev = curr
            scan_from = max(scan_from, prev.ts)
        rows = session.execute(
            select(MeterReading.ts, MeterReading.register)
            .where(MeterReading.device_id == device_id, MeterReading.ts > scan_from, MeterReading.ts <= up_to)
            .order_by(MeterReading.ts)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        stopped = False
        for ts, register in rows:
            curr = Reading(ts, register)
            c = consumption(prev, curr, register_max=register_max, resolution=resolution, multiplier=multiplier)
            if c is None:
                continue  # an unusable reading (a misread register): skipped, never billed
            if not c.billable:
                kind = HoldKind.replacement if c.kind == ConsumptionKind.replacement else HoldKind.reset
                new = BillingHold(
                    device_id=device_id,
                    account_id=account.id,
                    from_ts=prev.ts,
                    to_ts=curr.ts,
                    from_register=prev.register,
                    to_register=curr.register,
                    kind=kind.value,
                    reason=c.reason,
                    status=HoldStatus.held.value,
                    detected_at=clock.now(),
                )
                session.add(new)
                session.flush()
                result.held = new.id
                stopped = True
                break
            if not charge(prev, curr, c.volume, c.kind.value, None):
                stopped = True
                break
            prev = curr
        write_pending()
        session.flush()
        if stopped or len(rows) < BATCH:
            break
        scan_from = rows[-1].ts  # past any unusable readings at the end of the batch
    write_pending()
    session.flush()
    if result.charges or result.held is not None:
        events.changed(session, estate.id)  # the account pages update when this commits
    return result


# The ids come sorted and unnest keeps array order, so meters are locked in id order: two runs that
# wait for each other's meters never deadlock (ingest only tries, never waits).
# Each meter's estate's period lock is taken shared too, after the meter's (billing/periods.py: a quarter
# being closed); waiting chargers take it after all their meter locks, so a close never joins a cycle.
_TRY_LOCKS = text(
    "SELECT t.d FROM unnest(CAST(:d AS int[])) AS t(d) JOIN devices dv ON dv.id = t.d"
    " WHERE pg_try_advisory_xact_lock(:space, t.d) AND pg_try_advisory_xact_lock_shared(:pspace, dv.estate_id)"
)
_LOCKS = text("SELECT count(pg_advisory_xact_lock(:space, d)) FROM unnest(CAST(:d AS int[])) AS d")
_ESTATE_LOCK = text(
    "SELECT count(pg_advisory_xact_lock_shared(:space, e)) FROM"
    " (SELECT DISTINCT estate_id AS e FROM devices WHERE id = ANY(CAST(:d AS int[])) ORDER BY 1) s"
)
_TRY_ESTATE_LOCK = text("SELECT pg_try_advisory_xact_lock_shared(:space, estate_id) FROM devices WHERE id = :id")


def lock_meters(session: Session, ids: list[int], *, wait: bool) -> set[int]:
    """Take the meters' charge locks (id order) and their estates' period locks shared; the ones got."""
    if wait:
        session.execute(_LOCKS, {"d": ids, "space": CHARGE_LOCK_SPACE})
        session.execute(_ESTATE_LOCK, {"d": ids, "space": PERIOD_LOCK_SPACE})
        return set(ids)
    return set(session.scalars(_TRY_LOCKS, {"d": ids, "space": CHARGE_LOCK_SPACE, "pspace": PERIOD_LOCK_SPACE}))


PENDING_MAX = 5000  # charges priced before they are written (bounds a run's memory)
# After the locks (a new snapshot: a run that held a meter and committed is seen): what the common
# path needs of each meter in one statement — cursor, device, estate time zone, whether a hold starts
# at or after the cursor, and the readings after the cursor up to the batch's newest.
_BATCH_STATE = text(
    """
    SELECT t.d AS device_id, c.account_id, c.last_ts, c.last_register, dv.estate_id, dv.unit_id,
           dv.register_max, dv.resolution, dv.multiplier, e.timezone,
           EXISTS (SELECT 1 FROM billing_holds h WHERE h.device_id = t.d AND h.from_ts >= c.last_ts) AS has_hold,
           (SELECT max(p.ends_at) FROM billing_periods p WHERE p.estate_id = dv.estate_id AND p.status = 'closed')
             AS closed_until,
           r.ts, r.reg
    FROM unnest(CAST(:d AS int[]), CAST(:u AS timestamptz[])) AS t(d, up_to)
    JOIN billing_cursors c ON c.device_id = t.d
    JOIN devices dv ON dv.id = t.d
    JOIN estates e ON e.id = dv.estate_id
    CROSS JOIN LATERAL (
      SELECT array_agg(m.ts ORDER BY m.ts) AS ts, array_agg(m.register ORDER BY m.ts) AS reg
      FROM meter_readings m WHERE m.device_id = t.d AND m.ts > c.last_ts AND m.ts <= t.up_to
    ) r
    ORDER BY t.d
    """
)
# A meter's first billing, for a whole set of meters in two statements: the unit's account
# (`service.open_account`, race-safe the same way; inserted in unit order so two chargers never deadlock)
# and the baseline cursor at its first reading up to `up_to` (charged nothing). `charge_meters` and the
# coalesced run (billing/coalesce.py) send them only for meters that have no cursor yet.
_ACCOUNTS = text(
    """
    INSERT INTO billing_accounts (estate_id, kind, unit_id, opened_at)
    SELECT b.estate_id, :kind, u.id, :now
    FROM unnest(CAST(:d AS int[])) AS t(d)
    JOIN devices dv ON dv.id = t.d
    JOIN units u ON u.id = dv.unit_id
    JOIN buildings b ON b.id = u.building_id
    WHERE NOT EXISTS (SELECT 1 FROM billing_cursors c WHERE c.device_id = t.d)
    ORDER BY u.id
    ON CONFLICT (unit_id) DO NOTHING
    """
)
_BASELINES = text(
    """
    INSERT INTO billing_cursors (device_id, account_id, last_ts, last_register, updated_at)
    SELECT t.d, a.id, f.ts, f.register, :now
    FROM unnest(CAST(:d AS int[]), CAST(:u AS timestamptz[])) AS t(d, up_to)
    JOIN devices dv ON dv.id = t.d AND dv.unit_id IS NOT NULL
    JOIN billing_accounts a ON a.unit_id = dv.unit_id
    CROSS JOIN LATERAL (
      SELECT m.ts, m.register FROM meter_readings m WHERE m.device_id = t.d AND m.ts <= t.up_to ORDER BY m.ts LIMIT 1
    ) f
    WHERE NOT EXISTS (SELECT 1 FROM billing_cursors c WHERE c.device_id = t.d)
    ON CONFLICT (device_id) DO NOTHING
    """
)


def open_baselines(session: Session, device_ids: Sequence[int], up_to: Mapping[int, datetime]) -> None:
    """`_ACCOUNTS` and `_BASELINES` for ``device_ids`` (meters without a cursor)."""
    now = clock.now()
    session.execute(_ACCOUNTS, {"d": list(device_ids), "kind": AccountKind.hot_water.value, "now": now})
    session.execute(_BASELINES, {"d": list(device_ids), "u": [up_to[d] for d in device_ids], "now": now})


_MONTH_TOTALS = text(
    "SELECT account_id, month, coalesce(sum(volume_m3), 0), coalesce(sum(value_fen), 0) FROM meter_charges "
    "WHERE (account_id, month) IN (SELECT * FROM unnest(CAST(:a AS int[]), CAST(:m AS date[]))) GROUP BY 1, 2"
)
_MOVE_CURSORS = text(
    "UPDATE billing_cursors c SET last_ts = v.ts, last_register = v.reg, updated_at = :now "
    "FROM unnest(CAST(:d AS int[]), CAST(:t AS timestamptz[]), CAST(:r AS numeric[])) AS v(d, ts, reg) "
    "WHERE c.device_id = v.d"
)


Interval = tuple[Reading, Reading, Decimal, str]  # (previous reading, reading, volume, consumption kind)


def charge_meters(session: Session, up_to: Mapping[int, datetime], *, wait: bool = False) -> list[MeterResult]:
    """`charge_meter(session, d, up_to[d], wait=wait)` for many meters at once (ingest, and the run by groups).

    Same charges, same ledger, same cursor moves, in a handful of statements for the whole set: the
    meters are try-locked together (a locked one is `skipped`), their state and new readings come in
    one query, month totals in one, and the charges, postings, balances and cursors are written in
    bulk; meters billed for the first time get their baseline cursors in two statements. A meter off the
    common path — no unit or no reading yet, a hold at or after its cursor,
    an interval that is a reset or a replacement, an interval with no tariff — goes through
    `charge_meter` itself, under the lock already held."""
    ids = sorted(up_to)
    if not ids:
        return []
    locked = lock_meters(session, ids, wait=wait)
    results = {d: MeterResult(d, skipped=d not in locked) for d in ids}
    todo = [d for d in ids if d in locked]
    rows = session.execute(_BATCH_STATE, {"d": todo, "u": [up_to[d] for d in todo]}).all() if todo else []
    new = sorted(set(todo) - {r.device_id for r in rows})
    if new:  # billed for the first time: accounts and baselines in two statements, then their state
        open_baselines(session, new, up_to)
        rows = [*rows, *session.execute(_BATCH_STATE, {"d": new, "u": [up_to[d] for d in new]}).all()]
    closed = {r.estate_id: cl for r in rows if (cl := periods.closed_from(r.closed_until, r.timezone)) is not None}
    slow = set(todo) - {r.device_id for r in rows}  # still no cursor (no reading yet): charge_meter says so
    walks: list[tuple[Any, list[Interval], Reading]] = []
    for r in rows:
        if r.has_hold or r.unit_id is None:
            slow.add(r.device_id)
            continue
        prev = Reading(r.last_ts, r.last_register)
        items: list[Interval] = []
        for ts, register in zip(r.ts or (), r.reg or (), strict=True):
            curr = Reading(ts, register)
            c = consumption(
                prev, curr, register_max=r.register_max, resolution=r.resolution, multiplier=r.multiplier or Decimal(1)
            )
            if c is None:
                continue  # an unusable reading: skipped, as charge_meter skips it
            if not c.billable:
                break
            items.append((prev, curr, c.volume, c.kind.value))
            prev = curr
        else:
            if items:
                walks.append((r, items, prev))
            continue
        slow.add(r.device_id)  # a reset or replacement: charge_meter holds it
    tariffs: dict[int, list[TariffVersion]] = {}
    revenue: dict[int, int] = {}
    zones: dict[str, ZoneInfo] = {}
    for r, _, _ in walks:
        if r.estate_id not in tariffs:
            tariffs[r.estate_id] = load_tariffs(session, r.estate_id)
            revenue[r.estate_id] = estate_account(session, r.estate_id, AccountKind.revenue_hot_water).id
        zones.setdefault(r.timezone, ZoneInfo(r.timezone))
    months = {
        (r.account_id, date(loc.year, loc.month, 1))
        for r, items, _ in walks
        for _, curr, _, _ in items
        for loc in (curr.ts.astimezone(zones[r.timezone]),)
    }
    known: dict[tuple[int, date], tuple[Decimal, Decimal]] = {(a, m): (Decimal(0), Decimal(0)) for a, m in months}
    if months:
        pairs = sorted(months)
        for a, m, vol, val in session.execute(_MONTH_TOTALS, {"a": [p[0] for p in pairs], "m": [p[1] for p in pairs]}):
            known[(a, m)] = (Decimal(vol), Decimal(val))
    # One totals dict per account, shared by its meters' pricers: two meters of one unit run through
    # the month's tiers one after the other, in id order, as charge_meter would take them.
    by_account: dict[int, dict[date, tuple[Decimal, Decimal]]] = {}
    for (a, m), v in known.items():
        by_account.setdefault(a, {})[m] = v
    pending: list[Pending] = []
    falls: dict[int, int] = {}
    moves: list[tuple[int, Reading]] = []
    now = clock.now()
    for r, items, last in walks:
        pricer = _Pricer(session, r.account_id, tariffs[r.estate_id], zones[r.timezone])
        pricer.month_totals = by_account.get(r.account_id, {})
        mine: list[Pending] = []
        res = MeterResult(r.device_id)
        for prev, curr, volume, kind in items:
            if volume <= 0:
                continue
            priced = pricer.price(prev.ts, curr.ts, volume)
            if priced is None:
                break
            month, parts = priced
            value = sum((p.value_fen for p in parts), Decimal(0))
            cum_volume, cum_value, amount = pricer.book(month, volume, value)
            row = {
                "account_id": r.account_id,
                "device_id": r.device_id,
                "from_ts": prev.ts,
                "to_ts": curr.ts,
                "from_register": prev.register,
                "to_register": curr.register,
                "kind": kind,
                "volume_m3": volume,
                "month": month,
                "value_fen": value,
                "cum_volume_m3": cum_volume,
                "cum_value_fen": cum_value,
                "amount_fen": amount,
                "pricing": [p.as_json() for p in parts],
                "hold_id": None,
                "transaction_id": None,
                "charged_at": now,
            }
            mine.append(Pending(row, r.estate_id, revenue[r.estate_id]))
            res.charges += 1
            res.amount_fen += amount
        else:
            pending.extend(mine)
            moves.append((r.device_id, last))
            results[r.device_id] = res
            if len(pending) >= PENDING_MAX:
                write_charges(session, pending, falls, closed)
                pending.clear()
            continue
        slow.add(r.device_id)  # an interval without a tariff: charge_meter stops there and says so
    write_charges(session, pending, falls, closed)
    if moves:
        session.execute(
            _MOVE_CURSORS,
            {
                "d": [d for d, _ in moves],
                "t": [x.ts for _, x in moves],
                "r": [x.register for _, x in moves],
                "now": now,
            },
        )
    for d in sorted(slow):
        results[d] = charge_meter(session, d, up_to[d], wait=wait, locked=True)
    apply_falls(session, falls)  # last: the revenue row stays locked only until the caller commits
    session.flush()
    return [results[d] for d in ids]


def bill(session: Session, up_to: datetime, *, estate_id: int | None = None) -> RunResult:
    """Charge every household hot-water meter up to `up_to` in the caller's transaction (tests, small jobs)."""
    run = RunResult()
    for device_id in meters_to_bill(session, estate_id):
        run.meters.append(charge_meter(session, device_id, up_to))
    return run
