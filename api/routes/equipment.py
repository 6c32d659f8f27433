"""Equipment rooms, devices, points and their time series (engineering roles)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from accounts.const import EQUIPMENT_ROLES
from api.deps import EstateCode, ObjectId, PageDep
from api.pagination import page_out
from api.routes.estates import estate_or_404
from api.schemas import (
    BucketOut,
    DeviceDetailOut,
    DeviceOut,
    LiveValueOut,
    Page,
    PointOut,
    QueryTime,
    RoomOut,
    SampleOut,
    SamplesOut,
    SeriesOut,
)
from core import clock
from core.errors import NotFound
from facility import live, queries, series
from storage.models import Device, DeviceState, Estate, Point, Room, StaffUser
from web.deps import VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(tags=["equipment"], responses=error_responses(401, 403, 404, 422))
Engineering = Annotated[StaffUser, Depends(require_roles(EQUIPMENT_ROLES))]


def _room(session: Session, room_id: int, visible: set[int]) -> Room:
    room = session.get(Room, room_id)
    if room is None or room.estate_id not in visible:
        raise NotFound("room not found / 未找到该机房")
    return room


def _device(session: Session, device_id: int, visible: set[int]) -> Device:
    device = session.get(Device, device_id)
    if device is None or device.estate_id not in visible:
        raise NotFound("device not found / 未找到该设备")
    return device


def _point(session: Session, point_id: int, visible: set[int]) -> tuple[Point, Device]:
    row = queries.point_with_device(session, point_id)
    if row is None or row[1].estate_id not in visible:
        raise NotFound("point not found / 未找到该测点")
    return row


def _device_out(device: Device, state: DeviceState | None) -> DeviceOut:
    out = DeviceOut.model_validate(device)
    if state is not None:
        out.last_seen_at, out.online = state.last_seen_at, state.online
    return out


def live_values(session: Session, devices: list[Device]) -> list[LiveValueOut]:
    return [LiveValueOut.model_validate(v, from_attributes=True) for v in live.live_values(session, devices)]


@router.get("/api/estates/{code}/rooms", response_model=Page[RoomOut])
def list_rooms(
    code: EstateCode, session: ReadSessionDep, user: Engineering, visible: VisibleEstates, page: PageDep
) -> dict[str, Any]:
    """Equipment rooms of an estate."""
    estate = estate_or_404(session, code, visible)
    return page_out(queries.rooms_page(session, estate.id, limit=page.limit, offset=page.offset), page)


@router.get("/api/estates/{code}/devices", response_model=Page[DeviceOut])
def list_devices(
    code: EstateCode,
    session: ReadSessionDep,
    user: Engineering,
    visible: VisibleEstates,
    page: PageDep,
    kind: Annotated[str | None, Query(max_length=48, pattern=r"^[A-Za-z0-9_.-]*$")] = None,
    room_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> dict[str, Any]:
    """Devices of an estate, optionally of one kind or one room."""
    estate: Estate = estate_or_404(session, code, visible)
    found = queries.devices_page(session, estate.id, kind=kind, room_id=room_id, limit=page.limit, offset=page.offset)
    return page_out(found, page, [_device_out(d, state) for d, state in found.items])


@router.get("/api/rooms/{room_id}", response_model=RoomOut)
def get_room(room_id: ObjectId, session: ReadSessionDep, user: Engineering, visible: VisibleEstates) -> Room:
    """One equipment room."""
    return _room(session, room_id, visible)


@router.get("/api/rooms/{room_id}/live", response_model=list[LiveValueOut])
def room_live(
    room_id: ObjectId, session: ReadSessionDep, user: Engineering, visible: VisibleEstates
) -> list[LiveValueOut]:
    """Latest value of every point in the room, with staleness."""
    room = _room(session, room_id, visible)
    return live_values(session, queries.room_devices(session, room.id))


@router.get("/api/devices/{device_id}", response_model=DeviceDetailOut)
def get_device(
    device_id: ObjectId, session: ReadSessionDep, user: Engineering, visible: VisibleEstates
) -> DeviceDetailOut:
    """One device with its points and last contact."""
    device = _device(session, device_id, visible)
    points = queries.device_points(session, device.id)
    base = _device_out(device, session.get(DeviceState, device.id))
    return DeviceDetailOut(**base.model_dump(), points=[PointOut.model_validate(p) for p in points])


@router.get("/api/points/{point_id}", response_model=PointOut)
def get_point(point_id: ObjectId, session: ReadSessionDep, user: Engineering, visible: VisibleEstates) -> Point:
    """One measuring point."""
    return _point(session, point_id, visible)[0]


def _default_range(start: datetime | None, end: datetime | None, span: timedelta) -> tuple[datetime, datetime]:
    end = end or clock.now()
    return (start or end - span), end


@router.get("/api/points/{point_id}/samples", response_model=SamplesOut)
def point_samples(
    point_id: ObjectId,
    session: ReadSessionDep,
    user: Engineering,
    visible: VisibleEstates,
    start: QueryTime | None = None,
    end: QueryTime | None = None,
    after: Annotated[QueryTime | None, Query(description="continue after this device time")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> SamplesOut:
    """Raw samples of a point over a range of at most 7 days (default: the last hour), oldest first."""
    _point(session, point_id, visible)
    lo, hi = _default_range(start, end, timedelta(hours=1))
    rows = series.raw_samples(session, point_id, lo, hi, after=after, limit=limit)
    return SamplesOut(
        point_id=point_id,
        items=[SampleOut(ts=ts, value=v) for ts, v in rows],
        next_after=rows[-1][0] if len(rows) == limit else None,
    )


@router.get("/api/points/{point_id}/series", response_model=SeriesOut)
def point_series(
    point_id: ObjectId,
    session: ReadSessionDep,
    user: Engineering,
    visible: VisibleEstates,
    start: QueryTime | None = None,
    end: QueryTime | None = None,
    bucket: series.Bucket = series.Bucket.h1,
) -> SeriesOut:
    """Min/avg/max/last per bucket (default: the last 24 h by hour), from aggregates when they exist."""
    _, device = _point(session, point_id, visible)
    estate = session.get(Estate, device.estate_id)
    lo, hi = _default_range(start, end, timedelta(hours=24))
    source, rows = series.bucketed(session, point_id, lo, hi, bucket, tz=estate.timezone if estate else "Asia/Shanghai")
    return SeriesOut(
        point_id=point_id,
        bucket=bucket.value,
        source=source,
        items=[BucketOut(bucket=r.bucket, n=r.n, min=r.min, avg=r.avg, max=r.max, last=r.last) for r in rows],
    )
