"""Reads of the card register: search by unit, holder or UID; one card; a household's cards with its quota; the
door controllers' whitelist sync state.

Rows carry the UID only for callers allowed to see it (policy.Action.view_uids); otherwise it is masked
and never matched by a search.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.orm import Session

from access import service
from access.const import CardStatus, CardType
from access.doors import CONTROLLER_KIND
from access.wiegand import wiegand26, wiegand34
from storage.models import (
    AccessCard,
    AccessCardDoor,
    AccessControllerSync,
    AccessDoor,
    AccessEvent,
    Building,
    Device,
    DeviceWhitelistState,
    Estate,
    Resident,
    Unit,
)
from storage.paging import Paged, fetch_page

MASK = "********"


@dataclass(frozen=True)
class CardRow:
    """One line of the register: the 《智能卡发放登记表》 fields and the card's state."""

    id: int
    estate_code: str
    estate_name: str
    building_code: str | None
    unit_id: int | None
    unit_code: str | None
    card_type: str
    format: str
    uid: str  # masked (********) for callers who may not see card numbers
    wiegand26: str | None  # "FFF,NNNNN"; None when masked
    wiegand34: str | None
    holder_name: str
    holder_phone: str
    staff_role: str | None
    valid_from: datetime
    valid_until: datetime | None
    time_profile: dict[str, Any] | None
    status: str
    status_at: datetime
    status_by: str
    status_reason: str
    issued_at: datetime
    issued_by: str
    free: bool
    fee_fen: int
    deposit_fen: int
    deposit_state: str
    replaces_id: int | None
    doors: list[str] = field(default_factory=list)
    door_names: list[str] = field(default_factory=list)
    timezone: str = "Asia/Shanghai"


def _rows(session: Session, cards: Sequence[AccessCard], show_uids: bool) -> list[CardRow]:
    if not cards:
        return []
    ids = [c.id for c in cards]
    doors: dict[int, list[tuple[str, str]]] = {}
    for card_id, code, name in session.execute(
        select(AccessCardDoor.card_id, AccessDoor.code, AccessDoor.name)
        .join(AccessDoor, AccessDoor.id == AccessCardDoor.door_id)
        .where(AccessCardDoor.card_id.in_(ids))
        .order_by(AccessDoor.code)
    ):
        doors.setdefault(card_id, []).append((code, name))
    units = {
        uid: (ucode, bcode)
        for uid, ucode, bcode in session.execute(
            select(Unit.id, Unit.code, Building.code)
            .join(Building, Building.id == Unit.building_id)
            .where(Unit.id.in_({c.unit_id for c in cards if c.unit_id is not None}))
        )
    }
    estates = {
        eid: (code, name, tz)
        for eid, code, name, tz in session.execute(
            select(Estate.id, Estate.code, Estate.name, Estate.timezone).where(
                Estate.id.in_({c.estate_id for c in cards})
            )
        )
    }
    out = []
    for c in cards:
        unit_code, building_code = units.get(c.unit_id, (None, None)) if c.unit_id is not None else (None, None)
        ecode, ename, tz = estates[c.estate_id]
        out.append(
            CardRow(
                id=c.id,
                estate_code=ecode,
                estate_name=ename,
                building_code=building_code,
                unit_id=c.unit_id,
                unit_code=unit_code,
                card_type=c.card_type,
                format=c.format,
                uid=c.uid if show_uids else MASK,
                wiegand26=wiegand26(c.uid).printed if show_uids else None,
                wiegand34=wiegand34(c.uid).printed if show_uids else None,
                holder_name=c.holder_name,
                holder_phone=c.holder_phone,
                staff_role=c.staff_role,
                valid_from=c.valid_from,
                valid_until=c.valid_until,
                time_profile=c.time_profile,
                status=c.status,
                status_at=c.status_at,
                status_by=c.status_by,
                status_reason=c.status_reason,
                issued_at=c.issued_at,
                issued_by=c.issued_by,
                free=c.free,
                fee_fen=c.fee_fen,
                deposit_fen=c.deposit_fen,
                deposit_state=c.deposit_state,
                replaces_id=c.replaces_id,
                doors=[code for code, _ in doors.get(c.id, [])],
                door_names=[name for _, name in doors.get(c.id, [])],
                timezone=tz,
            )
        )
    return out


def _register_stmt(
    estate_id: int, q: str | None, statuses: Collection[str] | None, card_type: str | None, show_uids: bool
) -> Select[Any]:
    stmt = (
        select(AccessCard)
        .outerjoin(Unit, Unit.id == AccessCard.unit_id)
        .where(AccessCard.estate_id == estate_id)
        .order_by(AccessCard.issued_at.desc(), AccessCard.id.desc())
    )
    if statuses:
        stmt = stmt.where(AccessCard.status.in_(list(statuses)))
    if card_type:
        stmt = stmt.where(AccessCard.card_type == card_type)
    text = (q or "").strip()
    if text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        uid = "".join(ch for ch in text if ch not in " :-").upper()
        uid_match = AccessCard.uid.contains(uid, autoescape=True) if show_uids and uid else false()
        stmt = stmt.where(
            or_(Unit.code.ilike(like, escape="\\"), AccessCard.holder_name.ilike(like, escape="\\"), uid_match)
        )
    return stmt


def register(
    session: Session,
    estate_id: int,
    *,
    q: str | None = None,
    statuses: Collection[str] | None = None,
    card_type: str | None = None,
    show_uids: bool,
    limit: int = 100,
    offset: int = 0,
) -> Paged[CardRow]:
    """The estate's cards, newest first; `q` matches a unit code, a holder's name or (for UID readers) a UID."""
    stmt = _register_stmt(estate_id, q, statuses, card_type, show_uids)
    page = fetch_page(session, stmt, limit=limit, offset=offset)
    return Paged(items=_rows(session, list(page.items), show_uids), total=page.total)


def card(session: Session, card_id: int, visible: Collection[int], *, show_uids: bool) -> CardRow | None:
    """One card of the caller's estates (None for another estate's, as for a missing one)."""
    row = session.scalars(
        select(AccessCard).where(AccessCard.id == card_id, AccessCard.estate_id.in_(list(visible)))
    ).one_or_none()
    return _rows(session, [row], show_uids)[0] if row is not None else None


@dataclass(frozen=True)
class Household:
    estate_code: str
    unit_id: int
    unit_code: str
    building_code: str
    registered_occupants: int
    free_allowed: int
    free_used: int
    free_left: int
    next_fee_fen: int
    residents: list[tuple[str, str]]  # (name, role) of the registered residents, for the issue form
    cards: list[CardRow]


def estate_id_by_code(session: Session, code: str) -> int | None:
    return session.scalar(select(Estate.id).where(Estate.code == code))


def unit_id_by_code(session: Session, estate_id: int, unit_code: str) -> int | None:
    return session.scalar(
        select(Unit.id)
        .join(Building, Building.id == Unit.building_id)
        .where(Building.estate_id == estate_id, Unit.code == unit_code)
    )


def household(session: Session, estate_id: int, unit_code: str, *, show_uids: bool) -> Household | None:
    """A household's cards (every status, newest first) with its free quota."""
    unit_id = unit_id_by_code(session, estate_id, unit_code)
    if unit_id is None:
        return None
    q = service.quota(session, unit_id)
    building_code = session.scalars(
        select(Building.code).join(Unit, Unit.building_id == Building.id).where(Unit.id == unit_id)
    ).one()
    estate_code = session.scalars(select(Estate.code).where(Estate.id == estate_id)).one()
    cards = session.scalars(
        select(AccessCard)
        .where(AccessCard.unit_id == unit_id)
        .order_by(AccessCard.issued_at.desc(), AccessCard.id.desc())
    ).all()
    residents = [
        (name, role)
        for name, role in session.execute(
            select(Resident.name, Resident.role).where(Resident.unit_id == unit_id).order_by(Resident.id)
        )
    ]
    return Household(
        estate_code=estate_code,
        unit_id=unit_id,
        unit_code=unit_code,
        building_code=building_code,
        registered_occupants=q.registered_occupants,
        free_allowed=q.free_allowed,
        free_used=q.free_used,
        free_left=q.free_left,
        next_fee_fen=q.next_fee_fen,
        residents=residents,
        cards=_rows(session, list(cards), show_uids),
    )


def live_statuses() -> list[str]:
    return [CardStatus.active.value]


def card_types() -> list[str]:
    return [t.value for t in CardType]


# --- the swipe log (PIPL Art. 28: whereabouts; card_admin and admin only, every read audited by the caller) -------


@dataclass(frozen=True)
class SwipeRow:
    ts: datetime
    controller: str  # the door controller's device code
    door: str
    card_uid: str
    granted: bool
    reason: str | None
    card_id: int | None  # the latest card of the estate with this UID, if any
    holder_name: str | None
    unit_code: str | None


def swipes(
    session: Session,
    estate_id: int,
    *,
    door: str | None = None,
    card_uid: str | None = None,
    granted: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Paged[SwipeRow]:
    """Swipes at the estate's controllers, newest first, filtered by door, card UID, outcome and time."""
    latest = (
        select(AccessCard.uid, func.max(AccessCard.id).label("card_id"))
        .where(AccessCard.estate_id == estate_id)
        .group_by(AccessCard.uid)
        .subquery()
    )
    stmt = (
        select(
            AccessEvent.ts,
            Device.code,
            AccessEvent.door,
            AccessEvent.card_uid,
            AccessEvent.granted,
            AccessEvent.reason,
            latest.c.card_id,
        )
        .join(Device, Device.id == AccessEvent.controller_id)
        .outerjoin(latest, latest.c.uid == AccessEvent.card_uid)
        .where(Device.estate_id == estate_id)
    )
    if door:
        stmt = stmt.where(AccessEvent.door == door)
    if card_uid:
        stmt = stmt.where(AccessEvent.card_uid == "".join(ch for ch in card_uid if ch not in " :-").upper())
    if granted is not None:
        stmt = stmt.where(AccessEvent.granted.is_(granted))
    if since is not None:
        stmt = stmt.where(AccessEvent.ts >= since)
    if until is not None:
        stmt = stmt.where(AccessEvent.ts < until)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(stmt.order_by(AccessEvent.ts.desc()).limit(limit).offset(offset)).all()
    ids = {r[6] for r in rows if r[6] is not None}
    holders = {
        cid: (name, ucode)
        for cid, name, ucode in session.execute(
            select(AccessCard.id, AccessCard.holder_name, Unit.code)
            .outerjoin(Unit, Unit.id == AccessCard.unit_id)
            .where(AccessCard.id.in_(ids))
        )
    }
    items = [
        SwipeRow(ts, ctrl, d, uid, ok, reason, cid, *holders.get(cid, (None, None)))
        for ts, ctrl, d, uid, ok, reason, cid in rows
    ]
    return Paged(items=items, total=int(total))


# --- controller sync (access/sync.py) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerSyncRow:
    """One door controller's whitelist sync: 待同步 (pending) while the applied version is behind the desired one."""

    controller_id: int
    estate_code: str
    code: str
    name: str
    doors: list[str]
    desired_version: int
    applied_version: int
    pending: bool
    pending_since: datetime | None  # behind since (None: synced)
    applied_at: datetime | None  # when the controller acknowledged the applied version
    last_full_at: datetime | None  # the last full snapshot sent
    reported_version: int | None  # what the controller itself last reported (status on reconnect, an answer)
    reported_at: datetime | None
    reported_matches: bool | None  # its reported list is the desired one (None: no report, or another version)


def controller_sync(
    session: Session,
    visible: Collection[int],
    *,
    estate_id: int | None = None,
    controller_ids: Collection[int] | None = None,
) -> list[ControllerSyncRow]:
    """The sync state of the door controllers in the visible estates (one estate, or these controllers), by code.

    A controller the sync job has not reached yet shows as pending at version 0."""
    stmt = (
        select(Device, Estate.code, AccessControllerSync, DeviceWhitelistState)
        .join(Estate, Estate.id == Device.estate_id)
        .outerjoin(AccessControllerSync, AccessControllerSync.controller_id == Device.id)
        .outerjoin(DeviceWhitelistState, DeviceWhitelistState.device_id == Device.id)
        .where(Device.kind == CONTROLLER_KIND, Device.estate_id.in_(list(visible)))
        .order_by(Estate.code, Device.code)
    )
    if estate_id is not None:
        stmt = stmt.where(Device.estate_id == estate_id)
    if controller_ids is not None:
        stmt = stmt.where(Device.id.in_(list(controller_ids)))
    rows = session.execute(stmt).all()
    doors: dict[int, list[str]] = {}
    if rows:
        for cid, code in session.execute(
            select(AccessDoor.controller_id, AccessDoor.code)
            .where(AccessDoor.controller_id.in_([r[0].id for r in rows]))
            .order_by(AccessDoor.code)
        ):
            doors.setdefault(cid, []).append(code)
    out = []
    for device, estate_code, s, rep in rows:
        desired = s.desired_version if s is not None else 0
        applied = s.applied_version if s is not None else 0
        pending = s is None or applied < desired or s.full_requested
        matches = None
        if s is not None and rep is not None and rep.version == s.desired_version:
            matches = rep.digest == s.desired_digest
        out.append(
            ControllerSyncRow(
                controller_id=device.id,
                estate_code=estate_code,
                code=device.code,
                name=device.name or device.code,
                doors=doors.get(device.id, []),
                desired_version=desired,
                applied_version=applied,
                pending=pending,
                pending_since=s.pending_since if s is not None else None,
                applied_at=s.applied_at if s is not None else None,
                last_full_at=s.last_full_at if s is not None else None,
                reported_version=rep.version if rep is not None else None,
                reported_at=rep.reported_at if rep is not None else None,
                reported_matches=matches,
            )
        )
    return out


def controllers_of_card(session: Session, card_id: int) -> list[int]:
    """The controllers of a card's doors (their sync state shows on the card page)."""
    return sorted(
        set(
            session.scalars(
                select(AccessDoor.controller_id)
                .join(AccessCardDoor, AccessCardDoor.door_id == AccessDoor.id)
                .where(AccessCardDoor.card_id == card_id)
            )
        )
    )
