"""Scoped lookups for pages: 404 for what is missing and for what is not the viewer's alike (existence is
not leaked), and the time zone of pages that span estates."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from dashboards import i18n
from dashboards.viewer import PageError, Viewer
from facility import queries
from storage.models import Device, Estate, Room


def estate_of(session: Session, code: str, viewer: Viewer) -> Estate:
    estate = queries.estate_by_code(session, code)
    if estate is None or estate.id not in viewer.visible:
        raise PageError(404, viewer)
    return estate


def room_of(session: Session, room_id: int, viewer: Viewer) -> tuple[Room, Estate]:
    room = session.get(Room, room_id)
    if room is None or room.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, room.estate_id)
    assert estate is not None  # the foreign key guarantees it
    return room, estate


def device_of(session: Session, device_id: int, viewer: Viewer) -> tuple[Device, Estate]:
    device = session.get(Device, device_id)
    if device is None or device.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    return device, estate


def viewer_tz(session: Session, viewer: Viewer) -> ZoneInfo:
    """For pages that span estates: the zone of the viewer's estates (they share one in practice)."""
    zones = queries.estate_timezones(session, viewer.visible)
    return i18n.zone(zones[0] if zones else None)
