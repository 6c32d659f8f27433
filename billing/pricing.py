"""Pricing maths (pure, Decimal and integer fen; never float).

The rules, in one place:

* **Tariff change.** A tariff is in force from its `effective_from` until the next version of the
  estate. An interval of readings that spans a change is split *pro rata by time* at the change (its
  volume is spread evenly over the interval, as nothing finer is known), and each part is priced at
  the tariff in force over that part. Nothing before a change is ever priced at the new tariff.
* **Tiers.** A tariff's tiers apply to the account's billed volume within the estate-local calendar
  month the interval *ends* in: tier k prices the month's volume up to ``up_to_m3`` (the last tier has
  none).
* **Rounding.** Exact values in fen are summed per account and month; each charge's amount is
  ``round(cum_after) − round(cum_before)`` (half up), so the month's total is the rounded exact total
  and many small intervals never drift by a fen each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from itertools import pairwise

VOLUME_QUANTUM = Decimal("0.000001")  # m³; the Numeric(20, 6) of meter_charges.volume_m3
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Tier:
    up_to_m3: Decimal | None  # None: no upper bound (the last tier)
    price_fen_per_m3: int


@dataclass(frozen=True, slots=True)
class TariffVersion:
    id: int
    effective_from: datetime
    tiers: tuple[Tier, ...]


@dataclass(frozen=True, slots=True)
class Part:
    """A share of one interval priced at one tariff."""

    tariff_id: int
    from_ts: datetime
    to_ts: datetime
    volume_m3: Decimal
    value_fen: Decimal

    def as_json(self) -> dict[str, str | int]:
        return {
            "tariff_id": self.tariff_id,
            "from": self.from_ts.isoformat(),
            "to": self.to_ts.isoformat(),
            "volume_m3": str(self.volume_m3),
            "value_fen": str(self.value_fen),
        }


def validate_tiers(tiers: Sequence[Tier]) -> None:
    """Raise ValueError unless the tiers are non-empty, strictly increasing and end unbounded."""
    if not tiers:
        raise ValueError("a tariff needs at least one tier")
    bounds = [t.up_to_m3 for t in tiers]
    if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise ValueError("only the last tier is unbounded (up_to_m3 = None)")
    finite = [b for b in bounds[:-1] if b is not None]
    if any(b <= 0 for b in finite) or any(b2 <= b1 for b1, b2 in pairwise(finite)):
        raise ValueError("tier bounds must be positive and strictly increasing")
    for t in tiers:
        if isinstance(t.price_fen_per_m3, bool) or not isinstance(t.price_fen_per_m3, int) or t.price_fen_per_m3 < 0:
            raise ValueError("a price is a non-negative integer of fen per m³")


def tier_value(tiers: Sequence[Tier], cum_before: Decimal, volume: Decimal) -> Decimal:
    """Exact value in fen of `volume` m³ billed after `cum_before` m³ of the same month."""
    value = Decimal(0)
    lo, hi = cum_before, cum_before + volume
    floor = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 60
        for tier in tiers:
            top = tier.up_to_m3
            a = max(lo, floor)
            b = hi if top is None else min(hi, top)
            if b > a:
                value += (b - a) * tier.price_fen_per_m3
            if top is None or hi <= top:
                break
            floor = top
    return value


def in_force(tariffs: Sequence[TariffVersion], at: datetime) -> TariffVersion | None:
    """The version in force at `at` (tariffs sorted by effective_from)."""
    current = None
    for t in tariffs:
        if t.effective_from <= at:
            current = t
        else:
            break
    return current


def split(
    tariffs: Sequence[TariffVersion], from_ts: datetime, to_ts: datetime, volume: Decimal
) -> list[tuple[TariffVersion, datetime, datetime, Decimal]] | None:
    """Split an interval at the tariff changes inside it, volume pro rata by time; None if a part has no tariff."""
    first = in_force(tariffs, from_ts)
    if first is None:
        return None
    cuts = [t for t in tariffs if from_ts < t.effective_from < to_ts]
    spans: list[tuple[TariffVersion, datetime, datetime]] = []
    start, current = from_ts, first
    for t in cuts:
        spans.append((current, start, t.effective_from))
        start, current = t.effective_from, t
    spans.append((current, start, to_ts))
    total_us = (to_ts - from_ts) // _US
    out: list[tuple[TariffVersion, datetime, datetime, Decimal]] = []
    given = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 60
        for i, (tariff, a, b) in enumerate(spans):
            if i == len(spans) - 1:
                share = volume - given  # the remainder: the parts add up to the volume exactly
            else:
                share = (volume * ((b - a) // _US) / total_us).quantize(VOLUME_QUANTUM, rounding=ROUND_DOWN)
            given += share
            out.append((tariff, a, b, share))
    return out


def round_fen(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def amount_between(cum_before: Decimal, cum_after: Decimal) -> int:
    """The fen to charge when the month's exact value goes from `cum_before` to `cum_after`."""
    return round_fen(cum_after) - round_fen(cum_before)
