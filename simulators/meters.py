"""Cumulative meters: electricity (kWh) and cold/hot water (m³) registers.

A meter reads at fixed boundaries (``k × interval`` since the epoch, i.e. :00/:15/:30/:45 for 900 s),
the way metering modules freeze readings so that a building's master and unit meters are synchronised.
Physical use in the interval ending at boundary ``k`` is a pure function of (seed, device, k) —
see ``simulators.rand`` — which lets a master meter sum its sub-meters and lets the rollover scenario
work out in advance where the register will be.

The register itself is ``offset + booked use``, wrapped at ``register_max + resolution`` and truncated
(never rounded up) to the resolution, like a mechanical or LCD register. Scenario hooks change what
is booked (reversed wiring), the offset (spike, replacement) or the starting point (rollover).

A meter with a shut-off valve obeys ``set_valve`` (a platform command, see ``simulators.commands``):
while the valve is closed nothing flows — neither normal use nor a leak — and readings report
``"valve": "closed"``. An interval the valve was closed for part of books only the open part. Until a
valve is operated, nothing here changes: the frames stay a pure function of the seed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_FLOOR, Decimal

from protocol.estate_file import METER_UNIT, DeviceSpec
from protocol.topics import Channel
from simulators import profiles
from simulators.frames import Emission, Reading, register_text
from simulators.rand import derive, rng

MICRO = Decimal("0.000001")
ZERO = Decimal(0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_decimal(x: float) -> Decimal:
    return Decimal(f"{max(x, 0.0):.6f}")


def truncate(value: Decimal, resolution: Decimal) -> Decimal:
    """Floor to a multiple of the resolution, written with the resolution's decimal places."""
    steps = (value / resolution).to_integral_value(rounding=ROUND_FLOOR)
    return (steps * resolution).quantize(resolution)


def boundary_index(t: datetime, interval_s: int) -> int:
    """Index of the first reading boundary at or after ``t``."""
    secs = int((t - EPOCH).total_seconds())
    return -(-secs // interval_s)


def boundary_time(k: int, interval_s: int) -> datetime:
    return EPOCH + timedelta(seconds=k * interval_s)


@dataclass(frozen=True, slots=True)
class RegisterStart:
    """Where a meter's registers stand when a simulation resumes it (last stored or last simulated)."""

    register: Decimal
    reverse: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Household:
    """Who lives behind a unit meter (from the expanded estate file)."""

    unit: str
    occupancy: str  # vacant | occupied | renovating
    persons: int
    has_pv: bool


@dataclass(frozen=True, slots=True)
class Use:
    """Energy or volume moved during one interval: ``forward`` imported, ``reverse`` exported."""

    forward: Decimal
    reverse: Decimal = ZERO


class UsageModel(ABC):
    """Physical use of one meter, per reading interval."""

    @abstractmethod
    def use(self, k: int) -> Use: ...


class NoUse(UsageModel):
    """A vacant flat: nothing runs, nothing flows."""

    def use(self, k: int) -> Use:
        return Use(ZERO)


class _IntervalModel(UsageModel):
    def __init__(self, code: str, seed: int, interval_s: int, tz: tzinfo) -> None:
        self.code = code
        self.seed = seed
        self.interval_s = interval_s
        self.tz = tz
        self.hours = interval_s / 3600

    def local_mid(self, k: int) -> datetime:
        # The interval ending at boundary k, sampled at its middle.
        return (boundary_time(k, self.interval_s) - timedelta(seconds=self.interval_s / 2)).astimezone(self.tz)


class ElectricityUse(_IntervalModel):
    """An occupied or renovating flat's electricity; rooftop PV exports to the reverse register."""

    def __init__(self, code: str, seed: int, interval_s: int, tz: tzinfo, household: Household) -> None:
        super().__init__(code, seed, interval_s, tz)
        self.household = household
        # Households differ: appliances, habits, flat size. Log-normal around 1.
        self.scale = rng(seed, code, "scale").lognormvariate(0, 0.3)
        self.kwp = 5.0 if household.has_pv else 0.0

    def use(self, k: int) -> Use:
        r = rng(self.seed, self.code, k)
        local = self.local_mid(k)
        if self.household.occupancy == "renovating":
            kw = 0.03 + profiles.renovation_kw(local) * r.uniform(0.3, 1.2)
        else:
            kw = profiles.household_kw(local, self.household.persons) * self.scale * max(0.2, 1 + 0.3 * r.gauss(0, 1))
        pv = 0.0
        if self.kwp:
            cloud = rng(self.seed, self.code, "cloud", local.date().isoformat()).uniform(0.25, 1.0)
            pv = profiles.pv_kw(local, self.kwp, cloud)
        net = (kw - pv) * self.hours
        return Use(to_decimal(net), to_decimal(-net))


class WaterUse(_IntervalModel):
    """A flat's cold or hot water, as discrete draws (flushes, showers, laundry)."""

    def __init__(
        self,
        code: str,
        seed: int,
        interval_s: int,
        tz: tzinfo,
        household: Household,
        uses: tuple[profiles.WaterUse, ...],
    ) -> None:
        super().__init__(code, seed, interval_s, tz)
        self.household = household
        self.uses = profiles.RENOVATION_WATER if household.occupancy == "renovating" else uses
        self.persons = 1.0 if household.occupancy == "renovating" else float(household.persons)
        self.scale = rng(seed, code, "scale").lognormvariate(0, 0.25)

    def use(self, k: int) -> Use:
        local = self.local_mid(k)
        if self.household.occupancy == "renovating" and not profiles.is_workday(local):
            return Use(ZERO)
        litres = profiles.water_draws_litres(rng(self.seed, self.code, k), self.uses, self.persons, local, self.hours)
        return Use(to_decimal(litres * self.scale / 1000))


class SteadyFlow(_IntervalModel):
    """A plant meter with a roughly constant flow (e.g. heat-station make-up water)."""

    def __init__(self, code: str, seed: int, interval_s: int, tz: tzinfo, per_hour: float) -> None:
        super().__init__(code, seed, interval_s, tz)
        self.per_hour = per_hour

    def use(self, k: int) -> Use:
        return Use(to_decimal(self.per_hour * self.hours * rng(self.seed, self.code, k).uniform(0.6, 1.4)))


class MasterUse(UsageModel):
    """A master meter sees what its sub-meters see, plus pipe losses and common-area use."""

    def __init__(self, code: str, seed: int, subs: list[MeterModel], loss: float, common: float) -> None:
        self.code = code
        self.seed = seed
        self.subs = subs
        self.factor = Decimal(f"{1 + loss:.4f}")
        self.common = common  # per interval, mean

    def use(self, k: int) -> Use:
        total = sum((s.physical(k).forward for s in self.subs), ZERO)
        extra = self.common * rng(self.seed, self.code, k).uniform(0.0, 2.0)
        return Use(total * self.factor + to_decimal(extra))


@dataclass(frozen=True, slots=True)
class _Leak:
    since: datetime
    per_interval: Decimal
    scenario: str


@dataclass(frozen=True, slots=True)
class _ValveChange:
    at: datetime
    open: bool


@dataclass(frozen=True, slots=True)
class _Jump:
    amount: Decimal
    scenario: str


@dataclass(frozen=True, slots=True)
class _Sag:
    since: datetime
    per_hour: float
    floor: float
    scenario: str


@dataclass(frozen=True, slots=True)
class _Replacement:
    serial: str
    initial: Decimal
    scenario: str


class MeterModel:
    """One cumulative meter producing ``meter`` readings at its interval boundaries."""

    def __init__(
        self,
        spec: DeviceSpec,
        usage: UsageModel,
        *,
        seed: int,
        start: datetime,
        initial: Decimal,
        initial_reverse: Decimal = ZERO,
    ) -> None:
        if spec.register_max is None or spec.resolution is None:
            raise ValueError(f"meter {spec.code} needs register_max and resolution")
        self.code = spec.code
        self.kind = spec.kind
        self.unit = METER_UNIT[spec.kind]
        self.register_max = spec.register_max
        self.resolution = spec.resolution
        self.modulus = spec.register_max + spec.resolution  # the register shows 0 … register_max
        self.interval_s = spec.expected_interval_s
        self.has_valve = spec.has_valve
        self.bidirectional = spec.kind == "electricity_meter"  # smart electricity meters keep both registers
        self.usage = usage
        self.seed = seed
        self.serial = spec.serial or default_serial(spec.code, spec.kind)
        self._k = boundary_index(start, self.interval_s)
        self.first_k = self._k
        self._offset = initial
        self._rev_offset = initial_reverse
        self._booked = ZERO
        self._booked_rev = ZERO
        self._cache: dict[int, Use] = {}
        # Scenario hooks, keyed by reading index.
        self._leaks: list[_Leak] = []
        self._jumps: dict[int, _Jump] = {}
        self._replacements: dict[int, _Replacement] = {}
        self._reversed_from: tuple[int, str] | None = None
        self._rollover_at: tuple[int, str] | None = None
        # Valve operations in time order (empty: open all along, the meter behaves as before).
        self._valve: list[_ValveChange] = []
        # A battery-powered meter reports its cell voltage in a status frame every battery_report_s
        # (epoch-aligned, at a reading boundary); mains-powered meters (no attrs.battery_v) report none.
        raw_v = spec.attrs.get("battery_v")
        self.battery_v: float | None = None if raw_v is None else float(raw_v)
        self.battery_report_s = int(spec.attrs.get("battery_report_s", 6 * 3600))
        self._sags: list[_Sag] = []

    # --- scenario hooks -------------------------------------------------------------------------
    def index_at(self, t: datetime) -> int:
        """The first reading at or after ``t`` that carries a new interval's use."""
        return max(boundary_index(t, self.interval_s), self.first_k + 1)

    def add_leak(self, since: datetime, per_hour: Decimal, scenario: str) -> None:
        per_interval = (per_hour * self.interval_s / 3600).quantize(MICRO)
        self._leaks.append(_Leak(since, per_interval, scenario))
        self._cache.clear()

    def add_jump(self, at: datetime, amount: Decimal, scenario: str) -> None:
        self._jumps[self.index_at(at)] = _Jump(amount, scenario)

    def replace(self, at: datetime, serial: str, initial: Decimal, scenario: str) -> None:
        self._replacements[self.index_at(at)] = _Replacement(serial, initial, scenario)

    def reverse_from(self, at: datetime, scenario: str) -> None:
        self._reversed_from = (self.index_at(at), scenario)

    def rollover_at(self, at: datetime, scenario: str) -> None:
        self._rollover_at = (self.index_at(at), scenario)

    # --- valve --------------------------------------------------------------------------------
    def add_battery_sag(self, since: datetime, per_hour: float, floor: float, scenario: str) -> None:
        """The cell's voltage falls ``per_hour`` from ``since`` down to ``floor`` (an exhausted cell)."""
        if self.battery_v is None:
            raise ValueError(f"meter {self.code} reports no battery voltage")
        self._sags.append(_Sag(since, per_hour, floor, scenario))

    def battery_at(self, ts: datetime) -> tuple[float, str | None]:
        """The reported voltage at ``ts`` (deterministic: no draw, so other readings never shift)."""
        assert self.battery_v is not None
        volts, scenario = self.battery_v, None
        for sag in self._sags:
            if ts >= sag.since:
                hours = (ts - sag.since).total_seconds() / 3600
                volts = max(sag.floor, volts - sag.per_hour * hours)
                scenario = sag.scenario
        return round(volts, 2), scenario

    def set_valve(self, at: datetime, is_open: bool) -> datetime:
        """Open or close the valve from ``at`` (simulated time); returns when it took effect.

        What the meter has already reported cannot change, so ``at`` is moved forward to the last
        reading's boundary (and to the last valve operation) if it lies before them. Setting the
        state the valve is already in changes nothing.
        """
        if not self.has_valve:
            raise ValueError(f"meter {self.code} has no valve")
        floor = boundary_time(self._k - 1, self.interval_s)  # the last reading taken (or the one before start)
        if self._valve:
            floor = max(floor, self._valve[-1].at)
        at = max(at, floor)
        if self.valve_open_at(at) == is_open:
            return at
        self._valve.append(_ValveChange(at, is_open))
        # Forget the use of intervals not read yet: they now flow only while the valve is open.
        self._cache = {k: u for k, u in self._cache.items() if boundary_time(k, self.interval_s) <= at}
        return at

    def valve_open_at(self, t: datetime) -> bool:
        for change in reversed(self._valve):
            if change.at <= t:
                return change.open
        return True

    def open_fraction(self, k: int) -> Decimal:
        """The share of the interval ending at boundary k during which the valve was open (0 … 1)."""
        if not self._valve:
            return Decimal(1)
        lo, hi = boundary_time(k - 1, self.interval_s), boundary_time(k, self.interval_s)
        state, cursor, open_time = True, lo, timedelta(0)
        for change in self._valve:
            if change.at >= hi:
                break
            if change.at > cursor:
                if state:
                    open_time += change.at - cursor
                cursor = change.at
            state = change.open
        if state:
            open_time += hi - cursor
        if open_time >= hi - lo:
            return Decimal(1)
        return Decimal(open_time // timedelta(microseconds=1)) / Decimal((hi - lo) // timedelta(microseconds=1))

    # --- model ----------------------------------------------------------------------------------
    def physical(self, k: int) -> Use:
        """What physically flowed in the interval ending at boundary k (cached; pure in k and the valve)."""
        hit = self._cache.get(k)
        if hit is None:
            hit = self.usage.use(k)
            t = boundary_time(k, self.interval_s)
            leak = sum((lk.per_interval for lk in self._leaks if t > lk.since), ZERO)
            if leak:
                hit = Use(hit.forward + leak, hit.reverse)
            if self._valve and (share := self.open_fraction(k)) < 1:
                hit = Use(_floor_micro(hit.forward * share), _floor_micro(hit.reverse * share))
            self._cache[k] = hit
        return hit

    @property
    def next_due(self) -> datetime:
        return boundary_time(self._k, self.interval_s)

    def produce(self) -> list[Emission]:
        k = self._k
        self._k += 1
        for old in [c for c in self._cache if c < k - 8]:
            del self._cache[old]  # masters ask for recent intervals only
        if k == self.first_k and self._rollover_at is not None:
            self._prepare_rollover(*self._rollover_at)
        tags: list[str] = []  # the names of the scenarios that shaped this reading
        scenario: str | None = None
        meta: tuple[tuple[str, str], ...] = ()
        replaced = False
        if (rep := self._replacements.get(k)) is not None:
            # The old meter's last reading was the previous one; the new one starts near zero.
            self._offset = rep.initial - self._booked
            self._rev_offset = -self._booked_rev
            meta = (("serial", rep.serial), ("old_serial", self.serial), ("initial", register_text(rep.initial)))
            self.serial = rep.serial
            replaced = True
            tags.append(rep.scenario)
            scenario = rep.scenario
        before = self._shown()
        booked_rev_before = self._booked_rev
        if k > self.first_k:
            use = self.physical(k)
            if self._reversed_from is not None and k >= self._reversed_from[0]:
                # Reversed CT/wiring: everything consumed is booked on the reverse register.
                self._booked_rev += use.forward + use.reverse
                scenario = self._reversed_from[1]
                tags.append(scenario)
            else:
                self._booked += use.forward
                self._booked_rev += use.reverse
            if (jump := self._jumps.get(k)) is not None:
                self._offset += jump.amount
                tags.append(jump.scenario)
                scenario = jump.scenario
            # A leak behind a closed valve does not flow: the reading no longer shows it.
            flowing = not self._valve or self.open_fraction(k) > 0
            for lk in self._leaks:
                if flowing and boundary_time(k, self.interval_s) > lk.since:
                    tags.append(lk.scenario)
                    scenario = lk.scenario
        reading, reverse = self._shown()
        if reading < before[0] and not replaced:
            tags.append("rollover")  # the register passed register_max and wrapped
            if self._rollover_at is not None:
                scenario = self._rollover_at[1]
        body: dict[str, object] = {"register": register_text(reading), "unit": self.unit}
        flags: list[str] = []
        if self.bidirectional:
            body["reverse_register"] = register_text(reverse)
            # The meter flags the power direction it saw, even when the register has not ticked over.
            if self._booked_rev > booked_rev_before:
                flags.append("reverse_power")
        ts = boundary_time(k, self.interval_s)
        if self.has_valve:
            if self.valve_open_at(ts):
                body["valve"] = "open"
            else:
                body["valve"] = "closed"
                tags.append("valve_closed")
        if flags:
            body["flags"] = flags
        # NB-IoT/LoRa modules upload a little after the freeze, spread so the broker is not hit at :00.
        delay = float(derive(self.seed, self.code, k, "upload") % 90 + 2)
        out: list[Emission] = [Reading(ts, Channel.meter, body, delay, scenario, tuple(dict.fromkeys(tags)), meta)]
        if self.battery_v is not None and int((ts - EPOCH).total_seconds()) % self.battery_report_s == 0:
            volts, sag = self.battery_at(ts)
            out.append(
                Reading(ts, Channel.status, {"online": True, "battery_v": volts}, delay, sag, (sag,) if sag else ())
            )
        return out

    def registers_until(self, t: datetime) -> RegisterStart:
        """Read on to the last boundary at or before ``t`` (publishing nothing) and return the registers.

        A fleet that starts at ``t`` with these registers continues where this one left off: its first
        reading repeats or follows this one's last, never below it (no false reset/replacement)."""
        while self.next_due <= t:
            self.produce()
        reading, reverse = self._shown()
        return RegisterStart(reading, reverse if self.bidirectional else None)

    def _shown(self) -> tuple[Decimal, Decimal]:
        reading = truncate((self._offset + self._booked) % self.modulus, self.resolution)
        reverse = truncate((self._rev_offset + self._booked_rev) % self.modulus, self.resolution)
        return reading, reverse

    def _prepare_rollover(self, k_wrap: int, scenario: str) -> None:
        # Start close enough to register_max that the wrap lands exactly on reading k_wrap: the
        # register before it sits half an interval's use below the modulus, after it half above.
        before = sum((self.physical(j).forward for j in range(self.first_k + 1, k_wrap)), ZERO)
        last = self.physical(k_wrap).forward
        # With no use in that interval the wrap waits for the next reading that has some.
        half = last / 2 if last > 0 else self.resolution / 2
        self._offset = self.modulus - before - half


def _floor_micro(value: Decimal) -> Decimal:
    return value.quantize(MICRO, rounding=ROUND_FLOOR)


def default_serial(code: str, kind: str) -> str:
    """A stable made-up serial (independent of the seed: it belongs to the estate, not the run)."""
    prefix = {"electricity_meter": "DDZY", "cold_water_meter": "LXS", "hot_water_meter": "LXR"}.get(kind, "DEV")
    return f"{prefix}{derive(0, 'serial', code) % 10**10:010d}"


def initial_register(seed: int, code: str, kind: str, occupancy: str, register_max: Decimal, res: Decimal) -> Decimal:
    """Where the register stands when the simulation starts: years of use, or almost none if vacant."""
    r = rng(seed, code, "initial")
    ranges = {
        "electricity_meter": (2000.0, 25000.0),
        "cold_water_meter": (80.0, 900.0),
        "hot_water_meter": (20.0, 300.0),
    }
    low, high = ranges.get(kind, (100.0, 1000.0))
    if occupancy == "vacant":
        low, high = 0.0, low / 100  # only the builders' and inspectors' use
    elif occupancy == "master":
        low, high = low * 60, high * 60
    value = Decimal(f"{r.uniform(low, high):.6f}")
    return truncate(min(value, register_max), res)
