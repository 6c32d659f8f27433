"""Consumption maths over cumulative meter registers (domain-defaults §3, reliability M10/M16).

Pure functions over ``Decimal``: billing and alarms both derive consumption here, so neither has to
import the other. Rollover, reset and replacement are explicit branches; unusable input gives ``None``
instead of an exception, in the style of Home Assistant's ``utility_meter``.

Conventions:
* ``register_max`` is the register's modulus: the register shows 0 where it would show ``register_max``.
* ``resolution`` is the smallest register step; registers are floored to it before subtracting, so
  interval volumes telescope: Σ volumes == last register − first register (+ rollovers).
* ``multiplier`` is the CT/PT ratio (倍率) of electricity meters; water meters use 1.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Context, Decimal
from enum import StrEnum
from itertools import pairwise

# The domain rule: a fall is a rollover only when the previous value was in the top 10 % of the range.
ROLLOVER_FROM = Decimal("0.9")
# Our extra guard: ... and the new value is in the bottom 10 %. A fall from 95 000 to 60 000 would
# otherwise bill 65 000 m³ as a "rollover"; holding billing (reset branch) is the safe side.
ROLLOVER_TO = Decimal("0.1")
# Registers carry ≤ 20 digits and multipliers ≤ 12: the default 28-digit context could round a product.
_PRECISION = 60
# The arithmetic's own context, used through its methods: entering a ``localcontext()`` for every interval cost
# more than the interval's arithmetic (a first energy backfill walks 21.6 M of them, bench/billing.py).
_EXACT = Context(prec=_PRECISION)

HOLD_REASON = "hold billing; task to record the old meter's final and the new meter's initial reading"


class ConsumptionKind(StrEnum):
    normal = "normal"
    rollover = "rollover"
    reset = "reset"
    replacement = "replacement"


@dataclass(frozen=True, slots=True)
class Reading:
    """One cumulative register at one device time (an actual reading, never an estimate)."""

    ts: datetime
    register: Decimal
    reverse_register: Decimal | None = None
    serial: str | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Consumption:
    """The volume between two consecutive actual readings, and whether it may be billed."""

    from_ts: datetime
    to_ts: datetime
    volume: Decimal
    kind: ConsumptionKind
    billable: bool
    reason: str
    from_register: Decimal
    to_register: Decimal


Interval = Consumption


@dataclass(frozen=True, slots=True)
class Revision:
    """What a late reading changed: the intervals it supersedes and the ones that replace them."""

    readings: tuple[Reading, ...]  # the usable readings in device-time order, the late one included
    superseded: tuple[Consumption, ...]
    replacing: tuple[Consumption, ...]

    @property
    def adjustment(self) -> Decimal:
        """Return the billable volume to add (or, if negative, credit) for the affected period."""
        return billable_total(self.replacing) - billable_total(self.superseded)


def _floor(value: Decimal, resolution: Decimal | None) -> Decimal:
    if resolution is None:
        return value
    return _EXACT.multiply(_EXACT.divide(value, resolution).to_integral_value(rounding=ROUND_FLOOR), resolution)


def _valid_params(register_max: Decimal | None, resolution: Decimal | None, multiplier: Decimal) -> bool:
    for value in (register_max, resolution):
        if value is not None and not (value.is_finite() and value > 0):
            return False
    return multiplier.is_finite() and multiplier > 0


def usable(reading: Reading, *, register_max: Decimal | None) -> bool:
    """Return whether a reading can take part in consumption at all."""
    reg = reading.register
    if reading.ts.tzinfo is None or reading.ts.utcoffset() is None:
        return False  # a naive time cannot be ordered against device time; ingest quarantines these
    if not reg.is_finite() or reg < 0:
        return False
    # A register at or beyond its own modulus is a misread, not a consumption.
    return register_max is None or reg < register_max


def consumption(
    prev: Reading,
    curr: Reading,
    *,
    register_max: Decimal | None,
    resolution: Decimal | None,
    multiplier: Decimal = Decimal(1),
) -> Consumption | None:
    """Return the consumption from ``prev`` to ``curr``, or ``None`` if the pair cannot be used."""
    if not _valid_params(register_max, resolution, multiplier):
        return None
    if not (usable(prev, register_max=register_max) and usable(curr, register_max=register_max)):
        return None
    if curr.ts <= prev.ts:
        return None  # same instant or out of order: the caller must order by device time
    start, end = _floor(prev.register, resolution), _floor(curr.register, resolution)

    def result(volume: Decimal, kind: ConsumptionKind, billable: bool, reason: str) -> Consumption:
        scaled = _EXACT.multiply(volume, multiplier)
        return Consumption(prev.ts, curr.ts, scaled, kind, billable, reason, start, end)

    if prev.serial is not None and curr.serial is not None and prev.serial != curr.serial:
        # A new meter's register says nothing about the old one's: counting across would double or
        # lose volume, so the interval is held until someone records both readings.
        why = f"meter replaced ({prev.serial} → {curr.serial}); {HOLD_REASON}"
        return result(Decimal(0), ConsumptionKind.replacement, False, why)
    if end >= start:
        return result(end - start, ConsumptionKind.normal, True, "")
    if register_max is not None and start >= ROLLOVER_FROM * register_max and end < ROLLOVER_TO * register_max:
        why = f"register rolled over at {register_max}"
        return result(register_max - start + end, ConsumptionKind.rollover, True, why)
    # Never bill a negative, never guess: zero for this interval and billing held for the meter.
    why = f"register fell from {start} to {end}; {HOLD_REASON}"
    return result(Decimal(0), ConsumptionKind.reset, False, why)


def replaced_volume(
    from_register: Decimal,
    to_register: Decimal,
    old_final_register: Decimal,
    new_initial_register: Decimal,
    *,
    resolution: Decimal | None,
    multiplier: Decimal = Decimal(1),
) -> Decimal:
    """Return the volume of a held interval once a person recorded the old meter's final and the new meter's
    initial register: (old final − from) + (to − new initial), floored to the resolution, times the multiplier.

    Billing charges a confirmed hold with it and the energy reports count the interval with it, so both agree."""
    volume = (_floor(old_final_register, resolution) - _floor(from_register, resolution)) + (
        _floor(to_register, resolution) - _floor(new_initial_register, resolution)
    )
    return _EXACT.multiply(volume, multiplier)


def _ordered(readings: Iterable[Reading], register_max: Decimal | None) -> list[Reading]:
    # Stable sort, then drop later duplicates of an instant: storage keeps the first reading per
    # (device, ts) too (on_conflict_do_nothing), so both sides agree on which one counts.
    out: list[Reading] = []
    for r in sorted((r for r in readings if usable(r, register_max=register_max)), key=lambda r: r.ts):
        if not out or r.ts > out[-1].ts:
            out.append(r)
    return out


def intervals(
    readings: Iterable[Reading],
    *,
    register_max: Decimal | None,
    resolution: Decimal | None,
    multiplier: Decimal = Decimal(1),
) -> list[Consumption]:
    """Return the consumption of each pair of consecutive usable readings, in device-time order."""
    if not _valid_params(register_max, resolution, multiplier):
        return []
    ordered = _ordered(readings, register_max)
    out: list[Consumption] = []
    for prev, curr in pairwise(ordered):
        c = consumption(prev, curr, register_max=register_max, resolution=resolution, multiplier=multiplier)
        if c is not None:  # cannot happen after _ordered; kept so a future branch cannot drop volume silently
            out.append(c)
    return out


def billable_total(items: Iterable[Consumption]) -> Decimal:
    """Return the sum of billable volumes."""
    return sum((c.volume for c in items if c.billable), Decimal(0))


def insert_late(
    readings: Sequence[Reading],
    late: Reading,
    *,
    register_max: Decimal | None,
    resolution: Decimal | None,
    multiplier: Decimal = Decimal(1),
) -> Revision:
    """Insert a late reading by device time and return the intervals it supersedes and adds (M10)."""
    ordered = _ordered(readings, register_max)
    if not usable(late, register_max=register_max) or any(r.ts == late.ts for r in ordered):
        return Revision(tuple(ordered), (), ())  # unusable or a duplicate instant: nothing changes
    pos = bisect.bisect_left([r.ts for r in ordered], late.ts)
    updated = [*ordered[:pos], late, *ordered[pos:]]
    # Only the neighbours' intervals can change: recompute that window and diff it. Billing turns
    # the difference into an adjustment line; closed intervals are never edited in place.
    lo, hi = max(pos - 1, 0), pos + 2
    before = intervals(ordered[lo : hi - 1], register_max=register_max, resolution=resolution, multiplier=multiplier)
    after = intervals(updated[lo:hi], register_max=register_max, resolution=resolution, multiplier=multiplier)
    gone, new = Counter(before) - Counter(after), Counter(after) - Counter(before)
    return Revision(tuple(updated), tuple(gone.elements()), tuple(new.elements()))
