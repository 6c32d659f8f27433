"""Doors of the estate's door controllers, and the default scope of each card type.

The estate file (protocol/estate_file.py) lists door controllers as devices of kind ``door_controller`` with
``attrs.doors`` (the door codes they report in swipes), ``attrs.building`` and ``attrs.entrance``.
`sync_doors` turns them into ``access_doors`` rows; a controller's ``attrs.door_kinds`` ({code: kind}) or
``attrs.door_kind`` names gates, garages and equipment-room doors, otherwise the kind follows from where the
controller sits (a room: equipment room; a building and entrance: unit entrance; a building: building; else gate).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from access.const import CardType, DoorKind
from core.errors import InvalidInput
from core.roles import Role
from storage.models import AccessDoor, Building, Device, Unit

CONTROLLER_KIND = "door_controller"

# Staff doors by role: 工程部 and management reach the equipment rooms; the rest only the residents' doors.
RESIDENT_DOORS = frozenset({DoorKind.gate, DoorKind.building, DoorKind.unit_entrance, DoorKind.garage})
STAFF_DOORS: dict[str, frozenset[DoorKind]] = {
    role.value: frozenset(DoorKind)
    if role in {Role.admin, Role.engineer, Role.supervisor, Role.manager}
    else RESIDENT_DOORS
    for role in Role
}


def _kind_of(device: Device, code: str) -> DoorKind:
    attrs = device.attrs or {}
    named = (attrs.get("door_kinds") or {}).get(code) or attrs.get("door_kind")
    if named:
        return DoorKind(named)
    if device.room_id is not None:
        return DoorKind.equipment_room
    if attrs.get("building") and attrs.get("entrance"):
        return DoorKind.unit_entrance
    if attrs.get("building"):
        return DoorKind.building
    return DoorKind.gate


def sync_doors(session: Session, estate_id: int) -> list[AccessDoor]:
    """Create the doors the estate's controllers report and the table lacks (idempotent); returns the new ones."""
    buildings = {
        str(code): id_
        for code, id_ in session.execute(select(Building.code, Building.id).where(Building.estate_id == estate_id))
    }
    known = set(session.scalars(select(AccessDoor.code).where(AccessDoor.estate_id == estate_id)))
    created = []
    controllers = session.scalars(
        select(Device).where(Device.estate_id == estate_id, Device.kind == CONTROLLER_KIND).order_by(Device.code)
    )
    for device in controllers:
        attrs = device.attrs or {}
        for code in attrs.get("doors") or []:
            if code in known:
                continue
            kind = _kind_of(device, code)
            door = AccessDoor(
                estate_id=estate_id,
                code=code,
                name=device.name or code,
                controller_id=device.id,
                kind=kind.value,
                building_id=buildings.get(str(attrs.get("building") or "")),
                entrance=str(attrs["entrance"]) if kind == DoorKind.unit_entrance and attrs.get("entrance") else None,
                room_id=device.room_id,
            )
            session.add(door)
            known.add(code)
            created.append(door)
    session.flush()
    return created


def default_doors(
    session: Session, estate_id: int, card_type: CardType, unit: Unit | None, staff_role: str | None = None
) -> list[AccessDoor]:
    """The doors a card of this type opens unless the issuer narrows them (issue 12 §2).

    Households and visitors: the community gates, their own building's door and unit entrance, the garage
    (visitors: no garage). Renovation passes: the gates and their own building (its doors and entrances).
    Staff: every door of the kinds their role reaches (equipment rooms for 工程部 and management)."""
    in_estate = AccessDoor.estate_id == estate_id
    cond: ColumnElement[bool]
    if card_type == CardType.staff:
        kinds = STAFF_DOORS.get(staff_role or "", RESIDENT_DOORS)
        cond = AccessDoor.kind.in_([k.value for k in kinds])
    else:
        if unit is None:
            raise InvalidInput("a resident's card belongs to a unit / 住户卡须指定房屋")
        own_building = and_(AccessDoor.kind == DoorKind.building, AccessDoor.building_id == unit.building_id)
        own_entrance = and_(
            AccessDoor.kind == DoorKind.unit_entrance,
            AccessDoor.building_id == unit.building_id,
            AccessDoor.entrance == unit.entrance,
        )
        parts: list[ColumnElement[bool]] = [AccessDoor.kind == DoorKind.gate, own_building, own_entrance]
        if card_type == CardType.renovation:
            # Workers carry materials up any stair of the building, but no further than it.
            parts[2] = and_(AccessDoor.kind == DoorKind.unit_entrance, AccessDoor.building_id == unit.building_id)
        elif card_type != CardType.visitor:
            parts.append(AccessDoor.kind == DoorKind.garage)
        cond = or_(*parts)
    return list(session.scalars(select(AccessDoor).where(in_estate, cond).order_by(AccessDoor.code)))


def doors_by_code(session: Session, estate_id: int, codes: Iterable[str]) -> list[AccessDoor]:
    """The named doors of the estate; an unknown code is refused (422)."""
    wanted = sorted(set(codes))
    doors = list(
        session.scalars(
            select(AccessDoor)
            .where(AccessDoor.estate_id == estate_id, AccessDoor.code.in_(wanted))
            .order_by(AccessDoor.code)
        )
    )
    missing = sorted(set(wanted) - {d.code for d in doors})
    if missing:
        raise InvalidInput(f"unknown doors: {', '.join(missing)} / 门禁点不存在")
    return doors
