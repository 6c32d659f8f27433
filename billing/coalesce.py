"""The billing run's charging: one charge per stretch of like intervals instead of one per interval.

`charge_meters_coalesced(session, up_to)` charges what `charging.charge_meters` charges — the same
month totals, amounts, balances and cursors — but a charge covers consecutive *normal* intervals of
one meter that end in the same estate-local month and lie wholly under the same tariff version. A
rollover, an interval that spans a tariff change, the first interval of a month or of a tariff each
start a new charge; a reset or replacement sends the meter to `charge_meter` (which holds it).

Why the amounts are the same: the tiers price the month's cumulative volume, and the value of a
volume above ``cum`` is the integral of the tier price over [cum, cum + volume], so pricing a stretch
at once gives exactly the sum of pricing its intervals one by one; each charge's amount is
round(cum_after) − round(cum_before), so the month's amounts still add up to its rounded exact total.
An interval spanning a tariff change is charged alone and split pro rata by time, as before.

Why it stays idempotent: the charge is keyed by its first interval's start, ``charge:<device>:<from_ts>``,
and meter_charges is unique on (device, from_ts) and (device, to_ts); the charges and the cursor move in
the caller's transaction, under the meter's advisory lock, so a rerun starts from the cursor and finds
only readings after it. A late reading at or before the cursor changes nothing, as before.

Why it is fast: PostgreSQL walks the readings (window functions over the (device, ts) index, one
query per group of meters) and returns only the stretches, ~3 per meter per quarter; Python prices
those. The ingest hook uses it too (with ``wait=False``: a meter being charged elsewhere is skipped), once a
meter's uncharged readings span an hour (billing/on_ingest.py).
Meters without a cursor get their account and baseline here in bulk; a meter off the common path (a
hold at or after the cursor, odd device parameters, no tariff) goes through `charge_meter`, one
interval per charge, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from billing import periods
from billing.charging import (
    _MONTH_TOTALS,
    _MOVE_CURSORS,
    PENDING_MAX,
    MeterResult,
    Pending,
    _Pricer,
    apply_falls,
    charge_meter,
    load_tariffs,
    lock_meters,
    open_baselines,
    write_charges,
)
from billing.const import AccountKind
from billing.service import estate_account
from core import clock
from facility.meters import ROLLOVER_FROM, ROLLOVER_TO, Reading, usable

_STATE = text(
    """
    SELECT t.d AS device_id, c.account_id, c.last_ts, c.last_register, dv.estate_id, dv.unit_id,
           dv.register_max, dv.resolution, dv.multiplier, e.timezone,
           EXISTS (SELECT 1 FROM billing_holds h WHERE h.device_id = t.d AND h.from_ts >= c.last_ts) AS has_hold,
           (SELECT max(p.ends_at) FROM billing_periods p WHERE p.estate_id = dv.estate_id AND p.status = 'closed')
             AS closed_until
    FROM unnest(CAST(:d AS int[])) AS t(d)
    JOIN billing_cursors c ON c.device_id = t.d
    JOIN devices dv ON dv.id = t.d
    JOIN estates e ON e.id = dv.estate_id
    ORDER BY t.d
    """
)
# Where each stretch of every meter of one estate starts (built per estate by `_stretches_sql`: the
# tariff changes and month starts are a handful of bound instants, compared as plain timestamps).
# r: the usable readings after the cursor (as `facility.meters.usable`: 0 ≤ register < register_max,
# finite), each register floored to the resolution (e: trunc() to k places when the resolution is
# 10^-k, a fifth cheaper, else div() × resolution; both truncate, exactly, and registers are ≥ 0), the tariff version in
# force from the reading on (tbs) and just before it (tbe), the month it falls in (mb). w: each
# interval's previous reading (the cursor's for the first) and the one before that, so one pass of
# window functions also sees the previous interval. A stretch starts at the first interval, at any
# interval that is not normal (e < s: a rollover or a fall to hold) or spans a tariff change (tb ≠
# tbe), right after one, and at a new tariff version or month. Stretches tile the readings, so each
# ends where the next starts, the last at the meter's last usable reading (_LAST).
_STRETCHES = """
    WITH t AS (
      SELECT *, CASE WHEN res IS NULL THEN last_reg WHEN places IS NOT NULL THEN trunc(last_reg, places)
                     ELSE div(last_reg, res) * res END AS ce, {ctb} AS ctb
      FROM unnest(CAST(:d AS int[]), CAST(:u AS timestamptz[]), CAST(:lt AS timestamptz[]),
                  CAST(:lr AS numeric[]), CAST(:rmax AS numeric[]), CAST(:res AS numeric[]),
                  CAST(:places AS int[])) AS t(d, up_to, last_ts, last_reg, rmax, res, places)
    ), r AS (
      SELECT t.d, m.ts, m.register AS reg,
             CASE WHEN t.res IS NULL THEN m.register WHEN t.places IS NOT NULL THEN trunc(m.register, t.places)
                  ELSE div(m.register, t.res) * t.res END AS e,
             {tbs} AS tbs, {tbe} AS tbe, {mb} AS mb, t.last_ts, t.last_reg, t.ce, t.ctb
      FROM t JOIN meter_readings m ON m.device_id = t.d AND m.ts > t.last_ts AND m.ts <= t.up_to
      WHERE m.register >= 0 AND m.register < 'Infinity'::numeric AND (t.rmax IS NULL OR m.register < t.rmax)
    ), w AS (
      SELECT d, ts, reg, e, tbe, mb, row_number() OVER w AS n,
             lag(ts, 1, last_ts) OVER w AS pts, lag(reg, 1, last_reg) OVER w AS preg,
             lag(e, 1, ce) OVER w AS s, lag(tbs, 1, ctb) OVER w AS tb,
             lag(e, 2, ce) OVER w AS s2, lag(tbs, 2, ctb) OVER w AS ptb, lag(tbe) OVER w AS ptbe, lag(mb) OVER w AS pmb
      FROM r WINDOW w AS (PARTITION BY d ORDER BY ts)
    )
    SELECT d, pts, preg, s, ts, reg, e, tb FROM w
    WHERE n = 1 OR e < s OR tb <> tbe OR s < s2 OR ptb <> ptbe OR tb <> ptb OR mb <> pmb
    ORDER BY d, ts
"""
_LAST = text(
    """
    SELECT t.d, f.ts, f.register AS reg,
           CASE WHEN t.res IS NULL THEN f.register WHEN t.places IS NOT NULL THEN trunc(f.register, t.places)
                ELSE div(f.register, t.res) * t.res END AS e
    FROM unnest(CAST(:d AS int[]), CAST(:u AS timestamptz[]), CAST(:lt AS timestamptz[]), CAST(:rmax AS numeric[]),
                CAST(:res AS numeric[]), CAST(:places AS int[])) AS t(d, up_to, last_ts, rmax, res, places)
    CROSS JOIN LATERAL (
      SELECT m.ts, m.register FROM meter_readings m
      WHERE m.device_id = t.d AND m.ts > t.last_ts AND m.ts <= t.up_to AND m.register >= 0
        AND m.register < 'Infinity'::numeric AND (t.rmax IS NULL OR m.register < t.rmax)
      ORDER BY m.ts DESC LIMIT 1
    ) f
    """
)


@dataclass(frozen=True, slots=True)
class Stretch:
    from_ts: datetime
    to_ts: datetime
    from_register: Decimal
    to_register: Decimal
    kind: str  # normal, rollover, or held (a fall that is no rollover: charge_meter holds it)
    volume: Decimal
    tariff: int  # how many tariff versions are in force at from_ts (0: none yet)


def _stretches(starts: list[Any], last: Any, rmax: Decimal | None, mult: Decimal) -> list[Stretch]:
    """A meter's stretches from their first intervals (`_STRETCHES`) and its last usable reading."""
    out = []
    for i, a in enumerate(starts):
        end_ts, end_reg, end_e = (
            (starts[i + 1].pts, starts[i + 1].preg, starts[i + 1].s)
            if i + 1 < len(starts)
            else (last.ts, last.reg, last.e)
        )
        with localcontext() as ctx:
            ctx.prec = 60
            if a.e >= a.s:  # normal, and so is every interval after it in the stretch: volumes telescope
                kind, volume = "normal", (end_e - a.s) * mult
            elif rmax is not None and a.s >= ROLLOVER_FROM * rmax and a.e < ROLLOVER_TO * rmax:
                kind, volume = "rollover", (rmax - a.s + a.e) * mult  # alone in its stretch
            else:
                kind, volume = "held", Decimal(0)
        out.append(Stretch(a.pts, end_ts, a.preg, end_reg, kind, volume, a.tb))
    return out


def _places(resolution: Decimal | None) -> int | None:
    """k when the resolution is 10^-k (0.001 → 3): flooring is then a truncation to k places."""
    if resolution is None:
        return None
    exponent = resolution.normalize().as_tuple().exponent
    if not isinstance(exponent, int) or exponent > 0 or resolution != Decimal(1).scaleb(exponent):
        return None
    return -exponent


def _stretches_sql(changes: int, months: int) -> str:
    """`_STRETCHES` for an estate with `changes` tariff versions and a period over `months` months."""

    def count(column: str, op: str, name: str, n: int) -> str:
        return " + ".join(f"({column} {op} :{name}{i})::int" for i in range(n))

    return _STRETCHES.format(
        ctb=count("last_ts", ">=", "eff", changes),
        tbs=count("m.ts", ">=", "eff", changes),
        tbe=count("m.ts", ">", "eff", changes),
        mb=count("m.ts", ">=", "mo", months),
    )


def _month_starts(tz: ZoneInfo, first: datetime, last: datetime) -> list[datetime]:
    """The instants the estate-local months from `first`'s to `last`'s begin (width_bucket's bounds)."""
    a, b = first.astimezone(tz), last.astimezone(tz)
    y, m = a.year, a.month
    out = []
    while (y, m) <= (b.year, b.month):
        out.append(datetime(y, m, 1, tzinfo=tz))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _valid(r: Any) -> bool:
    """What `consumption` needs to give anything at all: else `charge_meter` decides (and charges nothing)."""
    for value in (r.register_max, r.resolution):
        if value is not None and not (value.is_finite() and value > 0):
            return False
    mult = r.multiplier if r.multiplier is not None else Decimal(1)
    if not (mult.is_finite() and mult > 0):
        return False
    return usable(Reading(r.last_ts, r.last_register), register_max=r.register_max)


def charge_meters_coalesced(session: Session, up_to: Mapping[int, datetime], *, wait: bool = True) -> list[MeterResult]:
    """Charge many meters up to ``up_to[d]``, one charge per stretch (module docstring); flushes, never commits."""
    ids = sorted(up_to)
    if not ids:
        return []
    locked = lock_meters(session, ids, wait=wait)
    results = {d: MeterResult(d, skipped=d not in locked) for d in ids}
    todo = [d for d in ids if d in locked]
    if not todo:
        return [results[d] for d in ids]
    now = clock.now()
    state = session.execute(_STATE, {"d": todo}).all()
    new = sorted(set(todo) - {r.device_id for r in state})
    if new:  # first billing: accounts and baselines for those meters only, then their state
        open_baselines(session, new, up_to)
        state = [*state, *session.execute(_STATE, {"d": new}).all()]
    closed = {r.estate_id: c for r in state if (c := periods.closed_from(r.closed_until, r.timezone)) is not None}
    slow = set(todo) - {r.device_id for r in state}  # no cursor: no reading yet, or no account yet
    by_estate: dict[int, list[Any]] = {}
    for r in state:
        if r.has_hold or r.unit_id is None or not _valid(r):
            slow.add(r.device_id)
        elif r.last_ts >= up_to[r.device_id]:
            continue  # charged past up_to already (a statement run for an earlier quarter): nothing to do
        else:
            by_estate.setdefault(r.estate_id, []).append(r)
    pending: list[Pending] = []
    falls: dict[int, int] = {}
    moves: list[tuple[int, datetime, Decimal]] = []
    for estate_id, meters in sorted(by_estate.items()):
        tariffs = load_tariffs(session, estate_id)
        if not tariffs:
            slow.update(r.device_id for r in meters)  # charge_meter says "unpriced"
            continue
        tz = ZoneInfo(meters[0].timezone)
        revenue = estate_account(session, estate_id, AccountKind.revenue_hot_water).id
        starts = _month_starts(tz, min(r.last_ts for r in meters), max(up_to[r.device_id] for r in meters))
        params: dict[str, Any] = {
            "d": [r.device_id for r in meters],
            "u": [up_to[r.device_id] for r in meters],
            "lt": [r.last_ts for r in meters],
            "lr": [r.last_register for r in meters],
            "rmax": [r.register_max for r in meters],
            "res": [r.resolution for r in meters],
            "places": [_places(r.resolution) for r in meters],
        }
        params.update({f"eff{i}": t.effective_from for i, t in enumerate(tariffs)})
        params.update({f"mo{i}": m for i, m in enumerate(starts)})
        firsts: dict[int, list[Any]] = {}
        for first in session.execute(text(_stretches_sql(len(tariffs), len(starts))), params):
            firsts.setdefault(first.d, []).append(first)
        lasts = {last.d: last for last in session.execute(_LAST, params)}
        stretches: dict[int, list[Stretch]] = {}
        for r in meters:
            if r.device_id not in firsts:
                continue  # no usable reading after the cursor: nothing to do
            mult = r.multiplier if r.multiplier is not None else Decimal(1)
            ss = _stretches(firsts[r.device_id], lasts[r.device_id], r.register_max, mult)
            if any(s.kind == "held" or s.tariff == 0 for s in ss):
                slow.add(r.device_id)  # a reset/replacement to hold, or no tariff yet: charge_meter's cases
            else:
                stretches[r.device_id] = ss
        months = {
            (r.account_id, date(loc.year, loc.month, 1))
            for r in meters
            for s in stretches.get(r.device_id, ())
            for loc in (s.to_ts.astimezone(tz),)
        }
        totals: dict[int, dict[date, tuple[Decimal, Decimal]]] = {}
        if months:
            pairs = sorted(months)
            for a, m in pairs:
                totals.setdefault(a, {})[m] = (Decimal(0), Decimal(0))
            got = session.execute(_MONTH_TOTALS, {"a": [p[0] for p in pairs], "m": [p[1] for p in pairs]})
            for a, m, vol, val in got:
                totals[a][m] = (Decimal(vol), Decimal(val))
        for r in meters:  # in id order: two meters of one unit run through the month's tiers in turn
            mine = stretches.get(r.device_id)
            if not mine:
                continue
            pricer = _Pricer(session, r.account_id, tariffs, tz)
            pricer.month_totals = totals.setdefault(r.account_id, {})
            res = results[r.device_id]
            for s in mine:
                volume = s.volume
                if volume <= 0:
                    continue  # zero volume moves the cursor and writes nothing
                priced = pricer.price(s.from_ts, s.to_ts, volume)
                assert priced is not None  # tb > 0: a tariff is in force from the stretch's start
                month, parts = priced
                value = sum((p.value_fen for p in parts), Decimal(0))
                cum_volume, cum_value, amount = pricer.book(month, volume, value)
                row = {
                    "account_id": r.account_id,
                    "device_id": r.device_id,
                    "from_ts": s.from_ts,
                    "to_ts": s.to_ts,
                    "from_register": s.from_register,
                    "to_register": s.to_register,
                    "kind": s.kind,
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
                pending.append(Pending(row, estate_id, revenue))
                res.charges += 1
                res.amount_fen += amount
            moves.append((r.device_id, mine[-1].to_ts, mine[-1].to_register))
            if len(pending) >= PENDING_MAX:
                write_charges(session, pending, falls, closed)
                pending.clear()
    write_charges(session, pending, falls, closed)
    if moves:
        session.execute(
            _MOVE_CURSORS,
            {"d": [m[0] for m in moves], "t": [m[1] for m in moves], "r": [m[2] for m in moves], "now": now},
        )
    for d in sorted(slow):
        results[d] = charge_meter(session, d, up_to[d], wait=wait, locked=True)
    apply_falls(session, falls)  # last: the revenue row stays locked only until the caller commits
    session.flush()
    return [results[d] for d in ids]
