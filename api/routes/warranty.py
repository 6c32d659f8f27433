"""Callbacks and the developer's warranty of an estate (issue 14 part 6): the monthly callback report, the
warranty table (handover dates, developer, periods; editable) and the developer charge-backs.

Who may do what is tickets/policy.py (REPORT_ROLES, WARRANTY_*_ROLES, CHARGEBACK_ROLES); an estate the caller
may not see is 404 like a missing one.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, BeforeValidator, Field, model_validator
from sqlalchemy import select

from accounts import service as accounts
from api.deps import EstateCode
from api.routes.estates import estate_or_404
from api.schemas import Input, Output
from core import clock
from core.errors import InvalidInput, NotFound
from storage.models import Building, StaffUser, WarrantyHandover
from tickets import callback_report, policy, warranty
from tickets.const import WARRANTY_ITEM_LABELS
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import error_responses

router = APIRouter(tags=["tickets"], responses=error_responses(401, 403, 404, 422))
Reporters = Annotated[StaffUser, Depends(require_roles(policy.REPORT_ROLES))]
WarrantyReaders = Annotated[StaffUser, Depends(require_roles(policy.WARRANTY_READ_ROLES))]
WarrantyEditors = Annotated[StaffUser, Depends(require_roles(policy.WARRANTY_EDIT_ROLES))]
ChargebackReaders = Annotated[StaffUser, Depends(require_roles(policy.CHARGEBACK_ROLES))]
MONTH = r"^[12]\d{3}-(0[1-9]|1[0-2])$"
# Handover dates a warranty period can be counted from without leaving the calendar.
EARLIEST, LATEST = date(1950, 1, 1), date(2199, 12, 31)


def _iso_date(value: Any) -> Any:
    # Strict models take no strings for dates: parse ISO 8601 here; anything else is refused by the type.
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return value
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class CallbackReportOut(BaseModel):
    estate: str
    month: str = Field(description="YYYY-MM, the estate's local month")
    callbacks: int
    in_person: int
    by_channel: dict[str, int]
    satisfied: int = Field(description="satisfaction 3–5 of 1–5")
    in_person_pct: Decimal | None = Field(description="target ≥ 70 %; null without callbacks")
    satisfaction_pct: Decimal | None = Field(description="target ≥ 95 %; null without callbacks")
    in_person_target_pct: Decimal
    satisfaction_target_pct: Decimal
    in_person_met: bool | None
    satisfaction_met: bool | None


class HandoverOut(Output):
    building: str | None
    handover_on: date
    developer: str
    response_days: int


class TermOut(BaseModel):
    item: str
    label_zh: str
    label_en: str
    years: int | None
    heating_seasons: int | None
    default: bool


class WarrantyOut(BaseModel):
    estate: str
    handovers: list[HandoverOut]
    terms: list[TermOut]


class HandoverIn(Input):
    handover_on: IsoDate = Field(description="YYYY-MM-DD, 1950–2199")
    developer: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00]*\S[^\x00]*$")
    response_days: int = Field(default=warranty.DEVELOPER_DEFAULT_RESPONSE_DAYS, ge=1, le=90)
    building: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9-]+$", description="building code")


class TermIn(Input):
    item: Literal["roof_waterproofing", "heating", "decoration", "mep"]
    years: int | None = Field(default=None, ge=0, le=50)
    heating_seasons: int | None = Field(default=None, ge=0, le=50)

    @model_validator(mode="after")
    def _one(self) -> TermIn:
        if (self.years is None) == (self.heating_seasons is None):
            raise ValueError("give years or heating_seasons, not both")
        return self


class ChargebackOut(Output):
    id: int
    ticket_id: int
    party: str
    warranty_item: str | None
    due_at: datetime
    missed_at: datetime
    amount_fen: int | None


def _month(text: str | None, tz: str) -> date:
    if text is None:
        local = clock.now().astimezone(ZoneInfo(tz))
        return date(local.year, local.month, 1)
    return date(int(text[:4]), int(text[5:7]), 1)


@router.get("/api/estates/{code}/callback-report", response_model=CallbackReportOut)
def get_callback_report(
    code: EstateCode,
    session: SessionDep,
    user: Reporters,
    visible: VisibleEstates,
    month: Annotated[
        str | None, Query(pattern=MONTH, description="YYYY-MM; the current local month if left out")
    ] = None,
) -> CallbackReportOut:
    """The estate's callbacks of one month: share in person (≥ 70 %) and satisfaction (≥ 95 %)."""
    estate = estate_or_404(session, code, visible)
    r = callback_report.monthly(session, estate.id, _month(month, estate.timezone))
    return CallbackReportOut(
        estate=estate.code,
        month=r.month.strftime("%Y-%m"),
        callbacks=r.callbacks,
        in_person=r.in_person,
        by_channel=r.by_channel,
        satisfied=r.satisfied,
        in_person_pct=r.in_person_pct,
        satisfaction_pct=r.satisfaction_pct,
        in_person_target_pct=callback_report.IN_PERSON_TARGET,
        satisfaction_target_pct=callback_report.SATISFACTION_TARGET,
        in_person_met=r.in_person_met,
        satisfaction_met=r.satisfaction_met,
    )


def _warranty_out(session: SessionDep, estate_id: int, code: str) -> WarrantyOut:
    rows = session.execute(
        select(WarrantyHandover, Building.code)
        .outerjoin(Building, Building.id == WarrantyHandover.building_id)
        .where(WarrantyHandover.estate_id == estate_id)
        .order_by(WarrantyHandover.building_id.nulls_first(), Building.code)
    ).all()
    terms = warranty.terms(session, estate_id)
    return WarrantyOut(
        estate=code,
        handovers=[
            HandoverOut(building=b, handover_on=h.handover_on, developer=h.developer, response_days=h.response_days)
            for h, b in rows
        ],
        terms=[
            TermOut(
                item=item.value,
                label_zh=WARRANTY_ITEM_LABELS[item][0],
                label_en=WARRANTY_ITEM_LABELS[item][1],
                years=term.years,
                heating_seasons=term.heating_seasons,
                default=term == warranty.DEFAULT_TERMS[item],
            )
            for item, term in terms.items()
        ],
    )


@router.get("/api/estates/{code}/warranty", response_model=WarrantyOut)
def get_warranty(code: EstateCode, session: SessionDep, user: WarrantyReaders, visible: VisibleEstates) -> WarrantyOut:
    """The estate's warranty table: handover dates and developer (estate and buildings), and the periods."""
    estate = estate_or_404(session, code, visible)
    return _warranty_out(session, estate.id, estate.code)


@router.put("/api/estates/{code}/warranty/handover", response_model=WarrantyOut, responses=error_responses(400))
def put_handover(
    code: EstateCode, body: HandoverIn, session: SessionDep, user: WarrantyEditors, visible: VisibleEstates
) -> WarrantyOut:
    """Set the estate's (or one building's) handover date, developer and the developer's response days."""
    estate = estate_or_404(session, code, visible)
    if not EARLIEST <= body.handover_on <= LATEST:
        raise InvalidInput("handover date out of range / 交付日期超出范围")
    building_id = None
    if body.building is not None:
        building_id = session.scalar(
            select(Building.id).where(Building.estate_id == estate.id, Building.code == body.building)
        )
        if building_id is None:
            raise NotFound("building not found / 未找到该楼栋")
    warranty.set_handover(
        session,
        estate.id,
        handover_on=body.handover_on,
        developer=body.developer,
        response_days=body.response_days,
        building_id=building_id,
        now=clock.now(),
    )
    accounts.audit(session, user, "warranty.handover", f"estate:{estate.code}", body.model_dump(mode="json"))
    return _warranty_out(session, estate.id, estate.code)


@router.put("/api/estates/{code}/warranty/terms", response_model=WarrantyOut, responses=error_responses(400))
def put_term(
    code: EstateCode, body: TermIn, session: SessionDep, user: WarrantyEditors, visible: VisibleEstates
) -> WarrantyOut:
    """Edit one warranty period of the estate (years, or heating seasons for heating)."""
    estate = estate_or_404(session, code, visible)
    warranty.set_term(
        session,
        estate.id,
        body.item,
        years=body.years,
        heating_seasons=body.heating_seasons,
        actor=user.username,
        now=clock.now(),
    )
    accounts.audit(session, user, "warranty.term", f"estate:{estate.code}", body.model_dump(mode="json"))
    return _warranty_out(session, estate.id, estate.code)


@router.get("/api/estates/{code}/warranty/chargebacks", response_model=list[ChargebackOut])
def get_chargebacks(
    code: EstateCode, session: SessionDep, user: ChargebackReaders, visible: VisibleEstates
) -> list[Any]:
    """Tickets billed to the developer because the developer missed the warranty due date (oldest first)."""
    estate = estate_or_404(session, code, visible)
    return list(warranty.chargebacks(session, [estate.id]))
