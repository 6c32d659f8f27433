"""Reads of an estate's equipment for the pages and the API: estates, rooms, devices with their last
contact, points, data rates and meter readings, and the paged listings of the JSON API (estates, buildings,
units, residents, rooms, devices). Plain ORM rows and typed tuples; nothing formats here."""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from storage.models import Building, Device, DeviceState, Estate, MeterReading, Point, Resident, Room, Unit
from storage.paging import Paged, fetch_page


def visible_estates(session: Session, visible: Set[int]) -> list[Estate]:
    return list(session.scalars(select(Estate).where(Estate.id.in_(visible)).order_by(Estate.code)))


def estate_devices(session: Session, estate_id: int) -> list[tuple[Device, DeviceState | None]]:
    """The estate's reporting devices with their last contact (a replaced meter stays for its history but no
    longer reports, so it is left out)."""
    rows = session.execute(
        select(Device, DeviceState)
        .outerjoin(DeviceState, DeviceState.device_id == Device.id)
        .where(Device.estate_id == estate_id, Device.replaced_by_id.is_(None))
        .order_by(Device.id)
    ).all()
    return [(device, state) for device, state in rows]


def readings_since(session: Session, device_ids: list[int], since: datetime) -> int:
    """Samples and meter readings these devices stored after ``since`` (the data rate).

    The ids go as one array parameter each: an estate has thousands of points, and an expanded ``IN (…)`` list
    of them cost more to build and parse than the count itself (bench/api.py, the estate overview)."""
    if not device_ids:
        return 0
    params = {"d": device_ids, "since": since}
    n = (
        session.scalar(
            text(
                "SELECT count(*) FROM samples WHERE point_id IN (SELECT id FROM points WHERE device_id = ANY(:d))"
                " AND ts > :since"
            ),
            params,
        )
        or 0
    )
    meters = text("SELECT count(*) FROM meter_readings WHERE device_id = ANY(:d) AND ts > :since")
    n += session.scalar(meters, params) or 0
    return n


def estate_rooms(session: Session, estate_id: int) -> list[Room]:
    return list(session.scalars(select(Room).where(Room.estate_id == estate_id).order_by(Room.id)))


def room_points(session: Session, estate_id: int) -> dict[int, list[int]]:
    """Room id → the ids of the points of the devices in that room."""
    out: dict[int, list[int]] = {}
    for room_id, point_id in session.execute(
        select(Device.room_id, Point.id)
        .join(Point, Point.device_id == Device.id)
        .where(Device.estate_id == estate_id, Device.room_id.is_not(None))
    ):
        if room_id is not None:
            out.setdefault(room_id, []).append(point_id)
    return out


def point_devices(session: Session, point_ids: list[int]) -> dict[int, int]:
    """Point id → device id (the ids as one array parameter: see readings_since)."""
    if not point_ids:
        return {}
    rows = session.execute(text("SELECT id, device_id FROM points WHERE id = ANY(:p)"), {"p": point_ids})
    return {int(p): int(d) for p, d in rows}


def room_devices(session: Session, room_id: int) -> list[Device]:
    return list(session.scalars(select(Device).where(Device.room_id == room_id).order_by(Device.id)))


def device_states(session: Session, device_ids: list[int]) -> dict[int, DeviceState]:
    return {s.device_id: s for s in session.scalars(select(DeviceState).where(DeviceState.device_id.in_(device_ids)))}


def point_kinds(session: Session, device_ids: list[int]) -> dict[int, str]:
    """Point id → gauge | counter | state, for the points of these devices."""
    return {
        int(p): str(k) for p, k in session.execute(select(Point.id, Point.kind).where(Point.device_id.in_(device_ids)))
    }


def chartable_points(session: Session, device_ids: list[int]) -> list[Point]:
    """The points of these devices that have a numeric series (every kind but state), by id."""
    return list(
        session.scalars(select(Point).where(Point.device_id.in_(device_ids), Point.kind != "state").order_by(Point.id))
    )


def latest_meter_readings(session: Session, device_id: int, limit: int) -> list[MeterReading]:
    return list(
        session.scalars(
            select(MeterReading)
            .where(MeterReading.device_id == device_id)
            .order_by(MeterReading.ts.desc())
            .limit(limit)
        )
    )


def estate_by_code(session: Session, code: str) -> Estate | None:
    return session.scalar(select(Estate).where(Estate.code == code))


def estate_timezones(session: Session, estate_ids: Set[int]) -> list[str]:
    """The distinct time zones of these estates, sorted."""
    return sorted(set(session.scalars(select(Estate.timezone).where(Estate.id.in_(estate_ids)))))


# --- paged listings (the JSON API's estate and equipment lists) -----------------------------------------------------


def estates_page(session: Session, visible: Set[int], *, limit: int, offset: int) -> Paged[Estate]:
    return fetch_page(
        session, select(Estate).where(Estate.id.in_(visible)).order_by(Estate.code), limit=limit, offset=offset
    )


def buildings_page(session: Session, estate_id: int, *, limit: int, offset: int) -> Paged[Building]:
    return fetch_page(
        session,
        select(Building).where(Building.estate_id == estate_id).order_by(Building.code),
        limit=limit,
        offset=offset,
    )


def units_page(
    session: Session,
    estate_id: int,
    *,
    building: str | None = None,
    occupancy: str | None = None,
    limit: int,
    offset: int,
) -> Paged[Unit]:
    """Units of an estate, optionally of one building (by code) or one occupancy, by unit code."""
    stmt = select(Unit).join(Building, Unit.building_id == Building.id).where(Building.estate_id == estate_id)
    if building:
        stmt = stmt.where(Building.code == building)
    if occupancy:
        stmt = stmt.where(Unit.occupancy == occupancy)
    return fetch_page(session, stmt.order_by(Unit.code), limit=limit, offset=offset)


def residents_page(
    session: Session, estate_id: int, *, unit: str | None = None, limit: int, offset: int
) -> Paged[Resident]:
    """Residents of an estate, optionally of one unit (by code), by unit code then resident id (unmasked:
    masking is the caller's, by role)."""
    stmt = (
        select(Resident)
        .join(Unit, Resident.unit_id == Unit.id)
        .join(Building, Unit.building_id == Building.id)
        .where(Building.estate_id == estate_id)
    )
    if unit:
        stmt = stmt.where(Unit.code == unit)
    return fetch_page(session, stmt.order_by(Unit.code, Resident.id), limit=limit, offset=offset)


def rooms_page(session: Session, estate_id: int, *, limit: int, offset: int) -> Paged[Room]:
    return fetch_page(
        session, select(Room).where(Room.estate_id == estate_id).order_by(Room.code), limit=limit, offset=offset
    )


def devices_page(
    session: Session,
    estate_id: int,
    *,
    kind: str | None = None,
    room_id: int | None = None,
    limit: int,
    offset: int,
) -> Paged[tuple[Device, DeviceState | None]]:
    """Devices of an estate (replaced ones too), optionally of one kind or room, by code, each with its last
    contact if it ever reported."""
    stmt = select(Device).where(Device.estate_id == estate_id)
    if kind:
        stmt = stmt.where(Device.kind == kind)
    if room_id is not None:
        stmt = stmt.where(Device.room_id == room_id)
    page = fetch_page(session, stmt.order_by(Device.code), limit=limit, offset=offset)
    devices: list[Device] = list(page.items)
    states = device_states(session, [d.id for d in devices])
    return Paged(items=[(d, states.get(d.id)) for d in devices], total=page.total)


def point_with_device(session: Session, point_id: int) -> tuple[Point, Device] | None:
    row = session.execute(
        select(Point, Device).join(Device, Point.device_id == Device.id).where(Point.id == point_id)
    ).first()
    return None if row is None else (row[0], row[1])


def device_points(session: Session, device_id: int) -> list[Point]:
    """A device's points by metric."""
    return list(session.scalars(select(Point).where(Point.device_id == device_id).order_by(Point.metric)))


def room_by_code(session: Session, estate_id: int, code: str) -> Room | None:
    return session.scalar(select(Room).where(Room.estate_id == estate_id, Room.code == code))


def estate_codes(session: Session, estate_ids: Set[int]) -> dict[int, str]:
    """Estate id → code for these estates."""
    return {int(i): str(c) for i, c in session.execute(select(Estate.id, Estate.code).where(Estate.id.in_(estate_ids)))}


def estate_code(session: Session, estate_id: int) -> str:
    """The estate's code, or "" if there is none with this id."""
    return session.scalar(select(Estate.code).where(Estate.id == estate_id)) or ""


def unit_id_by_code(session: Session, estate_id: int, code: str) -> int | None:
    """The id of the estate's unit with this code (e.g. 1-1-101), or None."""
    return session.scalar(
        select(Unit.id)
        .join(Building, Building.id == Unit.building_id)
        .where(Building.estate_id == estate_id, Unit.code == code)
        .limit(1)
    )
