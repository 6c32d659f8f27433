"""Estates, buildings, units and residents, scoped to the estates the staff member may see."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.const import ALL_ROLES, PERSONAL_DATA_ROLES, Role
from accounts.masking import mask_name, mask_phone
from api.deps import EstateCode, PageDep
from api.pagination import page_out
from api.schemas import BuildingOut, EstateOut, Page, ResidentOut, UnitOut
from core.errors import NotFound
from facility import queries
from storage.models import Estate, StaffUser
from web.deps import CurrentUser, SessionDep, VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(tags=["estates"], responses=error_responses(401, 403, 404, 422))
AnyStaff = Annotated[StaffUser, Depends(require_roles(ALL_ROLES))]


def estate_or_404(session: Session, code: str, visible: set[int]) -> Estate:
    """The estate, or 404 whether it does not exist or is not the caller's (existence is not leaked)."""
    estate = queries.estate_by_code(session, code)
    if estate is None or estate.id not in visible:
        raise NotFound("estate not found / 未找到该小区")
    return estate


@router.get("/api/estates", response_model=Page[EstateOut])
def list_estates(session: ReadSessionDep, user: AnyStaff, visible: VisibleEstates, page: PageDep) -> dict[str, Any]:
    """Estates the caller may see."""
    return page_out(queries.estates_page(session, visible, limit=page.limit, offset=page.offset), page)


@router.get("/api/estates/{code}", response_model=EstateOut)
def get_estate(code: EstateCode, session: ReadSessionDep, user: AnyStaff, visible: VisibleEstates) -> Estate:
    """One estate."""
    return estate_or_404(session, code, visible)


@router.get("/api/estates/{code}/buildings", response_model=Page[BuildingOut])
def list_buildings(
    code: EstateCode, session: ReadSessionDep, user: AnyStaff, visible: VisibleEstates, page: PageDep
) -> dict[str, Any]:
    """Buildings of an estate."""
    estate = estate_or_404(session, code, visible)
    return page_out(queries.buildings_page(session, estate.id, limit=page.limit, offset=page.offset), page)


@router.get("/api/estates/{code}/units", response_model=Page[UnitOut])
def list_units(
    code: EstateCode,
    session: ReadSessionDep,
    user: AnyStaff,
    visible: VisibleEstates,
    page: PageDep,
    building: Annotated[str | None, Query(max_length=8, pattern=r"^[A-Za-z0-9]*$")] = None,
    occupancy: Annotated[str | None, Query(pattern="^(vacant|occupied|renovating)$")] = None,
) -> dict[str, Any]:
    """Units (households) of an estate, optionally one building's or one occupancy's."""
    estate = estate_or_404(session, code, visible)
    units = queries.units_page(
        session, estate.id, building=building, occupancy=occupancy, limit=page.limit, offset=page.offset
    )
    return page_out(units, page)


@router.get("/api/estates/{code}/residents", response_model=Page[ResidentOut])
def list_residents(
    code: EstateCode,
    session: SessionDep,
    user: CurrentUser,
    visible: VisibleEstates,
    page: PageDep,
    unit: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_.:-]*$")] = None,
) -> dict[str, Any]:
    """Residents; names and phones are masked for roles that do not need them, and every read is audited."""
    estate = estate_or_404(session, code, visible)
    found = queries.residents_page(session, estate.id, unit=unit, limit=page.limit, offset=page.offset)
    masked = Role(user.role) not in PERSONAL_DATA_ROLES
    residents = found.items
    items = [
        ResidentOut(
            id=r.id,
            unit_id=r.unit_id,
            name=mask_name(r.name) if masked else r.name,
            phone=mask_phone(r.phone) if masked else r.phone,
            role=r.role,
            lease_end=r.lease_end,
            masked=masked,
        )
        for r in residents
    ]
    result = page_out(found, page, items)
    accounts.audit(
        session,
        user,
        "residents.read",
        f"estate:{estate.code}",
        {"resident_ids": [r.id for r in residents], "masked": masked, "unit": unit},
    )
    return result
