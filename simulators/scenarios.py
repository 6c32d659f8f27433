"""Named fault scenarios, each aimed at one deterministic device.

Select them by name (``SCENARIOS``), optionally with a device and an onset offset:
``"rollover"``, ``"rollover:E-2-1-1201"``, ``"late@2h"``, ``"spike:HW-1-1-101@900"``.
Default targets are chosen from the estate alone (not from the seed, not from which other scenarios
are on), so a scenario hits the same device in every run of the same estate file; ``Fleet.plans``
lists them for test oracles. Every frame a scenario shapes carries ``Frame.scenario`` and tags.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import ClassVar

from protocol.estate_file import DeviceSpec
from protocol.topics import Channel
from simulators.clock import parse_duration
from simulators.frames import Emission, Expect, Frame, RawEmission, Reading, TsEncoder, dumps
from simulators.meters import MeterModel, SteadyFlow, default_serial, truncate
from simulators.rand import derive, rng
from simulators.sensors import Force, Ramp, SensorModel
from simulators.streams import DeviceEntry, DeviceModel, DeviceStream, with_scenario

DEFAULT_ONSET = timedelta(minutes=30)  # after a couple of normal meter readings


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A scenario request: name, optional target device, optional onset (offset from the fleet start)."""

    name: str
    device: str | None = None
    at: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    """What a scenario will do, to whom and from when (for oracles and progress output)."""

    name: str
    device: str
    onset: datetime
    summary: str


@dataclass
class FleetView:
    """The parts of a fleet a scenario may touch."""

    estate: str
    seed: int
    start: datetime
    tz: tzinfo
    encoder: TsEncoder
    entries: dict[str, DeviceEntry]
    add_stream: Callable[[DeviceModel], DeviceStream]

    def meter(self, code: str) -> MeterModel:
        model = self.entries[code].model
        assert isinstance(model, MeterModel), code
        return model

    def sensor(self, code: str) -> SensorModel:
        model = self.entries[code].model
        assert isinstance(model, SensorModel), code
        return model

    def stream(self, code: str) -> DeviceStream:
        stream = self.entries[code].stream
        assert stream is not None, code
        return stream


_SPEC_RE = re.compile(r"^(?P<name>[a-z_]+)(?::(?P<device>[A-Za-z0-9_.:-]+?))?(?:@(?P<at>[0-9.]+[smhd]?))?$")


def parse_scenario(text: str) -> ScenarioSpec:
    """``name[:DEVICE][@OFFSET]`` → ScenarioSpec; OFFSET is seconds or 90s / 15m / 2h / 1d."""
    m = _SPEC_RE.match(text.strip())
    if m is None or m["name"] not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown scenario {text!r}; expected NAME[:DEVICE][@OFFSET] with NAME one of: {known}")
    at = parse_duration(m["at"]) if m["at"] else None
    return ScenarioSpec(m["name"], m["device"], at)


# --- candidate filters ---------------------------------------------------------------------------


def unit_meters(view: FleetView, kind: str, occupancy: str = "occupied", *, pv: bool | None = None) -> list[str]:
    return sorted(
        e.code
        for e in view.entries.values()
        if e.kind == kind
        and isinstance(e.model, MeterModel)
        and e.household is not None
        and e.household.occupancy == occupancy
        and (pv is None or e.household.has_pv == pv)
    )


def sensors(view: FleetView, metric_prefix: str = "") -> list[str]:
    return sorted(
        e.code
        for e in view.entries.values()
        if isinstance(e.model, SensorModel) and any(p.spec.metric.startswith(metric_prefix) for p in e.model.points)
    )


# --- scenarios -----------------------------------------------------------------------------------


class Scenario(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]

    @abstractmethod
    def candidates(self, view: FleetView) -> list[str]:
        """Devices this scenario can target (sorted)."""

    @abstractmethod
    def install(self, view: FleetView, device: str, onset: datetime) -> None: ...


class Spike(Scenario):
    name = "spike"
    summary = "one meter reading jumps far above any plausible interval use (then continues from there)"
    # Far above a flat's 95th-percentile interval use and above what a DN20 pipe / 60 A breaker can pass.
    AMOUNT: ClassVar[dict[str, Decimal]] = {
        "hot_water_meter": Decimal("2.5"),
        "cold_water_meter": Decimal("4.0"),
        "electricity_meter": Decimal(150),
    }

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "hot_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        meter = view.meter(device)
        meter.add_jump(onset, self.AMOUNT.get(meter.kind, Decimal(100)), self.name)


class StaleSensor(Scenario):
    name = "stale_sensor"
    summary = "an equipment sensor stops reporting at the onset and never comes back"

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view)

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).silence(onset)


class Rollover(Scenario):
    name = "rollover"
    summary = "the register starts just below register_max and wraps to ~0 at the first reading after the onset"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "electricity_meter", pv=False)

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.meter(device).rollover_at(onset, self.name)


class MeterReplacement(Scenario):
    name = "meter_replacement"
    summary = "the meter is swapped: the register restarts near 0 (new serial in Frame.meta)"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "cold_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        meter = view.meter(device)
        # A new meter arrives with a little factory test water/energy on it.
        initial = truncate(
            Decimal(rng(view.seed, device, "replacement").randint(0, 9)) * meter.resolution, meter.resolution
        )
        meter.replace(onset, default_serial(device + "/2", meter.kind), initial, self.name)


class ReverseFlow(Scenario):
    name = "reverse_flow"
    summary = "a non-PV flat's electricity is booked on reverse_register with the reverse_power flag (wiring/tamper)"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "electricity_meter", pv=False)

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.meter(device).reverse_from(onset, self.name)


class VacantFlow(Scenario):
    name = "vacant_flow"
    summary = "water runs in a vacant flat (60 L/h) from the onset: every later reading rises"
    LITRES_PER_HOUR = Decimal(60)

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "cold_water_meter", "vacant")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.meter(device).add_leak(onset, self.LITRES_PER_HOUR / 1000, self.name)


class HotTap(Scenario):
    name = "hot_tap"
    summary = "a hot tap left running in an occupied flat (60 L/h) from the onset: its prepaid hot-water balance drains"
    LITRES_PER_HOUR = Decimal(60)

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "hot_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.meter(device).add_leak(onset, self.LITRES_PER_HOUR / 1000, self.name)


class Malformed(Scenario):
    name = "malformed"
    summary = "a burst of broken payloads on the device's topics (bad JSON, wrong types, NaN, non-UTF-8, …)"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "electricity_meter", pv=False)

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.add_stream(_Burst(device, malformed_payloads(view.encoder(onset)), onset, self.name))


def malformed_payloads(ts: str | int) -> list[tuple[str, str, bytes]]:
    """(tag, channel, payload) triples that must all be dead-lettered by ingest."""
    t = dumps(ts).decode()
    good = f'"v":1,"ts":{t},"seq":1'
    deep = b"[" * 5000 + b"]" * 5000
    meter = Channel.meter.value
    return [
        ("truncated_json", meter, f'{{{good},"register":"12'.encode()),
        ("not_json", meter, b"register=1234.5;unit=kWh"),
        ("empty", meter, b""),
        ("non_utf8", meter, f'{{{good},"register":"'.encode() + b"\xff\xfe\xfd" + b'","unit":"kWh"}'),
        ("register_number", meter, f'{{{good},"register":1234.5,"unit":"kWh"}}'.encode()),
        ("register_nan", meter, f'{{{good},"register":"NaN","unit":"kWh"}}'.encode()),
        ("nan_token", meter, f'{{{good},"register":NaN,"unit":"kWh"}}'.encode()),
        ("negative_register", meter, f'{{{good},"register":"-5.00","unit":"kWh"}}'.encode()),
        ("wrong_unit", meter, f'{{{good},"register":"1234.50","unit":"kwh"}}'.encode()),
        ("missing_register", meter, f'{{{good},"unit":"kWh"}}'.encode()),
        ("bad_version", meter, f'{{"v":2,"ts":{t},"register":"1234.50","unit":"kWh"}}'.encode()),
        ("bool_ts", meter, b'{"v":1,"ts":true,"register":"1234.50","unit":"kWh"}'),
        ("seq_overflow", meter, f'{{"v":1,"ts":{t},"seq":{2**64},"register":"1234.50","unit":"kWh"}}'.encode()),
        ("unknown_field", meter, f'{{{good},"register":"1234.50","unit":"kWh","tamper":1}}'.encode()),
        ("deep_nesting", meter, f'{{{good},"register":'.encode() + deep + b',"unit":"kWh"}'),
        ("array_root", meter, b"[1,2,3]"),
        ("telemetry_on_meter", meter, f'{{{good},"values":{{"register_kwh":1234.5}}}}'.encode()),
        ("unknown_channel", "energy", f'{{{good},"register":"1234.50","unit":"kWh"}}'.encode()),
    ]


class _Burst:
    """A model that sends fixed raw payloads one second apart from ``onset``."""

    def __init__(self, device: str, payloads: list[tuple[str, str, bytes]], onset: datetime, scenario: str) -> None:
        self.code = device
        self._items = [
            RawEmission(onset + timedelta(seconds=i), channel, payload, "dead_letter", scenario, (scenario, tag))
            for i, (tag, channel, payload) in enumerate(payloads)
        ]

    @property
    def next_due(self) -> datetime | None:
        return self._items[0].at if self._items else None

    def produce(self) -> list[Emission]:
        return [self._items.pop(0)]


class Duplicates(Scenario):
    name = "duplicates"
    summary = "the first 3 readings after the onset are re-sent 2–5 times each (identical bytes)"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "hot_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.stream(device).delivery_faults.append(_Duplicate(onset, 3, view.seed, device, self.name))


class _Duplicate:
    def __init__(self, onset: datetime, count: int, seed: int, device: str, scenario: str) -> None:
        self.onset, self.left, self.seed, self.device, self.scenario = onset, count, seed, device, scenario

    def apply(self, frame: Frame) -> list[Frame]:
        if self.left <= 0 or frame.at < self.onset:
            return [frame]
        self.left -= 1
        resends = 2 + derive(self.seed, self.device, "dup", self.left) % 4
        first = with_scenario(frame, self.scenario, "original")
        copy_expect = "duplicate" if frame.expect == "store" else frame.expect
        # QoS 1 redelivery after a lost PUBACK: same bytes, a few seconds later.
        copies = [
            with_scenario(frame, self.scenario, "resend", at=frame.at + timedelta(seconds=2 * i), expect=copy_expect)
            for i in range(1, resends + 1)
        ]
        return [first, *copies]


class OutOfOrder(Scenario):
    name = "out_of_order"
    summary = "3 pairs of consecutive readings after the onset are sent swapped (older one second)"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "cold_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.stream(device).delivery_faults.append(_Swap(onset, 3, self.name))


class _Swap:
    def __init__(self, onset: datetime, pairs: int, scenario: str) -> None:
        self.onset, self.left, self.scenario = onset, pairs, scenario
        self.held: Frame | None = None

    def apply(self, frame: Frame) -> list[Frame]:
        if self.held is not None:
            held, self.held = self.held, None
            return [
                with_scenario(frame, self.scenario, "overtaking"),
                with_scenario(held, self.scenario, "overtaken", at=frame.at),
            ]
        if self.left > 0 and frame.at >= self.onset:
            self.left -= 1
            self.held = frame
            return []
        return [frame]


class Late(Scenario):
    name = "late"
    summary = "the first reading after the onset arrives 2 hours late (store-and-forward after an outage)"
    LAG = timedelta(hours=2)

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "electricity_meter", pv=False)

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.stream(device).delivery_faults.append(_Delay(onset, self.LAG, self.name))


class _Delay:
    def __init__(self, onset: datetime, lag: timedelta, scenario: str) -> None:
        self.onset, self.lag, self.scenario, self.done = onset, lag, scenario, False

    def apply(self, frame: Frame) -> list[Frame]:
        if self.done or frame.at < self.onset:
            return [frame]
        self.done = True
        return [with_scenario(frame, self.scenario, "late", at=frame.at + self.lag)]


class BadTime(Scenario):
    name = "bad_time"
    summary = "3 readings after the onset carry a far-future, a far-past (RTC reset) and a zone-less timestamp"

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view)

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.stream(device).reading_faults.append(_BadClock(onset, view.encoder, self.name))


class _BadClock:
    def __init__(self, onset: datetime, encoder: TsEncoder, scenario: str) -> None:
        self.onset, self.encoder, self.scenario = onset, encoder, scenario
        self.variants = ["far_future", "far_past", "no_timezone"]

    def apply(self, reading: Reading) -> Reading:
        if not self.variants or reading.ts < self.onset:
            return reading
        variant = self.variants.pop(0)
        wire: str | int
        if variant == "far_future":
            wire = self.encoder(reading.ts + timedelta(days=400))
        elif variant == "far_past":
            # An RTC that lost power restarts at its firmware epoch.
            wire = self.encoder(datetime(2000, 1, 1, tzinfo=self.encoder.tz))
        else:
            wire = self.encoder.naive(reading.ts)
        return Reading(
            reading.ts,
            reading.channel,
            reading.body,
            reading.upload_delay_s,
            self.scenario,
            (*reading.tags, self.scenario, variant),
            reading.meta,
            wire,
            "quarantine",
        )


class UnknownDevice(Scenario):
    name = "unknown_device"
    summary = "a meter that is not in the estate file reports every 15 minutes from the onset"
    CODE = "CW-9-1-101"

    def candidates(self, view: FleetView) -> list[str]:
        code = self.CODE
        while code in view.entries:
            code += "X"
        return [code]

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        if device in view.entries:
            raise ValueError(f"unknown_device needs a code that is not in the estate file, got {device}")
        spec = DeviceSpec(
            code=device,
            kind="cold_water_meter",
            expected_interval_s=900,
            register_max=Decimal("99999.999"),
            resolution=Decimal("0.001"),
            has_valve=True,
        )
        usage = SteadyFlow(device, view.seed, 900, view.tz, 0.02)
        model = MeterModel(spec, usage, seed=view.seed, start=onset, initial=Decimal("12.345"))
        view.add_stream(model).reading_faults.append(_Label(self.name, "quarantine"))


class _Label:
    def __init__(self, scenario: str, expect: Expect) -> None:
        self.scenario, self.expect = scenario, expect

    def apply(self, reading: Reading) -> Reading:
        return Reading(
            reading.ts,
            reading.channel,
            reading.body,
            reading.upload_delay_s,
            self.scenario,
            (*reading.tags, self.scenario),
            reading.meta,
            reading.wire_ts,
            self.expect,
        )


class TransformerOverheat(Scenario):
    name = "transformer_overheat"
    summary = "a dry-type transformer's windings climb 1.5 °C/min from the onset (up to +100 K): past 130, 155, 170 °C"

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "winding_temp")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).add_ramp(Ramp("winding_temp", onset, 1.5, 100.0, self.name))


class TransformerOverheatFast(TransformerOverheat):
    """The same fault compressed for the demo: a viewer sees warning, alarm and ticket within two minutes."""

    name = "transformer_overheat_fast"
    summary = "demo: a dry-type transformer's windings climb 60 °C/min from the onset (up to +100 K)"

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).add_ramp(Ramp("winding_temp", onset, 60.0, 100.0, self.name))


class StuckMeter(Scenario):
    name = "stuck_meter"
    summary = "an occupied flat's water meter register stops changing from the onset (water still flows)"

    def candidates(self, view: FleetView) -> list[str]:
        return unit_meters(view, "cold_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.stream(device).reading_faults.append(_Freeze(onset, self.name))


class _Freeze:
    """Every reading from the onset shows the register of the last reading before it (a jammed counter)."""

    def __init__(self, onset: datetime, scenario: str) -> None:
        self.onset, self.scenario = onset, scenario
        self.register: object = None

    def apply(self, reading: Reading) -> Reading:
        if reading.channel is not Channel.meter or "register" not in reading.body:
            return reading
        if reading.ts < self.onset or self.register is None:
            self.register = reading.body["register"]
            if reading.ts < self.onset:
                return reading
        return Reading(
            reading.ts,
            reading.channel,
            {**reading.body, "register": self.register},
            reading.upload_delay_s,
            self.scenario,
            (*reading.tags, self.scenario),
            reading.meta,
            reading.wire_ts,
            reading.expect,
        )


def master_meters(view: FleetView, kind: str) -> list[str]:
    return sorted(
        e.code
        for e in view.entries.values()
        if isinstance(e.model, MeterModel) and e.household is None and e.flat.spec.attrs.get("master_of") == kind
    )


class PipeLeak(Scenario):
    name = "pipe_leak"
    summary = "a building's supply pipe leaks upstream of the flats (500 L/h): only the master meter sees it"
    LITRES_PER_HOUR = Decimal(500)

    def candidates(self, view: FleetView) -> list[str]:
        return master_meters(view, "cold_water_meter")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.meter(device).add_leak(onset, self.LITRES_PER_HOUR / 1000, self.name)


# --- multi-point faults (domain-defaults §2; alarms/multipoint_pack.py) ----------------------------


class PhaseImbalance(Scenario):
    name = "phase_imbalance"
    summary = "an LV incomer's phase C current climbs 20 A/min from the onset (up to +400 A): imbalance past 25 %"

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "current_c")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).add_ramp(Ramp("current_c", onset, 20.0, 400.0, self.name))


class DyingDeltaT(Scenario):
    name = "dying_dt"
    summary = "a heat exchanger's secondary return climbs 0.5 K/min (up to +6 K): ΔT falls to ~2 K and stays"

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "secondary_return_temp")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).add_ramp(Ramp("secondary_return_temp", onset, 0.5, 6.0, self.name))


class FireMainLeak(Scenario):
    name = "fire_main_leak"
    summary = "the fire main leaks: the jockey pump runs 1 min in every 6 (10 starts an hour) from the onset"
    PERIOD_S, ON_S = 360.0, 60.0

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "jockey_pump_running")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).force(Force("jockey_pump_running", onset, True, self.name, self.PERIOD_S, self.ON_S))


def _state_metrics(model: SensorModel, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return [p.spec.metric for p in model.points if p.spec.kind == "state" and rx.fullmatch(p.spec.metric)]


class StandbyStuck(Scenario):
    name = "standby_stuck"
    summary = "a pump set's duty pump trips (fault on, stops) at the onset and no standby pump starts"
    RUNNING = r"(circ_)?pump_\d+_running"
    FAULT = r"fault|(circ_)?pump(_\d+)?_fault"

    def candidates(self, view: FleetView) -> list[str]:
        # Booster sets and circulation pump sets: a fault signal and at least a duty and a standby pump.
        return [
            code
            for code in sensors(view)
            if len(_state_metrics(view.sensor(code), self.RUNNING)) >= 2
            and _state_metrics(view.sensor(code), self.FAULT)
        ]

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        model = view.sensor(device)
        for metric in _state_metrics(model, self.RUNNING):
            model.force(Force(metric, onset, False, self.name))
        for metric in _state_metrics(model, self.FAULT):
            model.force(Force(metric, onset, True, self.name))


class SumpFlood(Scenario):
    name = "sump_flood"
    summary = "water floods a sump pit: both drainage pumps run from the onset and never stop"

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "sump_pump_")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        model = view.sensor(device)
        for metric in _state_metrics(model, r"sump_pump_\d+_running"):
            model.force(Force(metric, onset, True, self.name))


# --- heat-station supply and meter health (issue 14 parts 3 and 4) ---------------------------------


class ColdDay(Scenario):
    name = "cold_day"
    summary = (
        "a cold front: the outdoor thermometer falls 0.5 K/min by 15 K from the onset and every heat exchanger's "
        "controller follows its weather-compensation curve (secondary supply +5 K): the setpoint rises, "
        "nothing is wrong"
    )
    DROP_K, SUPPLY_K = -15.0, 5.0

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "outdoor_temp")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).add_ramp(Ramp("outdoor_temp", onset, -0.5, self.DROP_K, self.name))
        # The controllers raise the supply as their curves do (about 1/3 K per K outdoors at the cold end).
        for code in sensors(view, "secondary_supply_temp"):
            view.sensor(code).add_ramp(Ramp("secondary_supply_temp", onset, 0.2, self.SUPPLY_K, self.name))


class SupplyOvershoot(Scenario):
    name = "supply_overshoot"
    summary = (
        "a heat exchanger's secondary supply climbs 0.5 K/min by 18 K from the onset (a control valve stuck "
        "open): past the curve setpoint + 5 K, and past a floor-heating station's 60 °C cap"
    )

    def candidates(self, view: FleetView) -> list[str]:
        return sensors(view, "secondary_supply_temp")

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.sensor(device).add_ramp(Ramp("secondary_supply_temp", onset, 0.5, 18.0, self.name))


class DyingBattery(Scenario):
    name = "dying_battery"
    summary = "a battery-powered meter's cell sags 0.2 V/h from the onset down to 3.0 V (exhausted)"
    PER_HOUR, FLOOR = 0.2, 3.0

    def candidates(self, view: FleetView) -> list[str]:
        return sorted(
            e.code
            for e in view.entries.values()
            if isinstance(e.model, MeterModel) and e.model.battery_v is not None and e.household is not None
        )

    def install(self, view: FleetView, device: str, onset: datetime) -> None:
        view.meter(device).add_battery_sag(onset, self.PER_HOUR, self.FLOOR, self.name)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Spike(),
        StaleSensor(),
        Rollover(),
        MeterReplacement(),
        ReverseFlow(),
        VacantFlow(),
        Malformed(),
        Duplicates(),
        OutOfOrder(),
        Late(),
        BadTime(),
        UnknownDevice(),
        TransformerOverheat(),
        TransformerOverheatFast(),
        StuckMeter(),
        PipeLeak(),
        HotTap(),
        PhaseImbalance(),
        DyingDeltaT(),
        FireMainLeak(),
        StandbyStuck(),
        SumpFlood(),
        ColdDay(),
        SupplyOvershoot(),
        DyingBattery(),
    )
}


def default_targets(view: FleetView) -> dict[str, str]:
    """Every scenario's default device, picked in registry order so no two share a device."""
    taken: set[str] = set()
    targets: dict[str, str] = {}
    for name, scenario in SCENARIOS.items():
        free = [c for c in scenario.candidates(view) if c not in taken]
        if not free:
            continue
        choice = free[derive(0, "target", name) % len(free)]
        taken.add(choice)
        targets[name] = choice
    return targets


def install(view: FleetView, specs: list[ScenarioSpec]) -> list[ScenarioPlan]:
    """Install the requested scenarios into the fleet's models and streams; return their plans."""
    defaults = default_targets(view) if specs else {}
    plans: list[ScenarioPlan] = []
    for spec in specs:
        scenario = SCENARIOS[spec.name]
        device = spec.device or defaults.get(spec.name)
        if device is None:
            raise ValueError(f"scenario {spec.name}: no suitable device in this estate")
        if spec.device is not None and spec.device not in scenario.candidates(view) and spec.name != "unknown_device":
            raise ValueError(f"scenario {spec.name} cannot target {spec.device} (wrong kind or occupancy)")
        onset = view.start + (spec.at if spec.at is not None else DEFAULT_ONSET)
        scenario.install(view, device, onset)
        plans.append(ScenarioPlan(spec.name, device, onset, scenario.summary))
    return plans
