"""The device fleet of one estate, built from its estate file and driven by simulated time.

    fleet = Fleet.from_file("examples/estate.yaml", seed=7, start=datetime(2026, 11, 26, tzinfo=UTC),
                            scenarios=["rollover", "late@1h"])
    for frame in fleet.frames(timedelta(hours=6)):
        ...  # frame.topic, frame.payload, frame.expect

No broker, no wall clock: the same (estate file, seed, start, scenarios) gives the same frames, byte
for byte, whatever the tick step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from protocol.estate_file import METER_UNIT, EstateFile, FlatDevice, FlatUnit, expand, load_estate_file
from simulators import profiles
from simulators.clock import require_aware, ticks
from simulators.doors import Card, DoorController, Whitelist, cards_for_units
from simulators.frames import Frame, TsEncoder, TsFormat
from simulators.meters import (
    ElectricityUse,
    Household,
    MasterUse,
    MeterModel,
    NoUse,
    RegisterStart,
    SteadyFlow,
    UsageModel,
    WaterUse,
    initial_register,
)
from simulators.rand import rng
from simulators.scenarios import FleetView, ScenarioPlan, ScenarioSpec, install, parse_scenario
from simulators.sensors import SensorModel
from simulators.streams import DeviceEntry, DeviceModel, DeviceStream, Released

DEFAULT_STEP = timedelta(seconds=60)
_DOOR_RE = re.compile(r"^(?P<building>[^-]+)-(?P<entrance>[^-]+)-")


class Fleet:
    """Every simulated device of one estate."""

    def __init__(
        self,
        doc: EstateFile,
        *,
        seed: int = 0,
        start: datetime,
        scenarios: Iterable[str | ScenarioSpec] = (),
        ts_format: TsFormat = "iso",
        registers: Mapping[str, RegisterStart] | None = None,
        initial_cards: bool = True,
        whitelists: MutableMapping[str, Whitelist] | None = None,
    ) -> None:
        # Door controllers' lists: ``whitelists`` (controller code → list) is what a controller keeps across
        # a kill and restart; a controller missing from it starts from the made-up resident list
        # (``initial_cards``, what the demo and older tests rely on) or empty at version 0 (the platform
        # issues every card), and is added to it.
        self.initial_cards = initial_cards
        self.whitelists: MutableMapping[str, Whitelist] = whitelists if whitelists is not None else {}
        self.doc = doc
        # Meters resumed where an earlier run (or the database) left them; the rest start from the seed.
        self.resume = dict(registers or {})
        self.estate = doc.estate.code
        self.seed = seed
        self.start = require_aware(start, "start").replace(microsecond=0)
        self.tz = ZoneInfo(doc.estate.timezone)
        self.encoder = TsEncoder(self.tz, ts_format)
        self.expanded = expand(doc)
        self.units: dict[str, FlatUnit] = {u.spec.code: u for u in self.expanded.units}
        self.entries: dict[str, DeviceEntry] = {}
        self._streams: list[DeviceStream] = []
        self._now = self.start
        for flat in self.expanded.devices:
            self.entries[flat.spec.code] = self._entry(flat)
        self._wire_masters()
        for entry in self.entries.values():
            if entry.model is not None:
                entry.stream = self._add_stream(entry.model)
        view = FleetView(self.estate, seed, self.start, self.tz, self.encoder, self.entries, self._add_stream)
        specs = [parse_scenario(s) if isinstance(s, str) else s for s in scenarios]
        self.plans: tuple[ScenarioPlan, ...] = tuple(install(view, specs))

    @classmethod
    def from_file(
        cls,
        path: Path | str,
        *,
        seed: int = 0,
        start: datetime,
        scenarios: Iterable[str | ScenarioSpec] = (),
        ts_format: TsFormat = "iso",
        registers: Mapping[str, RegisterStart] | None = None,
        initial_cards: bool = True,
        whitelists: MutableMapping[str, Whitelist] | None = None,
    ) -> Fleet:
        return cls(
            load_estate_file(path),
            seed=seed,
            start=start,
            scenarios=scenarios,
            ts_format=ts_format,
            registers=registers,
            initial_cards=initial_cards,
            whitelists=whitelists,
        )

    # --- driving ------------------------------------------------------------------------------
    def tick(self, now: datetime) -> list[Frame]:
        """Advance to ``now``; return every frame whose send time is in (previous tick, now], in order."""
        require_aware(now, "now")
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        released: list[Released] = []
        for stream in self._streams:
            released.extend(stream.advance(now))
        released.sort()
        return [r.frame for r in released]

    def frames(self, duration: timedelta, step: timedelta = DEFAULT_STEP) -> Iterator[Frame]:
        """Every frame up to ``start + duration``, ticking by ``step`` (continues from the last tick)."""
        for t in ticks(self._now, self.start + duration, step):
            yield from self.tick(t)

    @property
    def now(self) -> datetime:
        return self._now

    def meter_registers_at(self, t: datetime) -> dict[str, RegisterStart]:
        """Every meter's registers at its last reading at or before ``t``, without publishing anything.

        Use a fleet of its own for this (its meters are read on): the demo builds the history replay's
        fleet twice, once to publish and once to tell the live fleet where the registers will stand."""
        require_aware(t, "t")
        return {e.code: e.model.registers_until(t) for e in self.entries.values() if isinstance(e.model, MeterModel)}

    # --- introspection --------------------------------------------------------------------------
    def cards(self) -> Mapping[str, list[Card]]:
        """Door controller code → the resident cards it accepts (issue these on the platform for a demo)."""
        return {e.code: e.model.cards for e in self.entries.values() if isinstance(e.model, DoorController)}

    def door(self, code: str) -> DoorController:
        """The door controller ``code`` (KeyError when there is none)."""
        model = self.entries[code].model
        if not isinstance(model, DoorController):
            raise KeyError(f"{code} is not a door controller")
        return model

    def plan(self, name: str) -> ScenarioPlan:
        for p in self.plans:
            if p.name == name:
                return p
        raise KeyError(name)

    # --- building -------------------------------------------------------------------------------
    def _add_stream(self, model: DeviceModel) -> DeviceStream:
        stream = DeviceStream(model, estate=self.estate, encoder=self.encoder, index=len(self._streams))
        self._streams.append(stream)
        return stream

    def _entry(self, flat: FlatDevice) -> DeviceEntry:
        spec = flat.spec
        entry = DeviceEntry(flat)
        if spec.kind in METER_UNIT and spec.register_max is not None and spec.resolution is not None:
            household = self._household(flat.unit) if flat.unit else None
            entry.household = household
            occupancy = household.occupancy if household else "master" if "master_of" in spec.attrs else "plant"
            usage = self._usage(flat, household)
            resumed = self.resume.get(spec.code)
            if resumed is not None:
                initial, initial_reverse = resumed.register, resumed.reverse or Decimal(0)
            else:
                initial = initial_register(
                    self.seed, spec.code, spec.kind, occupancy, spec.register_max, spec.resolution
                )
                initial_reverse = Decimal(0)
            entry.model = MeterModel(
                spec, usage, seed=self.seed, start=self.start, initial=initial, initial_reverse=initial_reverse
            )
        elif spec.kind == "door_controller":
            kept = self.whitelists.get(spec.code)
            if kept is None and not self.initial_cards:
                kept = Whitelist()
            controller = DoorController(
                spec,
                cards_for_units(self.estate, self._served_units(flat)),
                seed=self.seed,
                start=self.start,
                tz=self.tz,
                estate=self.estate,
                whitelist=kept,
            )
            self.whitelists[spec.code] = controller.whitelist
            entry.model = controller
        elif spec.points:
            entry.model = SensorModel(spec, seed=self.seed, start=self.start, tz=self.tz)
        return entry

    def _household(self, unit: str) -> Household:
        u = self.units[unit].spec
        return Household(u.code, u.occupancy, u.registered_occupants, u.has_pv)

    def _usage(self, flat: FlatDevice, household: Household | None) -> UsageModel:
        spec = flat.spec
        interval = spec.expected_interval_s
        if household is not None:
            if household.occupancy == "vacant":
                return NoUse()
            if spec.kind == "electricity_meter":
                return ElectricityUse(spec.code, self.seed, interval, self.tz, household)
            uses = profiles.HOT_WATER if spec.kind == "hot_water_meter" else profiles.COLD_WATER
            return WaterUse(spec.code, self.seed, interval, self.tz, household, uses)
        if "master_of" in spec.attrs:
            return NoUse()  # replaced by _wire_masters once every sub-meter exists
        per_hour = float(spec.attrs.get("flow_m3_h", spec.attrs.get("flow_per_h", 0.01)))
        return SteadyFlow(spec.code, self.seed, interval, self.tz, per_hour)

    def _wire_masters(self) -> None:
        # A master meter measures the sum of its sub-meters (same kind, same building or the whole
        # estate when it has no building) plus pipe losses and common-area use.
        for entry in self.entries.values():
            model, spec = entry.model, entry.flat.spec
            if not isinstance(model, MeterModel) or "master_of" not in spec.attrs:
                continue
            building = entry.flat.building
            subs = [
                e.model
                for e in self.entries.values()
                if isinstance(e.model, MeterModel)
                and e.household is not None
                and e.kind == spec.attrs["master_of"]
                and (building is None or e.flat.building == building)
                and e.model.interval_s == model.interval_s
            ]
            r = rng(self.seed, spec.code, "balance")
            loss = r.uniform(0.02, 0.05)  # within the 15 % building-balance tolerance
            # Cleaning, gardens, the odd hose: a few litres per flat and day, so small buildings balance too.
            common = len(subs) * r.uniform(2.0, 5.0) / 1000 * model.interval_s / 86400
            model.usage = MasterUse(spec.code, self.seed, subs, loss, common)

    def _served_units(self, flat: FlatDevice) -> list[tuple[str, str, int]]:
        spec = flat.spec
        entrance = spec.attrs.get("entrance")
        doors = spec.attrs.get("doors") or []
        if entrance is None and doors and (m := _DOOR_RE.match(str(doors[0]))) is not None:
            entrance = m["entrance"]  # "3-1-main" → entrance 1 (the template's door naming)
        return [
            (u.spec.code, u.spec.occupancy, u.spec.registered_occupants)
            for u in self.expanded.units
            if (flat.building is None or u.building == flat.building)
            and (entrance is None or u.spec.entrance == str(entrance))
        ]
