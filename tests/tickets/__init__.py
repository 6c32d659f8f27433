"""Factories shared by the ticket tests: a small estate built directly with the ORM, rules and alarms.

Each call makes objects with fresh codes, so tests in the shared session database never collide.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from alarms.store import NewAlarm, insert_alarms
from storage.models import AlarmRuleRow, Building, Device, Estate, Room, StaffEstate, StaffUser, Ticket, Unit

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


@dataclass(frozen=True)
class Place:
    estate_id: int
    code: str
    room_id: int
    unit_id: int
    sensor_id: int
    valve_meter_id: int
    plain_meter_id: int


def make_estate(session: Session, *, policy: dict[str, Any] | None = None) -> Place:
    code = f"tk-{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name=f"工单测试 {code}", timezone="Asia/Shanghai", policy=policy or {})
    session.add(estate)
    session.flush()
    building = Building(estate_id=estate.id, code="1", name="1幢", floors=2)
    room = Room(estate_id=estate.id, code="PR1", name="配电房", kind="power_room")
    session.add_all([building, room])
    session.flush()
    unit = Unit(building_id=building.id, code="1-1-101", floor=1, area_m2=Decimal("88.50"), occupancy="vacant")
    session.add(unit)
    session.flush()
    sensor = Device(
        estate_id=estate.id, code=f"{code.upper()}-S0", kind="transformer", name="1号变压器", room_id=room.id
    )
    valve = Device(
        estate_id=estate.id, code=f"{code.upper()}-MV", kind="hot_water_meter", unit_id=unit.id, has_valve=True
    )
    plain = Device(estate_id=estate.id, code=f"{code.upper()}-MP", kind="hot_water_meter", unit_id=unit.id)
    session.add_all([sensor, valve, plain])
    session.flush()
    return Place(estate.id, code, room.id, unit.id, sensor.id, valve.id, plain.id)


def make_rule(
    session: Session,
    *,
    kind: str = "threshold",
    metric: str = "winding_temp_a_c",
    ticket_policy: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    room_kind: str | None = "power_room",
    device_kind: str | None = None,
    title_zh: str = "绕组温度过高",
) -> int:
    rule = AlarmRuleRow(
        code=f"test.{uuid.uuid4().hex[:10]}",
        kind=kind,
        metric=metric,
        room_kind=room_kind,
        device_kind=device_kind,
        title_zh=title_zh,
        title_en="Winding temperature high",
        params=params or {},
        ticket_policy=ticket_policy or {},
    )
    session.add(rule)
    session.flush()
    return rule.id


def make_staff(session: Session, place: Place, role: str = "engineer") -> int:
    user = StaffUser(username=f"{role}-{uuid.uuid4().hex[:8]}", password_hash="x", role=role, active=True)
    session.add(user)
    session.flush()
    session.add(StaffEstate(user_id=user.id, estate_id=place.estate_id))
    session.flush()
    return user.id


def raise_alarm(
    conn: Connection,
    rule_id: int,
    place: Place,
    *,
    severity: str = "alarm",
    subject: str | None = None,
    device_id: int | None = None,
    at: datetime = T0,
    cleared: bool = False,
) -> int:
    """Insert one alarm episode the way producers do (alarms.store), without the ticket hook."""
    device = device_id if device_id is not None else place.sensor_id
    ids = insert_alarms(
        conn,
        [
            NewAlarm(
                rule_id=rule_id,
                subject=subject or f"device:{device}",
                estate_id=place.estate_id,
                severity=severity,
                raised_at=at,
                device_id=device,
                cleared_at=at if cleared else None,
            )
        ],
    )
    assert len(ids) == 1, "an open alarm already exists for this rule and subject"
    return ids[0]


def tickets_of(conn: Connection | Session, estate_id: int) -> list[Ticket]:
    stmt = select(Ticket).where(Ticket.estate_id == estate_id).order_by(Ticket.id)
    if isinstance(conn, Session):
        return list(conn.scalars(stmt.execution_options(populate_existing=True)))
    with Session(bind=conn) as s:
        return list(s.scalars(stmt))
