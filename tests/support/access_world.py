"""Access cards in a test: an estate with a community gate, a garage, two unit entrances of building 1, a
building door of building 2 and an equipment room, each door on a door controller as the estate file lists
them (devices of kind door_controller with attrs.doors)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from access import doors, service
from storage.models import AccessCard, AccessDoor, Building, Device, Estate, Resident, Room, Unit

_uids = itertools.count(0x10000000 + (uuid.uuid4().int % 0x1000000) * 16)


def new_uid() -> str:
    """A fresh 4-byte MIFARE UID, unique within the test run."""
    return f"{next(_uids) % 0xFFFFFFFF:08X}"


@dataclass(frozen=True)
class CardPlace:
    estate_id: int
    code: str
    unit_id: int  # 1-1-101: 2 registered occupants, an owner
    big_unit_id: int  # 1-1-102: 5 registered occupants
    tenant_unit_id: int  # 1-2-101: a tenant with a lease ending LEASE_END
    controllers: dict[str, int]  # GATE, GARAGE, AC-1-1, AC-1-2, AC-2, PUMP


LEASE_END = date(2027, 3, 31)


def _controller(s: Session, estate_id: int, code: str, attrs: dict[str, Any], room_id: int | None = None) -> int:
    d = Device(estate_id=estate_id, code=code, kind="door_controller", name=code, attrs=attrs, room_id=room_id)
    s.add(d)
    s.flush()
    return d.id


def make_card_estate(s: Session, *, policy: dict[str, Any] | None = None) -> CardPlace:
    code = f"ac-{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name=f"门禁测试 {code}", timezone="Asia/Shanghai", policy=policy or {})
    s.add(estate)
    s.flush()
    b1 = Building(estate_id=estate.id, code="1", name="1幢", floors=6)
    b2 = Building(estate_id=estate.id, code="2", name="2幢", floors=6)
    s.add_all([b1, b2])
    s.flush()
    room = Room(estate_id=estate.id, code="PUMP", name="水泵房", kind="pump_room")
    s.add(room)
    s.flush()

    def unit(building: Building, c: str, entrance: str, occupants: int) -> Unit:
        u = Unit(
            building_id=building.id,
            code=c,
            entrance=entrance,
            floor=1,
            area_m2=Decimal("89.00"),
            registered_occupants=occupants,
        )
        s.add(u)
        s.flush()
        return u

    u1, u2, u3 = unit(b1, "1-1-101", "1", 2), unit(b1, "1-1-102", "1", 5), unit(b1, "1-2-101", "2", 1)
    s.add_all(
        [
            Resident(unit_id=u1.id, name="张三丰", phone="13812345678", role="owner"),
            Resident(unit_id=u3.id, name="李租客", phone="13900000001", role="tenant", lease_end=LEASE_END),
        ]
    )
    up = code.upper()
    controllers = {
        "GATE": _controller(s, estate.id, f"{up}-GATE", {"doors": ["gate-n", "gate-s"], "door_kind": "gate"}),
        "GARAGE": _controller(s, estate.id, f"{up}-GARAGE", {"doors": ["garage-b1"], "door_kind": "garage"}),
        "AC-1-1": _controller(s, estate.id, f"{up}-AC-1-1", {"doors": ["1-1-main"], "building": "1", "entrance": "1"}),
        "AC-1-2": _controller(s, estate.id, f"{up}-AC-1-2", {"doors": ["1-2-main"], "building": "1", "entrance": "2"}),
        "AC-2": _controller(s, estate.id, f"{up}-AC-2", {"doors": ["2-lobby"], "building": "2"}),
        "PUMP": _controller(s, estate.id, f"{up}-PUMP", {"doors": ["pump-room"]}, room_id=room.id),
    }
    doors.sync_doors(s, estate.id)
    return CardPlace(estate.id, code, u1.id, u2.id, u3.id, controllers)


def card_for(engine: Engine, estate: str, *, card_type: str = "owner") -> int:
    """A fresh live card of the estate's first unit (the access matrix acts on one per call), committed.

    An estate without units (the API world's apib) gets a building and a unit; one without a gate a gate."""
    with Session(engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == estate)).one()
        unit_id = s.scalars(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate_id)
            .order_by(Unit.id)
            .limit(1)
        ).one_or_none()
        if unit_id is None:
            building = Building(estate_id=estate_id, code="C1", name="卡测试楼")
            s.add(building)
            s.flush()
            u = Unit(building_id=building.id, code="C1-1-101", floor=1, area_m2=Decimal("80.00"))
            s.add(u)
            s.flush()
            unit_id = u.id
        doors.sync_doors(s, estate_id)
        gate = s.scalar(select(AccessDoor.id).where(AccessDoor.estate_id == estate_id, AccessDoor.kind == "gate"))
        if gate is None:  # the world's controllers may all sit in equipment rooms: give the estate a gate
            _controller(s, estate_id, f"{estate.upper()}-GATE", {"doors": ["gate"], "door_kind": "gate"})
            doors.sync_doors(s, estate_id)
        card = service.issue(
            s,
            estate_id=estate_id,
            card_type=card_type,
            uid=new_uid(),
            holder_name="测试持卡人",
            unit_id=unit_id,
            actor="matrix",
        )
        return card.id


def unit_code_of(engine: Engine, card_id: int) -> str:
    with Session(engine) as s:
        return s.scalars(
            select(Unit.code).join(AccessCard, AccessCard.unit_id == Unit.id).where(AccessCard.id == card_id)
        ).one()
