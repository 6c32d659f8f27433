"""Live values of an estate's devices: the latest reading of each point and whether it is stale.

Shared by the JSON API (api/routes/equipment.py) and the pages (dashboards/rooms.py), so both call the same
point stale at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from facility import series
from storage.models import Device, DeviceState, Point

# A point is stale when it has not reported within 1.5 × its device's interval (domain-defaults §2).
STALE_FACTOR = 1.5


@dataclass(frozen=True)
class LiveValue:
    point_id: int
    device_id: int
    metric: str
    unit: str
    label: str
    ts: datetime | None
    value: float | None
    age_s: float | None
    stale: bool


def live_values(session: Session, devices: list[Device]) -> list[LiveValue]:
    """Latest value of every point of these devices, marked stale past 1.5 × the expected interval."""
    points = session.scalars(select(Point).where(Point.device_id.in_([d.id for d in devices])).order_by(Point.id)).all()
    latest = series.latest_values(session, [p.id for p in points])
    interval = {d.id: d.expected_interval_s for d in devices}
    now = clock.now()
    out = []
    for p in points:
        v = latest.get(p.id)
        ts = v.ts if v else None
        age = (now - ts).total_seconds() if ts else None
        stale = age is None or age > STALE_FACTOR * interval[p.device_id]
        out.append(
            LiveValue(
                point_id=p.id,
                device_id=p.device_id,
                metric=p.metric,
                unit=p.unit,
                label=p.label,
                ts=ts,
                value=v.value if v else None,
                age_s=age,
                stale=stale,
            )
        )
    return out


def device_status(interval_s: int, state: DeviceState | None, now: datetime) -> tuple[str, float | None]:
    """(online|offline|stale|never, age in seconds) of a device from its last contact."""
    if state is None:
        return "never", None
    return contact_status(interval_s, state.last_seen_at, state.online, now)


def contact_status(
    interval_s: int, last_seen_at: datetime | None, online: bool | None, now: datetime
) -> tuple[str, float | None]:
    """device_status from the two fields of a last contact (the overview reads them without the ORM row)."""
    if last_seen_at is None:
        return "never", None
    age = (now - last_seen_at).total_seconds()
    if age > STALE_FACTOR * interval_s:
        return "stale", age
    if online is False:
        return "offline", age
    return "online", age
