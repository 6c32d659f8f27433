"""Access cards: the card register with search, a household's cards and quota, issue, report lost (with a
replacement), return, move-out, one card (issue 12).

Every route takes its permission from access/policy.py (the pages ask it too). A card or estate of an estate the
caller does not act on is 404, like one that does not exist. Stewards and project managers read the register
without card numbers (masked "********"); only card_admin and admin see and search UIDs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.orm import Session

from access import policy, queries, service
from access.const import CardFormat, CardStatus, CardType
from access.policy import Action
from access.profile import TimeProfile
from api.deps import EstateCode, ObjectId, PageDep
from api.routes.billing import Day
from api.routes.rounds import Time
from api.routes.tickets import BodyTime
from api.schemas import NO_NUL, Input, Page
from core.errors import NotFound
from core.roles import Role
from storage.models import StaffUser
from web.deps import CurrentUser, SessionDep, VisibleEstates
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/access", tags=["access cards"], responses=error_responses(401, 403, 404, 422))
CHANGES = error_responses(400, 409)  # 400: a body that is not JSON; 409: the card's state or a live UID


def _allowed(action: Action) -> Any:
    def check(user: CurrentUser) -> StaffUser:
        if not policy.may(user.role, action):
            raise Forbidden("your role may not do this / 当前角色无此权限")
        return user

    return Depends(check)


Readers = Annotated[StaffUser, _allowed(Action.view_register)]
SwipeReaders = Annotated[StaffUser, _allowed(Action.read_swipes)]
Desk = Annotated[StaffUser, _allowed(Action.manage_cards)]
SyncReaders = Annotated[StaffUser, _allowed(Action.view_sync)]
UnitCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9-]{1,32}$")]
UnitPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,32}$", description="unit code, e.g. 3-1-1201")]
Uid = Annotated[
    str,
    Field(min_length=8, max_length=40, pattern=r"^[0-9A-Fa-f :-]+$", description="hex as read, e.g. 04A1B2C3 (4-byte)"),
]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*\S[^\x00]*$")]
Method = Literal["counter", "bank_transfer", "online"]


# --- I/O models ----------------------------------------------------------------------------------------------------


HHMM = Annotated[str, Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
Window = Annotated[list[HHMM], Field(min_length=2, max_length=2)]


class ProfileIO(BaseModel):
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1, max_length=7, description="1 = Monday")
    windows: list[Window] = Field(
        min_length=1, max_length=8, description='[["08:00", "18:00"]] in the estate\'s time, end exclusive'
    )

    @model_validator(mode="after")
    def _forward(self) -> ProfileIO:
        # The same rule as access.profile.TimeProfile, checked here so a bad window is a 422, not a 500.
        if any(start >= end for start, end in self.windows):
            raise ValueError("a window must end after it starts / 时段结束须晚于开始")
        return self


class CardOut(BaseModel):
    id: int
    estate_code: str
    building_code: str | None
    unit_code: str | None
    card_type: str = Field(description="owner | family | tenant | renovation | visitor | staff")
    format: str = Field(description="mifare4 | mifare7 | em4100")
    uid: str = Field(description='uppercase hex as read; "********" for roles that may not see card numbers')
    wiegand26: str | None = Field(description='"FFF,NNNNN"; null when the UID is masked')
    wiegand34: str | None
    holder_name: str
    holder_phone: str
    staff_role: str | None
    valid_from: datetime
    valid_until: datetime | None = Field(description="null: until revoked")
    time_profile: ProfileIO | None = Field(description="weekly days and windows; null: at any time")
    status: str = Field(description="active | lost | revoked | expired | returned")
    status_at: datetime
    status_by: str
    status_reason: str
    issued_at: datetime
    issued_by: str
    free: bool = Field(description="within the household's free quota")
    fee_fen: int
    deposit_fen: int
    deposit_state: str = Field(description="none | held | refunded | forfeited")
    replaces_id: int | None
    doors: list[str]


class HouseholdOut(BaseModel):
    estate_code: str
    unit_code: str
    building_code: str
    registered_occupants: int
    free_allowed: int = Field(description="min(registered occupants, 3)")
    free_used: int
    free_left: int
    next_fee_fen: int = Field(description="what the next owner / family / tenant card costs")
    cards: list[CardOut]


# Strict models take no strings for enums: these accept their values.
CardTypeIn = Annotated[CardType, Field(strict=False)]
FormatIn = Annotated[CardFormat, Field(strict=False)]
RoleIn = Annotated[Role, Field(strict=False)]


class IssueIn(Input):
    card_type: CardTypeIn
    uid: Uid
    format: FormatIn = CardFormat.mifare4
    holder_name: Name
    holder_phone: str = Field(default="", max_length=32, pattern=r"^[0-9+ -]*$")
    unit_code: UnitCode | None = Field(default=None, description="every card but a staff card belongs to a unit")
    staff_role: RoleIn | None = Field(default=None, description="staff cards: the role whose doors they open")
    valid_from: BodyTime | None = None
    valid_until: BodyTime | None = Field(default=None, description="an instant; or valid_until_date")
    valid_until_date: Day | None = Field(
        default=None,
        description="the last day (estate time) of the lease or renovation permit, YYYY-MM-DD",
    )
    doors: list[Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]] | None = Field(
        default=None, max_length=200, description="door codes; omitted: the type's default doors"
    )
    time_profile: ProfileIO | None = None
    method: Method = Field(default="counter", description="how a fee or deposit is paid")
    note: str = Field(default="", max_length=500, pattern=NO_NUL)

    @model_validator(mode="after")
    def _one_end(self) -> IssueIn:
        if self.valid_until is not None and self.valid_until_date is not None:
            raise ValueError("give valid_until or valid_until_date, not both")
        return self


class LostIn(Input):
    replacement_uid: Uid | None = Field(default=None, description="the new card's UID: a replacement is issued")
    replacement_format: FormatIn | None = None
    method: Method = "counter"


class LostOut(BaseModel):
    lost: CardOut
    replacement: CardOut | None


class SwipeOut(BaseModel):
    ts: datetime
    controller: str = Field(description="the door controller's device code")
    door: str
    card_uid: str
    granted: bool
    reason: str | None = Field(description="the controller's reason for a denial, e.g. not_in_acl")
    card_id: int | None = Field(description="the latest card of the estate with this UID; null: unknown card")
    holder_name: str | None
    unit_code: str | None


class ControllerSyncOut(BaseModel):
    controller_id: int
    estate_code: str
    code: str = Field(description="the door controller's device code")
    name: str
    doors: list[str]
    desired_version: int = Field(description="the whitelist version the platform last sent")
    applied_version: int = Field(description="the version the controller acknowledged applying")
    pending: bool = Field(description="待同步: the controller does not hold the desired list yet")
    pending_since: datetime | None = Field(description="behind since; null when synced")
    applied_at: datetime | None
    last_full_at: datetime | None = Field(description="when the last full snapshot was sent")
    reported_version: int | None = Field(description="the version in the controller's own last report")
    reported_at: datetime | None
    reported_matches: bool | None = Field(description="its reported list is the desired one (null: not known)")


class ReturnIn(Input):
    method: Method = Field(default="counter", description="how a renovation deposit is paid back")


# --- helpers -------------------------------------------------------------------------------------------------------


def _estate_id(session: Session, code: str, visible: set[int]) -> int:
    estate_id = queries.estate_id_by_code(session, code)
    if estate_id is None or estate_id not in visible:
        raise NotFound("estate not found / 未找到该小区")
    return estate_id


def _unit_id(session: Session, estate_id: int, unit_code: str) -> int:
    unit_id = queries.unit_id_by_code(session, estate_id, unit_code)
    if unit_id is None:
        raise NotFound("unit not found / 房屋不存在")
    return unit_id


def _card(session: Session, card_id: int, visible: set[int], user: StaffUser) -> queries.CardRow:
    row = queries.card(session, card_id, visible, show_uids=policy.may(user.role, Action.view_uids))
    if row is None:
        raise NotFound("card not found / 卡不存在")
    return row


def _out(row: queries.CardRow) -> CardOut:
    return CardOut.model_validate(row.__dict__)


# --- routes --------------------------------------------------------------------------------------------------------


@router.get("/estates/{code}/cards", response_model=Page[CardOut])
def list_cards(
    code: EstateCode,
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=64, pattern=NO_NUL, description="unit code, holder or UID")] = None,
    status: Annotated[list[CardStatus] | None, Query(description="only these statuses")] = None,
    card_type: Annotated[CardType | None, Query()] = None,
) -> dict[str, Any]:
    """The card register of an estate, newest first; search by unit, holder or (card_admin, admin) UID."""
    estate_id = _estate_id(session, code, visible)
    paged = queries.register(
        session,
        estate_id,
        q=q,
        statuses=[s.value for s in status] if status else None,
        card_type=card_type.value if card_type else None,
        show_uids=policy.may(user.role, Action.view_uids),
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": [_out(r) for r in paged.items], "total": paged.total, "limit": page.limit, "offset": page.offset}


@router.post("/estates/{code}/cards", response_model=CardOut, status_code=201, responses=CHANGES)
def issue_card(code: EstateCode, session: SessionDep, user: Desk, visible: VisibleEstates, payload: IssueIn) -> CardOut:
    """Issue a card (the 《智能卡发放登记表》 record); charged when the household's free quota is used up."""
    estate_id = _estate_id(session, code, visible)
    unit_id = _unit_id(session, estate_id, payload.unit_code) if payload.unit_code else None
    until: datetime | date | None = payload.valid_until if payload.valid_until is not None else payload.valid_until_date
    profile = TimeProfile.model_validate(payload.time_profile.model_dump()) if payload.time_profile else None
    card = service.issue(
        session,
        estate_id=estate_id,
        card_type=payload.card_type,
        uid=payload.uid,
        card_format=payload.format,
        holder_name=payload.holder_name,
        holder_phone=payload.holder_phone,
        unit_id=unit_id,
        staff_role=payload.staff_role.value if payload.staff_role else None,
        valid_from=payload.valid_from,
        valid_until=until,
        door_codes=payload.doors,
        time_profile=profile,
        actor=user.username,
        method=payload.method,
        note=payload.note,
    )
    return _out(_card(session, card.id, visible, user))


@router.get("/estates/{code}/units/{unit_code}/cards", response_model=HouseholdOut)
def household_cards(
    code: EstateCode, unit_code: UnitPath, session: ReadSessionDep, user: Readers, visible: VisibleEstates
) -> HouseholdOut:
    """A household's cards (every status) with its free quota and the next card's fee."""
    estate_id = _estate_id(session, code, visible)
    h = queries.household(session, estate_id, unit_code, show_uids=policy.may(user.role, Action.view_uids))
    if h is None:
        raise NotFound("unit not found / 房屋不存在")
    return HouseholdOut(**{**h.__dict__, "cards": [_out(c) for c in h.cards]})


@router.post("/estates/{code}/units/{unit_code}/move-out", response_model=list[CardOut], responses=CHANGES)
def move_out(
    code: EstateCode, unit_code: UnitPath, session: SessionDep, user: Desk, visible: VisibleEstates
) -> list[CardOut]:
    """迁出: revoke every live card of the unit at once; returns the cards revoked."""
    estate_id = _estate_id(session, code, visible)
    cards = service.move_out(session, _unit_id(session, estate_id, unit_code), actor=user.username)
    return [_out(_card(session, c.id, visible, user)) for c in cards]


@router.get("/cards/{card_id}", response_model=CardOut)
def get_card(card_id: ObjectId, session: ReadSessionDep, user: Readers, visible: VisibleEstates) -> CardOut:
    """One card with its doors and state."""
    return _out(_card(session, card_id, visible, user))


@router.post("/cards/{card_id}/lost", response_model=LostOut, responses=CHANGES)
def report_lost(
    card_id: ObjectId, session: SessionDep, user: Desk, visible: VisibleEstates, payload: LostIn
) -> LostOut:
    """挂失: the card is lost at once; with `replacement_uid` a replacement with the same doors is issued."""
    _card(session, card_id, visible, user)
    result = service.report_lost(
        session,
        card_id,
        actor=user.username,
        replacement_uid=payload.replacement_uid,
        replacement_format=payload.replacement_format,
        method=payload.method,
    )
    replacement = _out(_card(session, result.replacement.id, visible, user)) if result.replacement else None
    return LostOut(lost=_out(_card(session, card_id, visible, user)), replacement=replacement)


@router.post("/cards/{card_id}/return", response_model=CardOut, responses=CHANGES)
def return_card(
    card_id: ObjectId, session: SessionDep, user: Desk, visible: VisibleEstates, payload: ReturnIn
) -> CardOut:
    """退卡: a card handed back; a renovation pass's deposit is refunded if back by the permit's end + grace."""
    _card(session, card_id, visible, user)
    service.return_card(session, card_id, actor=user.username, method=payload.method)
    return _out(_card(session, card_id, visible, user))


@router.get("/estates/{code}/swipes", response_model=Page[SwipeOut])
def list_swipes(
    code: EstateCode,
    session: SessionDep,
    user: SwipeReaders,
    visible: VisibleEstates,
    page: PageDep,
    door: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    card: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9A-Fa-f :-]*$", description="card UID")] = None,
    granted: Annotated[bool | None, Query()] = None,
    since: Annotated[Time | None, Query(description="from this instant")] = None,
    until: Annotated[Time | None, Query(description="before this instant")] = None,
) -> dict[str, Any]:
    """The swipe log of an estate, newest first (whereabouts: card_admin and admin only; every read is audited)."""
    estate_id = _estate_id(session, code, visible)
    paged = queries.swipes(
        session,
        estate_id,
        door=door,
        card_uid=card,
        granted=granted,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    filters = {
        "door": door,
        "card": card,
        "granted": granted,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "offset": page.offset,
    }
    service.audit_swipe_read(session, user.username, estate_id, filters, len(paged.items))
    return {
        "items": [r.__dict__ for r in paged.items],
        "total": paged.total,
        "limit": page.limit,
        "offset": page.offset,
    }


@router.get("/controllers", response_model=list[ControllerSyncOut])
def list_controllers(
    session: ReadSessionDep,
    user: SyncReaders,
    visible: VisibleEstates,
    estate: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$", description="only this estate")] = None,
) -> list[dict[str, Any]]:
    """Each door controller's whitelist sync: desired and applied version, 待同步 (pending) since, its last report."""
    estate_id = _estate_id(session, estate, visible) if estate is not None else None
    return [r.__dict__ for r in queries.controller_sync(session, visible, estate_id=estate_id)]
