"""Equipment-room sensors: every point of a device in one ``telemetry`` frame per interval.

A gauge is ``nominal + diurnal swing + slow drift + noise``; the estate file gives ``nominal`` and
``noise`` per point, and the metric name picks the daily shape (loads follow household demand, tank
levels dip when demand peaks, heating temperatures rise in the cold small hours). States are booleans.
A few couplings keep a device self-consistent, e.g. a dry-type transformer's fans come on at 110 °C.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from protocol.estate_file import DeviceSpec, PointSpec
from protocol.topics import Channel
from simulators import profiles
from simulators.frames import Emission, Reading
from simulators.rand import derive, rng

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Shape = Callable[[float], float]

_LOAD: Shape = lambda h: profiles.shape(profiles.ELECTRIC_KW, h)  # noqa: E731
_WATER: Shape = lambda h: profiles.shape(profiles.TOILET, h)  # noqa: E731

# metric prefix → (daily shape, swing as a fraction of |nominal|). First match wins.
DIURNAL: tuple[tuple[str, Shape, float], ...] = (
    ("load_pct", _LOAD, 0.35),
    ("current_", _LOAD, 0.35),
    ("active_power", _LOAD, 0.35),
    ("winding_temp", _LOAD, 0.10),  # copper losses grow with load
    ("case_temp", _LOAD, 0.05),
    ("steps_on", _LOAD, 0.25),  # more reactive load, more capacitor steps
    ("vfd_freq", _WATER, 0.12),  # booster pumps speed up with demand
    ("outlet_pressure", _WATER, -0.01),
    ("tank_level", _WATER, -0.06),  # tanks draw down at the morning and evening peaks
    ("room_temp", profiles.daytime_shape, 0.04),
    ("primary_supply_temp", profiles.heating_shape, 0.05),
    ("secondary_supply_temp", profiles.heating_shape, 0.05),
    ("secondary_return_temp", profiles.heating_shape, 0.04),
    # Outdoors is coldest when the heating runs hardest (05:00): against the heating shape.
    ("outdoor_temp", profiles.heating_shape, -0.6),
)
INTEGER_UNITS = frozenset({"steps", "count", "pcs"})
DRIFT_PERIODS_S = (7 * 3600.0, 41 * 3600.0)  # slow, incommensurate: no visible repetition
DRIFT_NOISES = 3.0  # drift amplitude, in multiples of the point's noise
FAN_ON_C = 110.0  # dry-type transformer fans (domain-defaults §2), unless attrs.fan_on_c says otherwise
FAN_HYSTERESIS_C = 10.0


@dataclass(frozen=True, slots=True)
class Ramp:
    """A scenario's push on some metrics: +per_minute from ``since``, at most ``cap`` (a fall: a negative
    ``per_minute`` and ``cap``, at most ``cap`` down)."""

    prefix: str
    since: datetime
    per_minute: float
    cap: float
    scenario: str


@dataclass(frozen=True, slots=True)
class Force:
    """A scenario's hand on one state point from ``since``: held ``on``, or cycling on for ``on_s`` every
    ``period_s`` (a jockey pump topping up a leaking main)."""

    metric: str
    since: datetime
    on: bool
    scenario: str
    period_s: float = 0.0
    on_s: float = 0.0

    def value(self, ts: datetime) -> bool:
        if self.period_s <= 0:
            return self.on
        return (ts - self.since).total_seconds() % self.period_s < self.on_s


@dataclass(frozen=True, slots=True)
class _Point:
    spec: PointSpec
    nominal: float
    noise: float
    decimals: int
    shape: Shape | None
    swing: float
    phases: tuple[float, float]


def _decimals(noise: float) -> int:
    # Resolve about half the noise, as a transducer display would: 1.2 V → 0.1 V, 0.004 MPa → 0.001 MPa.
    if noise <= 0:
        return 2
    return min(3, max(1, -math.floor(math.log10(noise / 2))))


class SensorModel:
    """One multi-point equipment sensor/controller."""

    def __init__(self, spec: DeviceSpec, *, seed: int, start: datetime, tz: tzinfo) -> None:
        self.code = spec.code
        self.kind = spec.kind
        self.seed = seed
        self.tz = tz
        self.start = start
        self.interval_s = spec.expected_interval_s
        # Devices do not all report on the same second.
        self.phase_s = derive(seed, spec.code, "phase") % self.interval_s
        secs = (start - EPOCH).total_seconds() - self.phase_s
        self._k = math.ceil(secs / self.interval_s)
        self.fan_on_c = float(spec.attrs.get("fan_on_c", FAN_ON_C))
        self.points = tuple(self._point(p) for p in spec.points)
        self.ramps: list[Ramp] = []
        self.forces: list[Force] = []
        self.silent_from: datetime | None = None
        self._fan_on = False

    def _point(self, p: PointSpec) -> _Point:
        nominal = p.nominal if p.nominal is not None else 0.0
        noise = p.noise if p.noise is not None else (0.01 * abs(nominal) if p.kind == "gauge" else 0.0)
        shape, swing = None, 0.0
        for prefix, fn, amount in DIURNAL:
            if p.metric.startswith(prefix):
                shape, swing = fn, amount
                break
        r = rng(self.seed, self.code, p.metric, "drift")
        phases = (r.uniform(0, 2 * math.pi), r.uniform(0, 2 * math.pi))
        return _Point(p, nominal, noise, _decimals(noise), shape, swing, phases)

    # --- scenario hooks -------------------------------------------------------------------------
    def add_ramp(self, ramp: Ramp) -> None:
        self.ramps.append(ramp)

    def force(self, force: Force) -> None:
        self.forces.append(force)

    def silence(self, since: datetime) -> None:
        self.silent_from = since

    # --- model ----------------------------------------------------------------------------------
    @property
    def next_due(self) -> datetime | None:
        t = EPOCH + timedelta(seconds=self._k * self.interval_s + self.phase_s)
        if self.silent_from is not None and t >= self.silent_from:
            return None  # a dead sensor says nothing at all
        return t

    def produce(self) -> list[Emission]:
        ts = self.next_due
        if ts is None:
            return []
        k = self._k
        self._k += 1
        r = rng(self.seed, self.code, k)
        hour = profiles.local_hour(ts.astimezone(self.tz))
        epoch_s = (ts - EPOCH).total_seconds()
        hours_since_start = (ts - self.start).total_seconds() / 3600
        values: dict[str, float | bool] = {}
        scenario: str | None = None
        for pt in self.points:
            kind = pt.spec.kind
            if kind == "state":
                on = pt.nominal >= 0.5
                # For a state, ``noise`` is the chance of finding it the other way (e.g. a jockey pump's
                # short runs). Drawn for every point so that adding a point never shifts other draws.
                flip = r.random() < pt.noise
                values[pt.spec.metric] = on != flip
                for force in self.forces:
                    if force.metric == pt.spec.metric and ts >= force.since:
                        values[pt.spec.metric] = force.value(ts)
                        scenario = force.scenario
                continue
            gauss = r.gauss(0, 1)
            if kind == "counter":
                # For a counter, ``noise`` is its mean increase per hour.
                values[pt.spec.metric] = round(pt.nominal + pt.noise * hours_since_start, pt.decimals)
                continue
            value = pt.nominal + pt.noise * gauss
            if pt.shape is not None:
                value += pt.swing * abs(pt.nominal) * pt.shape(hour)
            value += (
                pt.noise
                * DRIFT_NOISES
                * sum(
                    math.sin(2 * math.pi * epoch_s / period + phase)
                    for period, phase in zip(DRIFT_PERIODS_S, pt.phases, strict=True)
                )
                / len(DRIFT_PERIODS_S)
            )
            for ramp in self.ramps:
                if pt.spec.metric.startswith(ramp.prefix) and ts >= ramp.since:
                    push = ramp.per_minute * (ts - ramp.since).total_seconds() / 60
                    value += max(ramp.cap, push) if ramp.per_minute < 0 else min(ramp.cap, push)
                    scenario = ramp.scenario
            if pt.spec.unit in INTEGER_UNITS:
                values[pt.spec.metric] = max(0, round(value))
            else:
                values[pt.spec.metric] = round(value, pt.decimals)
        self._couple(values)
        tags = (scenario,) if scenario else ()
        return [Reading(ts, Channel.telemetry, {"values": values}, 0.0, scenario, tags)]

    def _couple(self, values: dict[str, float | bool]) -> None:
        windings = [v for m, v in values.items() if m.startswith("winding_temp") and not isinstance(v, bool)]
        if windings and "fan_on" in values:
            hottest = max(windings)
            if hottest >= self.fan_on_c:
                self._fan_on = True
            elif hottest < self.fan_on_c - FAN_HYSTERESIS_C:
                self._fan_on = False
            values["fan_on"] = self._fan_on
