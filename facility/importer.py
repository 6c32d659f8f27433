"""Load an estate description (protocol.estate_file) into the database. Re-importing updates in place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import EstateFileError
from protocol.estate_file import EstateFile, expand
from storage.models import Building, Device, Estate, Point, Resident, Room, Unit

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    estate: str
    buildings: int
    units: int
    rooms: int
    devices: int
    points: int
    residents: int


def _upsert(session: Session, existing: dict[str, T], key: str, factory: type[T], **values: object) -> T:
    obj = existing.get(key)
    if obj is None:
        obj = factory(**values)
        session.add(obj)
        existing[key] = obj
    else:
        for name, value in values.items():
            setattr(obj, name, value)
    return obj


def import_estate(session: Session, doc: EstateFile) -> ImportSummary:
    """Create or update an estate and everything in it from its description. Flushes, never commits."""
    spec = doc.estate
    estate = session.scalar(select(Estate).where(Estate.code == spec.code))
    if estate is None:
        estate = Estate(code=spec.code, name=spec.name, city=spec.city, timezone=spec.timezone, policy=spec.policy)
        session.add(estate)
    else:
        estate.name, estate.city, estate.timezone = spec.name, spec.city, spec.timezone
        estate.policy = {**estate.policy, **spec.policy}
    session.flush()

    buildings = {b.code: b for b in session.scalars(select(Building).where(Building.estate_id == estate.id))}
    for b in doc.buildings:
        _upsert(session, buildings, b.code, Building, estate_id=estate.id, code=b.code, name=b.name, floors=b.floors)
    session.flush()

    flat = expand(doc)
    units = {
        u.code: u
        for u in session.scalars(
            select(Unit).join(Building, Unit.building_id == Building.id).where(Building.estate_id == estate.id)
        )
    }
    for fu in flat.units:
        u = fu.spec
        _upsert(
            session,
            units,
            u.code,
            Unit,
            building_id=buildings[fu.building].id,
            code=u.code,
            entrance=u.entrance,
            floor=u.floor,
            area_m2=u.area_m2,
            occupancy=u.occupancy,
            registered_occupants=u.registered_occupants,
            has_pv=u.has_pv,
        )

    rooms = {r.code: r for r in session.scalars(select(Room).where(Room.estate_id == estate.id))}
    for r in doc.rooms:
        building_id = buildings[r.building].id if r.building else None
        _upsert(
            session,
            rooms,
            r.code,
            Room,
            estate_id=estate.id,
            code=r.code,
            name=r.name,
            kind=r.kind,
            building_id=building_id,
        )
    session.flush()

    codes = [d.spec.code for d in flat.devices]
    devices = {d.code: d for d in session.scalars(select(Device).where(Device.code.in_(codes)))}
    foreign = sorted(c for c, d in devices.items() if d.estate_id != estate.id)
    if foreign:
        raise EstateFileError(f"device codes already belong to another estate: {', '.join(foreign[:10])}")
    for fd in flat.devices:
        d = fd.spec
        attrs = dict(d.attrs)
        if fd.building:
            attrs.setdefault("building", fd.building)
        _upsert(
            session,
            devices,
            d.code,
            Device,
            estate_id=estate.id,
            code=d.code,
            kind=d.kind,
            name=d.name,
            serial=d.serial,
            unit_id=units[fd.unit].id if fd.unit else None,
            room_id=rooms[fd.room].id if fd.room else None,
            register_max=d.register_max,
            resolution=d.resolution,
            multiplier=d.multiplier,
            has_valve=d.has_valve,
            expected_interval_s=d.expected_interval_s,
            attrs=attrs,
        )
    session.flush()

    device_ids = [devices[c].id for c in codes]
    points = {
        f"{p.device_id}:{p.metric}": p for p in session.scalars(select(Point).where(Point.device_id.in_(device_ids)))
    }
    n_points = 0
    for fd in flat.devices:
        dev = devices[fd.spec.code]
        for p in fd.spec.points:
            n_points += 1
            _upsert(
                session,
                points,
                f"{dev.id}:{p.metric}",
                Point,
                device_id=dev.id,
                metric=p.metric,
                unit=p.unit,
                kind=p.kind,
                label=p.label,
            )

    residents = {
        f"{r.unit_id}:{r.name}": r
        for r in session.scalars(select(Resident).where(Resident.unit_id.in_([u.id for u in units.values()])))
    }
    for res in doc.residents:
        if res.unit not in units:
            raise EstateFileError(f"resident {res.name!r} lives in unknown unit {res.unit!r}")
        unit_id = units[res.unit].id
        _upsert(
            session,
            residents,
            f"{unit_id}:{res.name}",
            Resident,
            unit_id=unit_id,
            name=res.name,
            phone=res.phone,
            role=res.role,
            lease_end=res.lease_end,
            vulnerable=res.vulnerable,
        )
    session.flush()
    return ImportSummary(
        estate=estate.code,
        buildings=len(doc.buildings),
        units=len(flat.units),
        rooms=len(doc.rooms),
        devices=len(flat.devices),
        points=n_points,
        residents=len(doc.residents),
    )
