"""The energy and water report of an estate for a month (issue 15 §4) as JSON: the page's figures, same query."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import EstateCode
from api.routes.estates import estate_or_404
from api.schemas import Output
from core import clock
from facility import energy_queries
from facility.energy_policy import ENERGY_READERS
from storage.models import StaffUser
from web.deps import VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(tags=["energy"], responses=error_responses(401, 403, 404, 422))
EnergyReader = Annotated[StaffUser, Depends(require_roles(ENERGY_READERS))]
Month = Annotated[
    str | None,
    Query(pattern=r"^20\d{2}-(0[1-9]|1[0-2])$", description="YYYY-MM (2000–2099), estate-local; this month if absent"),
]


class WindowOut(Output):
    start: date
    end: date  # exclusive


class BuildingUsageOut(Output):
    kind: str
    unit: str
    building_code: str | None  # None: the whole estate
    building_name: str | None
    units: Decimal  # Σ of the households' meters
    master: Decimal | None  # the master meter(s); None when there is none for this utility
    loss: Decimal | None
    loss_rate_pct: Decimal | None
    previous: Decimal
    mom_pct: Decimal | None
    last_year: Decimal
    yoy_pct: Decimal | None
    held_intervals: int


class DayUsageOut(Output):
    day: date
    kind: str
    building_code: str | None
    units: Decimal
    master: Decimal | None


class UnitUsageOut(Output):
    kind: str
    unit_code: str
    building_code: str
    occupancy: str
    volume: Decimal


class EnergyReportOut(Output):
    estate: str
    month: str
    partial: bool
    current: WindowOut
    previous: WindowOut
    last_year: WindowOut
    as_of: datetime | None
    usage: list[BuildingUsageOut]
    daily: list[DayUsageOut]
    vacant: list[UnitUsageOut]
    top: list[UnitUsageOut]


@router.get("/api/estates/{code}/energy", response_model=EnergyReportOut)
def energy_report(
    code: EstateCode, session: ReadSessionDep, user: EnergyReader, visible: VisibleEstates, month: Month = None
) -> EnergyReportOut:
    """Consumption per building and utility for a month: loss against the master meters, 环比, 同比, each day,
    vacant units that used anything and the top consumers."""
    estate = estate_or_404(session, code, visible)
    now = clock.now()
    today = energy_queries.estate_today(estate, now)
    r = energy_queries.report(session, estate, energy_queries.parse_month(month, today), now)
    codes = {b.id: b.code for b in r.buildings}
    w = r.windows
    return EnergyReportOut(
        estate=estate.code,
        month=w.month.strftime("%Y-%m"),
        partial=w.partial,
        current=WindowOut(start=w.current.start, end=w.current.end),
        previous=WindowOut(start=w.previous.start, end=w.previous.end),
        last_year=WindowOut(start=w.last_year.start, end=w.last_year.end),
        as_of=r.as_of,
        usage=[
            BuildingUsageOut(
                kind=u.kind,
                unit=energy_queries.UNITS[u.kind],
                building_code=u.building_code,
                building_name=u.building_name,
                units=u.units,
                master=u.master,
                loss=u.loss,
                loss_rate_pct=u.loss_rate,
                previous=u.previous,
                mom_pct=u.mom,
                last_year=u.last_year,
                yoy_pct=u.yoy,
                held_intervals=u.held,
            )
            for u in r.usage
        ],
        daily=[
            DayUsageOut(
                day=d.day,
                kind=d.kind,
                building_code=codes.get(d.building_id) if d.building_id is not None else None,
                units=d.units,
                master=d.master,
            )
            for d in r.daily
        ],
        vacant=[UnitUsageOut.model_validate(u) for u in r.vacant],
        top=[UnitUsageOut.model_validate(u) for u in r.top],
    )
