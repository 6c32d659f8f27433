"""Meter anomaly detectors (domain-defaults §3): pure functions from recent intervals to a finding.

Each detector looks at one device's recent readings or intervals (from ``facility.meters``) plus its
context, and returns a ``Finding`` or ``None``. Detectors describe the *current* state of the window
they are given; opening one alarm per episode, tickets and valve commands are the rule engine's job.
Volumes stay ``Decimal``; flows in L/h are derived from m³ with exact arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from alarms.const import Severity
from facility.meters import Consumption, ConsumptionKind, Reading, intervals, usable

LITRES_PER_M3 = Decimal(1000)
_HOUR = timedelta(hours=1)
_US_PER_HOUR = Decimal(3_600_000_000)
_COUNTED = (ConsumptionKind.normal, ConsumptionKind.rollover)
VACANT = "vacant"  # storage.models.Occupancy values; compared as text so this module needs no ORM
OCCUPIED = "occupied"


class AnomalyKind(StrEnum):
    vacant_flow = "vacant_flow"
    reverse_energy = "reverse_energy"
    night_leak = "night_leak"
    continuous_flow = "continuous_flow"
    spike = "spike"
    stuck = "stuck"
    building_balance = "building_balance"
    reset_or_replacement = "reset_or_replacement"
    low_battery = "low_battery"  # judged from status frames (alarms/battery.py), not from registers


@dataclass(frozen=True, slots=True)
class AnomalyDefaults:
    """Tunables of the meter anomaly rules; the defaults are domain-defaults §3."""

    vacant_consecutive: int = 2
    reverse_per_day: Decimal = Decimal("0.1")  # kWh/day on a unit without PV
    reverse_flag: str = "reverse_power"
    night_start: time = time(2)
    night_end: time = time(5)
    night_nights: int = 3
    night_min_flow: Decimal = Decimal(10)  # L/h, the minimum over the night's hours
    leak_flow: Decimal = Decimal(30)  # L/h on one night is a leak, not a maybe
    continuous_for: timedelta = timedelta(hours=24)
    # Volume over a longer gap says nothing about *when* water ran, so such intervals are not
    # evidence of night or continuous flow (the hours they cover count as missing).
    max_evidence_interval: timedelta = timedelta(hours=1)
    spike_factor: Decimal = Decimal(3)
    spike_percentile: int = 95
    # Fewer intervals than a day of hourly reads make the 95th percentile the maximum of a handful.
    spike_min_history: int = 24
    # An interval at or below this volume is never a spike, whatever the percentile says: on hourly
    # reads a healthy flat's p95 is a few tens of litres, so "3 × p95" alone is one bath and a wash
    # (issue 14 part 4: ~1 in 8 eight-day runs raised on a healthy flat). 0 = no floor; the meter
    # pack sets one per meter kind (alarms/meter_pack.py SPIKE_MIN_STEP).
    spike_min_step: Decimal = Decimal(0)
    stuck_for: timedelta = timedelta(days=7)
    balance_loss: Decimal = Decimal("0.15")
    # "Synchronised reads": master and sub-meters must all have a reading this close to each boundary.
    balance_sync_tolerance: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        whole = all(t.minute == t.second == t.microsecond == 0 for t in (self.night_start, self.night_end))
        if not whole or self.night_start >= self.night_end:
            raise ValueError("night window must be whole hours within one day, start before end")
        if min(self.vacant_consecutive, self.night_nights, self.spike_min_history) < 1:
            raise ValueError("counts must be at least 1")
        if not 0 < self.spike_percentile <= 100:
            raise ValueError("spike_percentile must be in (0, 100]")


DEFAULTS = AnomalyDefaults()


@dataclass(frozen=True, slots=True)
class MeterContext:
    """What a detector needs to know about the meter and the unit it serves."""

    unit: Literal["kWh", "m3"]
    resolution: Decimal
    tz: tzinfo  # the estate's local zone: night windows are local clock hours
    occupancy: str = OCCUPIED
    has_pv: bool = False
    has_valve: bool = False
    multiplier: Decimal = Decimal(1)
    register_max: Decimal | None = None
    capacity_per_hour: Decimal | None = None  # pipe/breaker limit, in consumed units per hour


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected anomaly: what, how bad, why, and the numbers behind it (as exact strings)."""

    kind: AnomalyKind
    severity: Severity
    detail: str
    evidence: Mapping[str, str]
    at: datetime  # device time of the latest evidence
    hold_billing: bool = False
    close_valve: bool = False


# --- helpers -------------------------------------------------------------------------------------


def _hours(d: timedelta) -> Decimal:
    return Decimal(d // timedelta(microseconds=1)) / _US_PER_HOUR


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def _sorted(items: Iterable[Consumption]) -> list[Consumption]:
    return sorted(items, key=lambda c: c.from_ts)


def percentile(values: Sequence[Decimal], pct: int) -> Decimal | None:
    """Return the nearest-rank percentile (an actual observed value), or ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-pct * len(ordered) // 100)  # ceil without floats
    return ordered[max(rank, 1) - 1]


@dataclass(slots=True)
class _Hour:
    volume: Decimal
    covered_us: int


def hourly(items: Iterable[Consumption], tz: tzinfo, *, max_interval: timedelta) -> dict[datetime, Decimal]:
    """Return volume per fully covered local clock hour, spreading each interval evenly over its span."""
    buckets: dict[datetime, _Hour] = {}
    for c in items:
        span = c.to_ts - c.from_ts
        if c.kind not in _COUNTED or span > max_interval or span <= timedelta(0):
            continue  # unknown volume (reset) or too coarse: its hours stay uncovered
        total_us = span // timedelta(microseconds=1)
        t = c.from_ts
        while t < c.to_ts:
            start = t.astimezone(tz).replace(minute=0, second=0, microsecond=0)
            # Step in absolute time: wall-clock arithmetic would misbehave across a DST change.
            end = min(start.astimezone(UTC) + _HOUR, c.to_ts)
            piece_us = (end - t) // timedelta(microseconds=1)
            bucket = buckets.setdefault(start, _Hour(Decimal(0), 0))
            bucket.volume += c.volume * piece_us / total_us
            bucket.covered_us += piece_us
            t = end
    full = int(_US_PER_HOUR)
    return {start: b.volume for start, b in sorted(buckets.items()) if b.covered_us >= full}


# --- detectors -----------------------------------------------------------------------------------


def vacant_flow(
    items: Sequence[Consumption], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS
) -> Finding | None:
    """Detect water use of at least one register step on consecutive intervals in a vacant unit."""
    n = defaults.vacant_consecutive
    if ctx.unit != "m3" or ctx.occupancy != VACANT:
        return None
    recent = _sorted(items)[-n:]
    step = ctx.resolution * ctx.multiplier
    # One step alone can be a register jitter or a last drip; two in a row is water running.
    if len(recent) < n or any(c.kind not in _COUNTED or c.volume < step for c in recent):
        return None
    total = sum((c.volume for c in recent), Decimal(0))
    valve = " Close the valve." if ctx.has_valve else " No remote valve: send someone to close the stop valve."
    return Finding(
        AnomalyKind.vacant_flow,
        Severity.critical,
        f"Water flowing in a vacant unit: {total} m³ over the last {n} readings.{valve}",
        {
            "since": _iso(recent[0].from_ts),
            "volumes": ",".join(str(c.volume) for c in recent),
            "total": str(total),
            "has_valve": str(ctx.has_valve).lower(),
        },
        recent[-1].to_ts,
        close_valve=ctx.has_valve,
    )


def reverse_energy(
    readings: Sequence[Reading], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS
) -> Finding | None:
    """Detect an electricity meter running backwards on a unit without registered PV."""
    if ctx.unit != "kWh" or ctx.has_pv:
        return None  # PV export legitimately turns the reverse register
    ordered = sorted((r for r in readings if usable(r, register_max=ctx.register_max)), key=lambda r: r.ts)
    flagged = [r for r in ordered if defaults.reverse_flag in r.flags]
    if flagged:
        return Finding(
            AnomalyKind.reverse_energy,
            Severity.alarm,
            "Meter reports reverse power on a unit without PV: check wiring / tampering.",
            {"flag": defaults.reverse_flag, "first": _iso(flagged[0].ts), "count": str(len(flagged))},
            flagged[-1].ts,
        )
    rev = [(r.ts, r.reverse_register) for r in ordered if r.reverse_register is not None]
    rev = [(ts, v) for ts, v in rev if v.is_finite()]
    if len(rev) < 2:
        return None
    # Only increases count: a reverse register that falls was reset, which is not reverse energy.
    increase = sum((max(b - a, Decimal(0)) for (_, a), (_, b) in pairwise(rev)), Decimal(0)) * ctx.multiplier
    # Averaged over at least a day: one register step in a 15-minute window is not "per day".
    days = max(_hours(rev[-1][0] - rev[0][0]) / 24, Decimal(1))
    if increase <= defaults.reverse_per_day * days:
        return None
    return Finding(
        AnomalyKind.reverse_energy,
        Severity.alarm,
        f"Reverse register rose {increase} kWh in {days:.2f} days on a unit without PV: check wiring / tampering.",
        {"increase_kwh": str(increase), "from": _iso(rev[0][0]), "to": _iso(rev[-1][0])},
        rev[-1][0],
    )


def night_leak(items: Sequence[Consumption], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS) -> Finding | None:
    """Detect night-time flow: every night hour > 0 on consecutive nights, or a high minimum night flow."""
    if ctx.unit != "m3":
        return None
    night_hours = range(defaults.night_start.hour, defaults.night_end.hour)
    by_night: dict[date, dict[int, Decimal]] = {}
    for start, volume in hourly(items, ctx.tz, max_interval=defaults.max_evidence_interval).items():
        local = start.astimezone(ctx.tz)
        if local.hour in night_hours:
            # A fully covered hour's volume in m³ is its flow in m³/h.
            by_night.setdefault(local.date(), {})[local.hour] = volume * LITRES_PER_M3
    # Only nights with every hour observed: a gap must not look like either a leak or its absence.
    nights = {d: [h[x] for x in night_hours] for d, h in sorted(by_night.items()) if len(h) == len(night_hours)}
    if not nights:
        return None
    minimum = {d: min(flows) for d, flows in nights.items()}
    latest = max(nights)
    # Every rule needs the latest observed night to still show it, so the finding ends (and the
    # episode can clear) once the leak is fixed, whatever window the caller passes.
    leak_nights = [latest] if minimum[latest] > defaults.leak_flow else []
    high_nights = [d for d, m in minimum.items() if m > defaults.night_min_flow]
    if latest not in high_nights:
        high_nights = []
    run: list[date] = []  # trailing run of consecutive nights with flow in every hour
    for d in sorted(nights, reverse=True):
        if minimum[d] <= 0 or (run and run[-1] - d != timedelta(days=1)):
            break
        run.append(d)
    if leak_nights:
        severity, verdict, rule, days = (
            Severity.alarm,
            "leak",
            f"minimum night flow > {defaults.leak_flow} L/h",
            leak_nights,
        )
    elif len(high_nights) >= defaults.night_nights:
        severity, verdict, rule, days = (
            Severity.warning,
            "possible leak",
            f"minimum night flow > {defaults.night_min_flow} L/h on {len(high_nights)} nights",
            high_nights,
        )
    elif len(run) >= defaults.night_nights:
        severity, verdict, rule, days = (
            Severity.warning,
            "possible leak",
            f"flow in every hour {defaults.night_start:%H}–{defaults.night_end:%H} h on {len(run)} consecutive nights",
            sorted(run),
        )
    else:
        return None
    last = datetime.combine(days[-1], defaults.night_end, ctx.tz)
    return Finding(
        AnomalyKind.night_leak,
        severity,
        f"Water meter shows a {verdict}: {rule}.",
        {
            "verdict": verdict,
            "nights": ",".join(d.isoformat() for d in days),
            "min_flow_lph": ",".join(f"{minimum[d].quantize(Decimal('0.1'))}" for d in days),
        },
        last,
    )


def continuous_flow(
    items: Sequence[Consumption], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS
) -> Finding | None:
    """Detect water flowing in every hour for at least ``continuous_for`` up to the latest full hour."""
    if ctx.unit != "m3":
        return None
    # Hourly buckets rather than raw intervals: a 2 L/h trickle read every 15 minutes on a 1 L
    # register shows zero in some reads but never in a whole hour.
    hours = list(hourly(items, ctx.tz, max_interval=defaults.max_evidence_interval).items())
    run: list[tuple[datetime, Decimal]] = []
    for start, volume in reversed(hours):
        if volume <= 0 or (run and run[-1][0] - start != _HOUR):
            break
        run.append((start, volume))
    if len(run) * _HOUR < defaults.continuous_for:
        return None
    since, end = run[-1][0], run[0][0] + _HOUR
    lowest = min(v for _, v in run) * LITRES_PER_M3
    return Finding(
        AnomalyKind.continuous_flow,
        Severity.alarm,
        f"Water has flowed in every hour for {len(run)} h (at least {lowest.quantize(Decimal('0.1'))} L/h).",
        {"since": _iso(since), "hours": str(len(run)), "min_flow_lph": str(lowest.quantize(Decimal("0.1")))},
        end,
    )


def spike(items: Sequence[Consumption], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS) -> Finding | None:
    """Detect a latest interval far above the meter's usual use, or above what the supply can deliver."""
    ordered = _sorted(items)
    if not ordered or ordered[-1].kind not in _COUNTED:
        return None
    latest, history = ordered[-1], [c for c in ordered[:-1] if c.kind in _COUNTED]
    span = latest.to_ts - latest.from_ts
    evidence = {"from": _iso(latest.from_ts), "to": _iso(latest.to_ts), "volume": str(latest.volume)}
    if ctx.capacity_per_hour is not None:
        limit = ctx.capacity_per_hour * _hours(span)
        if latest.volume > limit:
            return Finding(
                AnomalyKind.spike,
                Severity.alarm,
                f"{latest.volume} {ctx.unit} in {span} exceeds the supply capacity ({limit}): billing held.",
                {**evidence, "capacity_limit": str(limit)},
                latest.to_ts,
                hold_billing=True,
            )
    if len(history) < defaults.spike_min_history:
        return None
    p = percentile([c.volume for c in history], defaults.spike_percentile)
    if p is None or p <= 0:
        return None  # a meter that is usually idle has no "usual": vacant_flow covers use there
    # Allow proportionally more for an interval that spans a gap, so a catch-up read after missed
    # reads is not a spike; shorter intervals get no discount (one step in 10 s is not a spike).
    typical = sorted(c.to_ts - c.from_ts for c in history)[len(history) // 2]
    stretch = max(_hours(span) / _hours(typical), Decimal(1)) if typical > timedelta(0) else Decimal(1)
    threshold = max(defaults.spike_factor * p * stretch, defaults.spike_min_step)
    if latest.volume <= threshold:
        return None
    return Finding(
        AnomalyKind.spike,
        Severity.alarm,
        f"{latest.volume} {ctx.unit} is over {defaults.spike_factor}× the meter's p{defaults.spike_percentile}"
        f" interval use ({p}): billing held for the interval.",
        {**evidence, "percentile": str(p), "threshold": str(threshold)},
        latest.to_ts,
        hold_billing=True,
    )


def stuck(readings: Sequence[Reading], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS) -> Finding | None:
    """Detect a register that has not moved for ``stuck_for`` on an occupied unit."""
    if ctx.occupancy != OCCUPIED:
        return None  # a vacant or renovating unit may legitimately use nothing
    ordered = sorted((r for r in readings if usable(r, register_max=ctx.register_max)), key=lambda r: r.ts)
    if not ordered:
        return None
    latest = ordered[-1]
    since = latest
    for r in reversed(ordered):
        # Compare at the register's resolution: sub-step noise in the payload is not movement.
        if abs(r.register - latest.register) >= ctx.resolution or r.serial != latest.serial:
            break
        since = r
    idle = latest.ts - since.ts
    if idle < defaults.stuck_for:
        return None
    return Finding(
        AnomalyKind.stuck,
        Severity.warning,
        f"Register unchanged at {latest.register} for {idle.days} days on an occupied unit: check meter.",
        {"register": str(latest.register), "since": _iso(since.ts), "days": str(idle.days)},
        latest.ts,
    )


def reset_or_replacement(items: Sequence[Consumption]) -> Finding | None:
    """Report the latest reset or replacement interval, which holds the meter's billing."""
    held = [c for c in _sorted(items) if c.kind in (ConsumptionKind.reset, ConsumptionKind.replacement)]
    if not held:
        return None
    c = held[-1]
    return Finding(
        AnomalyKind.reset_or_replacement,
        Severity.warning,
        f"Meter {c.kind}: {c.reason}.",
        {
            "kind": str(c.kind),
            "from": _iso(c.from_ts),
            "to": _iso(c.to_ts),
            "from_register": str(c.from_register),
            "to_register": str(c.to_register),
        },
        c.to_ts,
        hold_billing=True,
    )


def total_between(
    items: Sequence[Consumption], start: datetime, end: datetime, *, tolerance: timedelta
) -> Decimal | None:
    """Return the volume between reads at ``start`` and ``end`` (± tolerance), or ``None`` if not covered."""
    inside = [c for c in _sorted(items) if c.from_ts >= start - tolerance and c.to_ts <= end + tolerance]
    if not inside or inside[0].from_ts > start + tolerance or inside[-1].to_ts < end - tolerance:
        return None
    if any(a.to_ts != b.from_ts for a, b in pairwise(inside)) or any(c.kind not in _COUNTED for c in inside):
        return None  # a hole or a reset: the day's volume is unknown
    return sum((c.volume for c in inside), Decimal(0))


def building_balance(
    master: Sequence[Consumption],
    subs: Mapping[str, Sequence[Consumption]],
    *,
    start: datetime,
    end: datetime,
    defaults: AnomalyDefaults = DEFAULTS,
) -> Finding | None:
    """Detect a master meter exceeding the sum of its sub-meters by more than ``balance_loss``."""
    tol = defaults.balance_sync_tolerance
    main = total_between(master, start, end, tolerance=tol)
    parts = {code: total_between(items, start, end, tolerance=tol) for code, items in subs.items()}
    # A sub-meter without synchronised reads would show up as "loss": no verdict rather than a false leak.
    if main is None or main <= 0 or not parts or any(v is None for v in parts.values()):
        return None
    total_subs = sum((v for v in parts.values() if v is not None), Decimal(0))
    loss = main - total_subs
    ratio = loss / main
    if ratio <= defaults.balance_loss:
        return None
    pct = (ratio * 100).quantize(Decimal("0.1"))
    return Finding(
        AnomalyKind.building_balance,
        Severity.alarm,
        f"Master meter exceeds its {len(parts)} sub-meters by {loss} ({pct} %): possible pipe leak.",
        {"master": str(main), "sub_total": str(total_subs), "loss": str(loss), "loss_pct": str(pct)},
        end,
    )


def detect(readings: Sequence[Reading], ctx: MeterContext, defaults: AnomalyDefaults = DEFAULTS) -> list[Finding]:
    """Run every single-meter detector over one device's recent readings."""
    items = intervals(readings, register_max=ctx.register_max, resolution=ctx.resolution, multiplier=ctx.multiplier)
    found = [
        vacant_flow(items, ctx, defaults),
        reverse_energy(readings, ctx, defaults),
        night_leak(items, ctx, defaults),
        continuous_flow(items, ctx, defaults),
        spike(items, ctx, defaults),
        stuck(readings, ctx, defaults),
        reset_or_replacement(items),
    ]
    return [f for f in found if f is not None]
