"""The estate description file (YAML): which buildings, units, rooms and devices an estate has.

It lives in ``protocol`` because both sides of the wire read it: ``facility`` imports it into the
database and ``simulators`` build their device fleet from it (simulators may import only
``protocol`` and ``core``). ``expand()`` turns the compact form (a building's layout, per-unit meter
templates) into flat, explicit records, so both sides agree on every code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Occupancy = Literal["vacant", "occupied", "renovating"]
RoomKind = Literal["power_room", "heat_station", "pump_room", "fire_pump_room", "hot_water_plant"]
MeterKind = Literal["electricity_meter", "cold_water_meter", "hot_water_meter"]
METER_UNIT: dict[str, str] = {"electricity_meter": "kWh", "cold_water_meter": "m3", "hot_water_meter": "m3"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointSpec(_Spec):
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    unit: str = ""
    kind: Literal["gauge", "counter", "state"] = "gauge"
    label: str = ""
    # Simulator hints: typical value and noise (ignored by the platform).
    nominal: float | None = None
    noise: float | None = None


class DeviceSpec(_Spec):
    code: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    kind: str
    name: str = ""
    serial: str = ""
    expected_interval_s: int = Field(default=60, ge=1)
    register_max: Decimal | None = None
    resolution: Decimal | None = None
    multiplier: Decimal = Decimal(1)
    has_valve: bool = False
    building: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    points: tuple[PointSpec, ...] = ()


class ControllerTemplate(_Spec):
    """The door controller every unit entrance has; ``code`` has ``{building}`` and ``{entrance}``."""

    code: str = Field(pattern=r"^[A-Za-z0-9_.:{}-]{1,64}$")
    kind: str = "door_controller"
    name: str = ""
    expected_interval_s: int = Field(default=300, ge=1)
    attrs: dict[str, Any] = Field(default_factory=dict)


class MeterTemplate(_Spec):
    """A meter every unit has; ``code`` is a template with ``{unit}`` (the unit code)."""

    kind: MeterKind
    code: str
    register_max: Decimal
    resolution: Decimal
    multiplier: Decimal = Decimal(1)
    has_valve: bool = False
    expected_interval_s: int = Field(default=900, ge=1)
    # A battery-powered meter's cell voltage when new (reported as ``battery_v`` in status frames every
    # ``battery_report_s``); None: mains-powered, no voltage reported. Both go to the devices' attrs.
    battery_v: float | None = Field(default=None, gt=0)
    battery_report_s: int = Field(default=6 * 3600, ge=1)


class UnitSpec(_Spec):
    code: str
    floor: int
    entrance: str = "1"
    area_m2: Decimal = Decimal("89.00")
    occupancy: Occupancy = "occupied"
    registered_occupants: int = Field(default=3, ge=0)
    has_pv: bool = False


class BuildingSpec(_Spec):
    code: str = Field(pattern=r"^[A-Za-z0-9]{1,8}$")
    name: str
    floors: int = Field(ge=1, le=80)
    entrances: int = Field(default=1, ge=1, le=12)
    units_per_floor: int = Field(default=2, ge=1, le=12)
    areas_m2: tuple[Decimal, ...] = (Decimal("89.00"), Decimal("118.00"))
    vacant: tuple[str, ...] = ()
    renovating: tuple[str, ...] = ()
    pv: tuple[str, ...] = ()


class RoomSpec(_Spec):
    code: str
    name: str
    kind: RoomKind
    building: str | None = None
    devices: tuple[DeviceSpec, ...] = ()


class ResidentSpec(_Spec):
    unit: str
    name: str
    phone: str
    role: Literal["owner", "tenant", "family"] = "owner"
    lease_end: date | None = None
    vulnerable: bool = False


class EstateSpec(_Spec):
    code: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    name: str
    city: str = ""
    timezone: str = "Asia/Shanghai"
    policy: dict[str, Any] = Field(default_factory=dict)


class EstateFile(_Spec):
    estate: EstateSpec
    buildings: tuple[BuildingSpec, ...] = ()
    unit_meters: tuple[MeterTemplate, ...] = ()
    # Door controllers on every unit entrance; ``code`` is a template with {building} and {entrance}.
    entrance_controller: ControllerTemplate | None = None
    rooms: tuple[RoomSpec, ...] = ()
    devices: tuple[DeviceSpec, ...] = ()  # estate-level devices, e.g. building master meters
    residents: tuple[ResidentSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> EstateFile:
        flat = expand(self)
        counts = Counter(d.spec.code for d in flat.devices)
        dupes = sorted(code for code, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate device codes: {', '.join(dupes[:10])}")
        units = {u.spec.code for u in flat.units}
        # A typo in a vacancy list would silently make a vacant unit "occupied" (and hide its leaks).
        listed = [c for b in self.buildings for c in (*b.vacant, *b.renovating, *b.pv)]
        listed += [r.unit for r in self.residents]
        unknown = sorted({c for c in listed if c not in units})
        if unknown:
            raise ValueError(f"unit codes not generated by any building layout: {', '.join(unknown[:10])}")
        buildings = {b.code for b in self.buildings}
        bad_refs = sorted({r.building for r in self.rooms if r.building and r.building not in buildings})
        bad_refs += sorted({d.building for d in self.devices if d.building and d.building not in buildings})
        if bad_refs:
            raise ValueError(f"unknown building codes: {', '.join(bad_refs)}")
        return self


@dataclass(frozen=True, slots=True)
class FlatUnit:
    building: str
    spec: UnitSpec


@dataclass(frozen=True, slots=True)
class FlatDevice:
    spec: DeviceSpec
    unit: str | None = None  # unit code
    room: str | None = None  # room code
    building: str | None = None


@dataclass
class ExpandedEstate:
    units: list[FlatUnit] = field(default_factory=list)
    devices: list[FlatDevice] = field(default_factory=list)


def unit_code(building: str, entrance: int, floor: int, index: int) -> str:
    """3-1-1201: building 3, entrance 1, floor 12, door 01 (the usual 楼-单元-室 numbering)."""
    return f"{building}-{entrance}-{floor}{index:02d}"


def expand(doc: EstateFile) -> ExpandedEstate:
    out = ExpandedEstate()
    for b in doc.buildings:
        for entrance in range(1, b.entrances + 1):
            if doc.entrance_controller is not None:
                tpl = doc.entrance_controller
                spec = DeviceSpec(
                    code=tpl.code.format(building=b.code, entrance=entrance),
                    kind=tpl.kind,
                    name=tpl.name,
                    expected_interval_s=tpl.expected_interval_s,
                    attrs={**tpl.attrs, "doors": [f"{b.code}-{entrance}-main"], "entrance": str(entrance)},
                )
                out.devices.append(FlatDevice(spec=spec, building=b.code))
            for floor in range(1, b.floors + 1):
                for i in range(1, b.units_per_floor + 1):
                    code = unit_code(b.code, entrance, floor, i)
                    occupancy: Occupancy = "occupied"
                    if code in b.vacant:
                        occupancy = "vacant"
                    elif code in b.renovating:
                        occupancy = "renovating"
                    unit = UnitSpec(
                        code=code,
                        floor=floor,
                        entrance=str(entrance),
                        area_m2=b.areas_m2[(i - 1) % len(b.areas_m2)],
                        occupancy=occupancy,
                        registered_occupants=0 if occupancy == "vacant" else 2 + (floor + i) % 3,
                        has_pv=code in b.pv,
                    )
                    out.units.append(FlatUnit(building=b.code, spec=unit))
                    for m in doc.unit_meters:
                        dev = DeviceSpec(
                            code=m.code.format(unit=code),
                            kind=m.kind,
                            expected_interval_s=m.expected_interval_s,
                            register_max=m.register_max,
                            resolution=m.resolution,
                            multiplier=m.multiplier,
                            has_valve=m.has_valve,
                            attrs=(
                                {"battery_v": m.battery_v, "battery_report_s": m.battery_report_s}
                                if m.battery_v is not None
                                else {}
                            ),
                        )
                        out.devices.append(FlatDevice(spec=dev, unit=code, building=b.code))
    for room in doc.rooms:
        for d in room.devices:
            out.devices.append(FlatDevice(spec=d, room=room.code, building=room.building))
    for d in doc.devices:
        out.devices.append(FlatDevice(spec=d, building=d.building))
    return out


def load_estate_file(path: Path | str) -> EstateFile:
    """Parse and validate an estate YAML file (raises pydantic.ValidationError / yaml.YAMLError)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return EstateFile.model_validate(data)
