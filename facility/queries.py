"""Reads of an estate's equipment for the pages and the API: estates, rooms, devices with their last
contact, points, data rates and meter readings, and the paged listings of the JSON API (estates, buildings,
units, residents, rooms, devices). Plain ORM rows and typed tuples; nothing formats here."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from storage.models import Building, Device, DeviceState, Estate, MeterReading, Point, Resident, Room, Unit
from storage.paging import Paged, fetch_page


def visible_estates(session: Session, visible: Set[int]) -> list[Estate]:
    return list(session.scalars(select(Estate).where(Estate.id.in_(visible)).order_by(Estate.code)))


@dataclass(frozen=True, slots=True)
class DeviceContact:
    """A reporting device of an estate with its last contact and how many points it has: what the overview counts
    (no ORM entity: an estate has thousands of devices, and building a mapped object for each cost more than the
    whole query)."""

    id: int
    code: str
    name: str
    kind: str
    room_id: int | None
    expected_interval_s: int
    last_seen_at: datetime | None
    online: bool | None
    points: int


def estate_device_contacts(session: Session, estate_id: int) -> list[DeviceContact]:
    """The estate's reporting devices with their last contact, by id (a replaced meter stays for its history but
    no longer reports, so it is left out)."""
    rows = session.execute(
        text(
            "SELECT d.id, d.code, d.name, d.kind, d.room_id, d.expected_interval_s, s.last_seen_at, s.online,"
            "       (SELECT count(*) FROM points p WHERE p.device_id = d.id)"
            " FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
            " WHERE d.estate_id = :e AND d.replaced_by_id IS NULL ORDER BY d.id"
        ),
        {"e": estate_id},
    ).all()
    return [DeviceContact(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class ReadingCount:
    """Rows stored with device times in a window: samples of the points looked at (all of them, or those of every
    k-th device), how many points that was out of how many, and meter readings (always all of them)."""

    samples: int
    points_counted: int
    points: int
    meter_readings: int

    @property
    def estimate(self) -> float:
        """The estate's rows in the window: the sampled points' rows scaled up to all points."""
        scaled = self.samples * self.points / self.points_counted if self.points_counted else 0.0
        return scaled + self.meter_readings


def readings_between(session: Session, estate_id: int, lo: datetime, hi: datetime, *, every: int = 1) -> ReadingCount:
    """Samples and meter readings the estate's devices stored with device times in (lo, hi] (the data rate), the
    samples counted on the points of every ``every``-th device only (by id: whole devices, so the sample holds
    each device's points alike, its rarely reporting state points as much as its gauges).

    Each sample counted is a heap visit (the newest pages are never all-visible) and an estate at 4,000 msg/s
    writes 20,000 a second: counting them all made the overview take a third of a second under that load
    (bench/api.py), so a large estate counts a sample of its points and scales up. Joined through the estate in
    SQL rather than passed as id lists: dumping thousands of ids as a parameter cost more than the count."""
    row = session.execute(
        text(
            "WITH p AS (SELECT p.id, d.id % :k = 0 AS counted FROM points p JOIN devices d ON d.id = p.device_id"
            "           WHERE d.estate_id = :e)"
            " SELECT (SELECT count(*) FROM samples s JOIN p ON p.id = s.point_id"
            "         WHERE p.counted AND s.ts > :lo AND s.ts <= :hi),"
            "        (SELECT count(*) FILTER (WHERE counted) FROM p), (SELECT count(*) FROM p),"
            "        (SELECT count(*) FROM meter_readings m JOIN devices d ON d.id = m.device_id"
            "         WHERE d.estate_id = :e AND m.ts > :lo AND m.ts <= :hi)"
        ),
        {"e": estate_id, "lo": lo, "hi": hi, "k": max(1, every)},
    ).one()
    return ReadingCount(*(int(v or 0) for v in row))


def estate_rooms(session: Session, estate_id: int) -> list[Room]:
    return list(session.scalars(select(Room).where(Room.estate_id == estate_id).order_by(Room.id)))


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
