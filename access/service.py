"""Card services: issue, report lost (+ replacement), return, revoke, move-out, automatic expiry.

Every function takes a Session and plain values, flushes and never commits (the caller owns the transaction),
and writes the audit log. A card's validity rests on its own row alone: status, validity window, doors and
time profile. Fees and deposits are recorded in the billing ledger (billing/fees.py) but nothing here ever
reads a balance or arrears, so no debt can switch a card off (domain-defaults §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access import doors as door_rules
from access import sync
from access.const import (
    EXTRA_CARD_FEE_FEN,
    EXTRA_CARD_FEE_KEY,
    FREE_CARDS_MAX,
    HOUSEHOLD_TYPES,
    RENOVATION_DEPOSIT_FEN,
    RENOVATION_DEPOSIT_KEY,
    RENOVATION_FEE_FEN,
    RENOVATION_FEE_KEY,
    RENOVATION_GRACE_DAYS,
    RENOVATION_GRACE_KEY,
    SYSTEM_ACTOR,
    UID_HEX_DIGITS,
    VISITOR_MAX,
    CardFormat,
    CardStatus,
    CardType,
    DepositState,
)
from access.profile import RENOVATION_HOURS, TimeProfile
from billing import fees
from billing.const import PaymentMethod
from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from core.roles import Role
from storage.models import AccessCard, AccessCardDoor, AccessDoor, AuditLog, Building, Estate, Resident, Unit


def audit(session: Session, actor: str, action: str, card: AccessCard, detail: dict[str, Any] | None = None) -> None:
    """Append to the shared audit log (access may not import its sibling accounts/, so it writes the row itself).

    The detail names the card, its type and unit, never the holder's name or phone."""
    base = {"card_type": card.card_type, "unit_id": card.unit_id, "estate_id": card.estate_id, "status": card.status}
    session.add(
        AuditLog(
            actor=actor, action=action, object=f"access_card:{card.id}", detail=base | (detail or {}), at=clock.now()
        )
    )


def audit_swipe_read(session: Session, actor: str, estate_id: int, filters: dict[str, Any], rows: int) -> None:
    """Every read of the swipe log is recorded (PIPL Art. 28: whereabouts are sensitive personal information)."""
    detail = {"filters": filters, "rows": rows}
    session.add(
        AuditLog(actor=actor, action="access.swipes.read", object=f"estate:{estate_id}", detail=detail, at=clock.now())
    )


def normalise_uid(uid: str, card_format: CardFormat | str) -> str:
    """The UID as uppercase hex, as read (separators a reader or a clerk types — spaces, ':' and '-' — dropped)."""
    fmt = CardFormat(card_format)
    clean = "".join(ch for ch in uid.strip() if ch not in " :-").upper()
    if not clean or any(ch not in "0123456789ABCDEF" for ch in clean):
        raise InvalidInput(f"card UID {uid!r} is not hexadecimal / 卡号须为十六进制")
    if len(clean) != UID_HEX_DIGITS[fmt]:
        raise InvalidInput(
            f"a {fmt.value} UID has {UID_HEX_DIGITS[fmt]} hex digits, not {len(clean)} / 卡号位数与卡片类型不符"
        )
    return clean


# --- per-estate settings -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EstateCardSettings:
    timezone: str
    extra_card_fee_fen: int
    renovation_fee_fen: int
    renovation_deposit_fen: int
    renovation_grace: timedelta


def estate_setting(policy: dict[str, Any], key: str, default: int) -> int:
    value = policy.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"estate policy {key} must be a non-negative integer (fen or days) / 小区门禁卡设置有误")
    return value


def settings_of(session: Session, estate_id: int) -> EstateCardSettings:
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound("estate not found / 小区不存在")
    policy = estate.policy or {}
    return EstateCardSettings(
        timezone=estate.timezone,
        extra_card_fee_fen=estate_setting(policy, EXTRA_CARD_FEE_KEY, EXTRA_CARD_FEE_FEN),
        renovation_fee_fen=estate_setting(policy, RENOVATION_FEE_KEY, RENOVATION_FEE_FEN),
        renovation_deposit_fen=estate_setting(policy, RENOVATION_DEPOSIT_KEY, RENOVATION_DEPOSIT_FEN),
        renovation_grace=timedelta(days=estate_setting(policy, RENOVATION_GRACE_KEY, RENOVATION_GRACE_DAYS)),
    )


def end_of_day(day: date, timezone: str) -> datetime:
    """A validity that ends on `day` ends at the next local midnight (the whole day is included)."""
    return datetime.combine(day + timedelta(days=1), time(0, 0), ZoneInfo(timezone))


# --- the household's quota -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quota:
    """Owner, family and tenant cards of one household: free up to min(registered occupants, 3)."""

    registered_occupants: int
    free_allowed: int
    free_used: int  # live free household cards
    extra_card_fee_fen: int

    @property
    def free_left(self) -> int:
        return max(0, self.free_allowed - self.free_used)

    @property
    def next_fee_fen(self) -> int:
        """What the next owner / family / tenant card costs."""
        return 0 if self.free_left else self.extra_card_fee_fen


def quota(session: Session, unit_id: int) -> Quota:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("unit not found / 房屋不存在")
    estate_id = session.scalars(select(Building.estate_id).where(Building.id == unit.building_id)).one()
    used = session.scalar(
        select(func.count())
        .select_from(AccessCard)
        .where(
            AccessCard.unit_id == unit_id,
            AccessCard.status == CardStatus.active,
            AccessCard.free.is_(True),
            AccessCard.card_type.in_([t.value for t in HOUSEHOLD_TYPES]),
        )
    )
    return Quota(
        registered_occupants=unit.registered_occupants,
        free_allowed=min(unit.registered_occupants, FREE_CARDS_MAX),
        free_used=int(used or 0),
        extra_card_fee_fen=settings_of(session, estate_id).extra_card_fee_fen,
    )


# --- issue ---------------------------------------------------------------------------------------------------


def _unit_in_estate(session: Session, estate_id: int, unit_id: int) -> Unit:
    # Row lock on the unit: two desks issuing to one household count the quota one after the other.
    unit = session.scalars(
        select(Unit)
        .join(Building, Building.id == Unit.building_id)
        .where(Unit.id == unit_id, Building.estate_id == estate_id)
        .with_for_update(of=Unit)
    ).one_or_none()
    if unit is None:
        raise NotFound("unit not found / 房屋不存在")
    return unit


def _lease_end(session: Session, unit_id: int) -> date | None:
    return session.scalar(
        select(func.max(Resident.lease_end)).where(Resident.unit_id == unit_id, Resident.role == "tenant")
    )


def _validity(
    session: Session,
    settings: EstateCardSettings,
    card_type: CardType,
    unit: Unit | None,
    valid_from: datetime,
    valid_until: datetime | date | None,
) -> datetime | None:
    until = (
        end_of_day(valid_until, settings.timezone)
        if isinstance(valid_until, date) and not isinstance(valid_until, datetime)
        else valid_until
    )
    if isinstance(until, datetime) and until.tzinfo is None:
        raise InvalidInput("valid_until needs a timezone / 有效期须带时区")
    if card_type == CardType.tenant:
        lease = _lease_end(session, unit.id) if unit is not None else None
        lease_until = end_of_day(lease, settings.timezone) if lease is not None else None
        if until is None:
            until = lease_until
        if until is None:
            raise InvalidInput("a tenant's card ends with the lease: give its end / 租户卡有效期须至租约到期")
        if lease_until is not None and until > lease_until:
            raise InvalidInput("a tenant's card may not outlast the lease / 租户卡有效期不得超过租约")
    elif card_type == CardType.renovation:
        if until is None:
            raise InvalidInput("a renovation pass ends with the permit: give its end / 装修出入证须填写装修许可到期日")
    elif card_type == CardType.visitor:
        if until is None:
            until = valid_from + VISITOR_MAX
        if until - valid_from > VISITOR_MAX:
            raise InvalidInput("a visitor's card is valid for at most 24 hours / 访客卡有效期不超过24小时")
    if until is not None and until <= valid_from:
        raise InvalidInput("the validity must end after it starts / 有效期结束须晚于开始")
    return until


def _uid_free(session: Session, card_format: CardFormat, uid: str) -> None:
    holder = session.scalar(
        select(AccessCard.id).where(
            AccessCard.format == card_format, AccessCard.uid == uid, AccessCard.status == CardStatus.active
        )
    )
    if holder is not None:
        raise Conflict(f"card {uid} is already live (card {holder}); return or revoke it first / 该卡正在使用中")


def issue(
    session: Session,
    *,
    estate_id: int,
    card_type: CardType | str,
    uid: str,
    card_format: CardFormat | str = CardFormat.mifare4,
    holder_name: str,
    holder_phone: str = "",
    unit_id: int | None = None,
    staff_role: str | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | date | None = None,
    door_codes: Sequence[str] | None = None,
    time_profile: TimeProfile | None = None,
    actor: str,
    method: PaymentMethod | str = PaymentMethod.counter,
    note: str = "",
    replaces: AccessCard | None = None,
    sync_controllers: bool = True,
) -> AccessCard:
    """Issue a card with the 《智能卡发放登记表》 fields; charge it when the household's free quota is used up.

    Owner, family and tenant cards are free up to min(registered occupants, 3) live free cards and cost the
    estate's extra-card fee beyond; a renovation pass costs its fee and a deposit; visitors and staff nothing.
    Without `door_codes` the card gets its type's default doors (access/doors.py). The whitelist change to its
    controllers is queued in the same transaction (access/sync.py; ``sync_controllers=False``: the caller does)."""
    kind = CardType(card_type)
    fmt = CardFormat(card_format)
    uid = normalise_uid(uid, fmt)
    holder = holder_name.strip()
    if not holder:
        raise InvalidInput("the holder's name is required / 须填写持卡人")
    if not actor.strip():
        raise InvalidInput("the issuer is required / 须填写发卡人")
    settings = settings_of(session, estate_id)
    now = clock.now()
    start = valid_from or now
    if start.tzinfo is None:
        raise InvalidInput("valid_from needs a timezone / 有效期须带时区")

    unit: Unit | None = None
    if kind == CardType.staff:
        if unit_id is not None:
            raise InvalidInput("a staff card belongs to no unit / 员工卡不属于房屋")
        if staff_role not in {r.value for r in Role}:
            raise InvalidInput("a staff card needs the holder's role / 员工卡须填写岗位角色")
    else:
        if unit_id is None:
            raise InvalidInput("a resident's card belongs to a unit / 住户卡须指定房屋")
        if staff_role is not None:
            raise InvalidInput("only staff cards have a role / 仅员工卡填写岗位")
        unit = _unit_in_estate(session, estate_id, unit_id)
    until = _validity(session, settings, kind, unit, start, valid_until)

    if door_codes is None:
        door_rules.sync_doors(session, estate_id)
        scope = door_rules.default_doors(session, estate_id, kind, unit, staff_role)
    else:
        scope = door_rules.doors_by_code(session, estate_id, door_codes)
    if not scope:
        raise InvalidInput("the card would open no door: the estate has no doors of its kind / 该卡无可授权的门禁点")
    profile = time_profile if time_profile is not None else (RENOVATION_HOURS if kind == CardType.renovation else None)

    free, fee, deposit = True, 0, 0
    if kind in HOUSEHOLD_TYPES:
        assert unit is not None
        q = quota(session, unit.id)
        free, fee = q.free_left > 0, q.next_fee_fen
    elif kind == CardType.renovation:
        free, fee, deposit = False, settings.renovation_fee_fen, settings.renovation_deposit_fen

    _uid_free(session, fmt, uid)
    card = AccessCard(
        estate_id=estate_id,
        unit_id=unit.id if unit is not None else None,
        card_type=kind.value,
        format=fmt.value,
        uid=uid,
        holder_name=holder,
        holder_phone=holder_phone.strip(),
        staff_role=staff_role,
        valid_from=start,
        valid_until=until,
        time_profile=profile.as_json() if profile is not None else None,
        status=CardStatus.active.value,
        status_at=now,
        status_by=actor,
        issued_at=now,
        issued_by=actor,
        free=free,
        fee_fen=fee,
        deposit_fen=deposit,
        deposit_state=DepositState.held.value if deposit else DepositState.none.value,
        replaces_id=replaces.id if replaces is not None else None,
        note=note,
    )
    session.add(card)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent issue of the same UID won the race
        raise Conflict(f"card {uid} is already live / 该卡正在使用中") from exc
    session.add_all([AccessCardDoor(card_id=card.id, door_id=d.id) for d in scope])
    what = f"card {card.id} ({kind.value}, {uid})"
    if fee:
        fees.post_fee(
            session,
            estate_id=estate_id,
            amount_fen=fee,
            reference=f"access_card:{card.id}",
            actor=actor,
            at=now,
            reason=f"门禁卡工本费 {what}",
            method=method,
        )
    if deposit:
        fees.hold_deposit(
            session,
            estate_id=estate_id,
            amount_fen=deposit,
            reference=f"access_card:{card.id}",
            actor=actor,
            at=now,
            reason=f"装修出入证押金 {what}",
            method=method,
        )
    session.flush()
    detail = {
        "doors": [d.code for d in scope],
        "valid_from": start.isoformat(),
        "valid_until": until.isoformat() if until else None,
        "fee_fen": fee,
        "deposit_fen": deposit,
        "free": free,
    }
    if replaces is not None:
        detail["replaces"] = replaces.id
    audit(session, actor, "access.card.replace" if replaces is not None else "access.card.issue", card, detail)
    if sync_controllers:
        sync.sync_cards(session, [card.id], now)
    return card


# --- lost, return, revoke, move-out ----------------------------------------------------------------------------


def get_card(session: Session, card_id: int, *, lock: bool = False) -> AccessCard:
    stmt = select(AccessCard).where(AccessCard.id == card_id)
    if lock:
        stmt = stmt.with_for_update()
    card = session.scalars(stmt).one_or_none()
    if card is None:
        raise NotFound("card not found / 卡不存在")
    return card


def door_codes_of(session: Session, card_id: int) -> list[str]:
    return list(
        session.scalars(
            select(AccessDoor.code)
            .join(AccessCardDoor, AccessCardDoor.door_id == AccessDoor.id)
            .where(AccessCardDoor.card_id == card_id)
            .order_by(AccessDoor.code)
        )
    )


def _end(session: Session, card: AccessCard, status: CardStatus, actor: str, reason: str) -> None:
    card.status, card.status_at, card.status_by, card.status_reason = status.value, clock.now(), actor, reason
    session.flush()


def _settle_deposit(session: Session, card: AccessCard, *, keep: bool, actor: str, method: PaymentMethod | str) -> None:
    if card.deposit_state != DepositState.held:
        return
    ref, at = f"access_card:{card.id}", clock.now()
    if keep:
        fees.forfeit_deposit(
            session,
            estate_id=card.estate_id,
            amount_fen=card.deposit_fen,
            reference=ref,
            actor=actor,
            at=at,
            reason=f"装修出入证押金不予退还 card {card.id}",
        )
        card.deposit_state = DepositState.forfeited.value
    else:
        fees.refund_deposit(
            session,
            estate_id=card.estate_id,
            amount_fen=card.deposit_fen,
            reference=ref,
            actor=actor,
            at=at,
            reason=f"装修出入证押金退还 card {card.id}",
            method=method,
        )
        card.deposit_state = DepositState.refunded.value
    session.flush()
    audit(session, actor, "access.deposit." + ("forfeit" if keep else "refund"), card, {"amount_fen": card.deposit_fen})


def _active(card: AccessCard) -> None:
    if card.status != CardStatus.active:
        raise Conflict(f"card {card.id} is {card.status}, not active / 该卡当前状态不可操作")


@dataclass(frozen=True, slots=True)
class LostResult:
    lost: AccessCard
    replacement: AccessCard | None


def report_lost(
    session: Session,
    card_id: int,
    *,
    actor: str,
    replacement_uid: str | None = None,
    replacement_format: CardFormat | str | None = None,
    method: PaymentMethod | str = PaymentMethod.counter,
) -> LostResult:
    """挂失: the card is `lost` at once (off every whitelist); with a new UID a replacement with the same holder,
    doors, time profile and end of validity is issued (charged by the issue rules: a lost card frees its free
    slot; a renovation pass's deposit is kept and the new pass pays its own)."""
    card = get_card(session, card_id, lock=True)
    _active(card)
    if replacement_uid is not None:
        # Refuse a bad or live replacement UID before anything changes (the clerk may report it lost without one).
        fmt = CardFormat(replacement_format or card.format)
        _uid_free(session, fmt, normalise_uid(replacement_uid, fmt))
    _end(session, card, CardStatus.lost, actor, "reported lost / 挂失")
    audit(session, actor, "access.card.lost", card)
    _settle_deposit(session, card, keep=True, actor=actor, method=method)
    replacement = None
    if replacement_uid is not None:
        replacement = issue(
            session,
            estate_id=card.estate_id,
            card_type=card.card_type,
            uid=replacement_uid,
            card_format=replacement_format or card.format,
            holder_name=card.holder_name,
            holder_phone=card.holder_phone,
            unit_id=card.unit_id,
            staff_role=card.staff_role,
            valid_until=card.valid_until,
            door_codes=door_codes_of(session, card.id),
            time_profile=TimeProfile.model_validate(card.time_profile) if card.time_profile else None,
            actor=actor,
            method=method,
            replaces=card,
            sync_controllers=False,
        )
    # One change per controller: the lost card off, its replacement on.
    sync.sync_cards(session, [card.id] + ([replacement.id] if replacement else []), clock.now())
    return LostResult(card, replacement)


def return_card(
    session: Session, card_id: int, *, actor: str, method: PaymentMethod | str = PaymentMethod.counter
) -> AccessCard:
    """退卡: an active or expired card handed back; a renovation pass's deposit is refunded when it is back by
    the permit's end + the estate's grace days, kept otherwise (seeds/004)."""
    card = get_card(session, card_id, lock=True)
    if card.status not in {CardStatus.active, CardStatus.expired, CardStatus.revoked}:
        raise Conflict(f"card {card.id} is {card.status}: it cannot be returned / 该卡当前状态不可退卡")
    _end(session, card, CardStatus.returned, actor, "returned / 退卡")
    audit(session, actor, "access.card.return", card)
    grace = settings_of(session, card.estate_id).renovation_grace
    late = card.valid_until is not None and clock.now() > card.valid_until + grace
    _settle_deposit(session, card, keep=late, actor=actor, method=method)
    sync.sync_cards(session, [card.id], clock.now())
    return card


def revoke(session: Session, card_id: int, *, actor: str, reason: str) -> AccessCard:
    """注销 a live card (it stays in the register; its deposit, if any, waits for the pass to come back)."""
    card = get_card(session, card_id, lock=True)
    _active(card)
    if not reason.strip():
        raise InvalidInput("a reason is required / 须填写原因")
    _end(session, card, CardStatus.revoked, actor, reason.strip())
    audit(session, actor, "access.card.revoke", card, {"reason": reason.strip()})
    sync.sync_cards(session, [card.id], clock.now())
    return card


def move_out(session: Session, unit_id: int, *, actor: str) -> list[AccessCard]:
    """迁出: every live card of the unit is revoked at once."""
    cards = list(
        session.scalars(
            select(AccessCard)
            .where(AccessCard.unit_id == unit_id, AccessCard.status == CardStatus.active)
            .order_by(AccessCard.id)
            .with_for_update()
        )
    )
    for card in cards:
        _end(session, card, CardStatus.revoked, actor, "move-out / 迁出")
        audit(session, actor, "access.card.revoke", card, {"reason": "move-out"})
    sync.sync_cards(session, [c.id for c in cards], clock.now())
    return cards


# --- expiry (the access_expiry worker job) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    expired: list[int]
    deposits_forfeited: list[int]


def expire_due(session: Session, now: datetime) -> ExpiryResult:
    """Expire every live card whose validity ended, and keep the deposit of every renovation pass not returned
    by its permit's end + grace. Idempotent: a second run finds nothing."""
    due = list(
        session.scalars(
            select(AccessCard)
            .where(AccessCard.status == CardStatus.active, AccessCard.valid_until <= now)
            .order_by(AccessCard.id)
            .with_for_update(skip_locked=True)
        )
    )
    for card in due:
        card.status, card.status_at, card.status_by, card.status_reason = (
            CardStatus.expired.value,
            now,
            SYSTEM_ACTOR,
            "validity ended / 有效期届满",
        )
        audit(
            session,
            SYSTEM_ACTOR,
            "access.card.expire",
            card,
            {"valid_until": card.valid_until.isoformat() if card.valid_until else None},
        )
    session.flush()
    # Controllers check a card's end themselves; the list still drops it so it stays short and matches the register.
    sync.sync_cards(session, [c.id for c in due], now)
    held = session.scalars(
        select(AccessCard)
        .where(AccessCard.deposit_state == DepositState.held, AccessCard.valid_until <= now)
        .order_by(AccessCard.id)
        .with_for_update(skip_locked=True)
    )
    forfeited = []
    grace: dict[int, timedelta] = {}
    for card in held:
        if card.estate_id not in grace:
            grace[card.estate_id] = settings_of(session, card.estate_id).renovation_grace
        assert card.valid_until is not None
        if now > card.valid_until + grace[card.estate_id]:
            _settle_deposit(session, card, keep=True, actor=SYSTEM_ACTOR, method=PaymentMethod.counter)
            forfeited.append(card.id)
    return ExpiryResult([c.id for c in due], forfeited)
