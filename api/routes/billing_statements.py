"""Quarterly statements, closing a quarter, and the SOP's manual readings with their reconciliation.

Permissions from billing/policy.py (view_statements, run_billing, close_period, record_manual_reading,
view_manual_readings); an estate or account the caller does not act on is 404 like one that does not exist.
Money is integer fen; registers and volumes are decimal strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from accounts import service as accounts
from alarms import manual_readings as reconcile
from api.deps import EstateCode, ObjectId, PageDep
from api.routes.billing import CONFLICT, Register, _account_estate, _allowed, _estate_id
from api.routes.tickets import BodyTime
from api.schemas import NO_NUL, Input, Output, Page
from billing import periods, policy, statement_queries, statements
from billing.policy import Action
from core import clock
from core.errors import InvalidInput, NotFound
from storage.models import StaffUser
from web.deps import SessionDep
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/billing", tags=["billing statements"], responses=error_responses(401, 403, 404, 422))

QuarterPath = Annotated[str, Path(pattern=r"^\d{4}Q[1-4]$", description="a quarter, e.g. 2026Q4 (estate-local)")]
QuarterQuery = Annotated[
    str | None,
    Query(pattern=r"^\d{4}Q[1-4]$", description="a quarter, e.g. 2026Q4 (default: the last one ended)"),
]
Readers = Annotated[StaffUser, _allowed(Action.view_statements)]
Runners = Annotated[StaffUser, _allowed(Action.run_billing)]
Closers = Annotated[StaffUser, _allowed(Action.close_period)]
Recorders = Annotated[StaffUser, _allowed(Action.record_manual_reading)]
ReadingViewers = Annotated[StaffUser, _allowed(Action.view_manual_readings)]


class TariffShareOut(BaseModel):
    tariff_id: int
    effective_from: str | None
    volume_m3: str
    value_fen: str = Field(description="exact value before rounding, fen (decimal string)")


class LateChargeOut(BaseModel):
    device: str
    period: str = Field(description="the closed quarter the water was used in")
    from_ts: str = Field(alias="from")
    to_ts: str = Field(alias="to")
    volume_m3: str
    amount_fen: int


class StatementOut(Output):
    statement_id: int
    account_id: int
    estate: str
    unit: str
    period: str
    status: str = Field(description="the quarter's: open (figures may still move) | closed (final)")
    starts_at: datetime
    ends_at: datetime
    opening_fen: int
    charges_fen: int
    charges_m3: str
    late_fen: int = Field(description="上期补收: late readings of closed quarters booked in this one")
    late_m3: str
    payments_fen: int
    refunds_fen: int
    adjustments_fen: int = Field(description="> 0 credited the household")
    closing_fen: int
    first_reading_at: datetime | None
    first_register: str | None
    last_reading_at: datetime | None
    last_register: str | None
    by_tariff: list[TariffShareOut]
    late: list[LateChargeOut]
    generated_at: datetime


class PeriodOut(Output):
    period: str
    status: str
    starts_at: datetime
    ends_at: datetime
    closed_at: datetime | None
    closed_by: str | None


class StatementRunOut(BaseModel):
    period: str
    statements: int
    written: int = Field(description="rows new or changed (0 on a repeat)")
    closed: bool = Field(description="the quarter was closed already: nothing was written")


class ManualReadingIn(Input):
    device: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="meter code")]
    read_at: BodyTime
    value: Register
    reader: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*\S[^\x00]*$")] | None = Field(
        default=None, description="who read the meter (default: the logged-in user)"
    )
    note: Annotated[str, Field(max_length=500, pattern=NO_NUL)] = ""


class ManualReadingOut(Output):
    reading_id: int
    device: str
    unit: str | None
    read_at: datetime
    value: str
    reader: str
    note: str
    in_sop_window: bool = Field(description="false: not read on the 25th–30th of a quarter's last month")
    # Named apart from BaseModel's namespace (pydantic warns that "register" shadows it); "register" in JSON.
    platform_register: str | None = Field(
        alias="register", description="the platform's register at read_at; null: no reading near it"
    )
    register_method: str | None = Field(description="interpolated | nearest")
    difference: str | None
    tolerance: str | None
    verdict: str = Field(description="ok | mismatch (a repair ticket is opened) | no_data")
    ticket_id: int | None
    ticket_number: str | None
    recorded_by: str
    recorded_at: datetime


def _dec(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def statement_out(s: statement_queries.StatementRow) -> StatementOut:
    return StatementOut(
        statement_id=s.statement_id,
        account_id=s.account_id,
        estate=s.estate_code,
        unit=s.unit_code,
        period=s.period,
        status=s.status,
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        opening_fen=s.opening_fen,
        charges_fen=s.charges_fen,
        charges_m3=str(s.charges_m3),
        late_fen=s.late_fen,
        late_m3=str(s.late_m3),
        payments_fen=s.payments_fen,
        refunds_fen=s.refunds_fen,
        adjustments_fen=s.adjustments_fen,
        closing_fen=s.closing_fen,
        first_reading_at=s.first_reading_at,
        first_register=_dec(s.first_register),
        last_reading_at=s.last_reading_at,
        last_register=_dec(s.last_register),
        by_tariff=[TariffShareOut(**t) for t in s.by_tariff],
        late=[LateChargeOut.model_validate(x) for x in s.late],
        generated_at=s.generated_at,
    )


def _reading_out(m: statement_queries.ManualReadingRow) -> ManualReadingOut:
    return ManualReadingOut(
        reading_id=m.reading_id,
        device=m.device_code,
        unit=m.unit_code,
        read_at=m.read_at,
        value=str(m.value),
        reader=m.reader,
        note=m.note,
        in_sop_window=m.in_sop_window,
        register=_dec(m.register),
        register_method=m.register_method,
        difference=_dec(m.difference),
        tolerance=_dec(m.tolerance),
        verdict=m.verdict,
        ticket_id=m.ticket_id,
        ticket_number=m.ticket_number,
        recorded_by=m.recorded_by,
        recorded_at=m.recorded_at,
    )


@router.get("/estates/{code}/periods", response_model=list[PeriodOut])
def list_periods(code: EstateCode, session: ReadSessionDep, user: Readers) -> list[PeriodOut]:
    """The estate's quarters with statements, newest first: open, or closed with who and when."""
    estate_id = _estate_id(session, user, code, Action.view_statements)
    return [
        PeriodOut(
            period=p.period,
            status=p.status,
            starts_at=p.starts_at,
            ends_at=p.ends_at,
            closed_at=p.closed_at,
            closed_by=p.closed_by,
        )
        for p in statement_queries.estate_periods(session, estate_id)
    ]


@router.get("/estates/{code}/statements", response_model=Page[StatementOut])
def list_statements(
    code: EstateCode, session: ReadSessionDep, user: Readers, page: PageDep, quarter: QuarterQuery = None
) -> dict[str, Any]:
    """The estate's household statements of one quarter (default: the last one ended), by unit."""
    estate_id = _estate_id(session, user, code, Action.view_statements)
    q = periods.parse(quarter) if quarter else statements.due_quarter_of(session, estate_id, clock.now())
    rows = statement_queries.estate_statements(session, estate_id, q.label)
    items = [statement_out(r) for r in rows[page.offset : page.offset + page.limit]]
    return {"items": items, "total": len(rows), "limit": page.limit, "offset": page.offset}


@router.get("/accounts/{account_id}/statements", response_model=list[StatementOut])
def account_statements(account_id: ObjectId, session: ReadSessionDep, user: Readers) -> list[StatementOut]:
    """One household's quarterly statements, newest first."""
    _account_estate(session, user, account_id, Action.view_statements)
    return [statement_out(r) for r in statement_queries.account_statements(session, account_id)]


@router.get("/statements/{statement_id}", response_model=StatementOut)
def get_statement(statement_id: ObjectId, session: ReadSessionDep, user: Readers) -> StatementOut:
    """One statement."""
    row = statement_queries.statement(session, statement_id)
    if row is None or not policy.may_on_estate(session, user, Action.view_statements, row.estate_id):
        raise NotFound("statement not found / 未找到该对账单")  # another estate's looks like none at all
    return statement_out(row)


@router.post("/estates/{code}/periods/{quarter}/statements", response_model=StatementRunOut, responses=CONFLICT)
def run_statements(
    code: EstateCode, quarter: QuarterPath, request: Request, session: SessionDep, user: Runners
) -> StatementRunOut:
    """Charge up to the quarter's end, then write every household's statement (safe to repeat)."""
    estate_id = _estate_id(session, user, code, Action.run_billing)
    q = periods.parse(quarter)
    # Group by group in transactions of its own (billing/statements.py): never holds the request's.
    result = statements.statement_run(request.app.state.sessionmaker, q, estate_id=estate_id)
    accounts.audit(
        session, user, "billing.statements", f"estate:{code}", {"period": q.label, "written": result.written}
    )
    return StatementRunOut(
        period=q.label, statements=result.statements, written=result.written, closed=bool(result.skipped_closed)
    )


@router.post("/estates/{code}/periods/{quarter}/close", response_model=PeriodOut, responses=CONFLICT)
def close_period(code: EstateCode, quarter: QuarterPath, session: SessionDep, user: Closers) -> PeriodOut:
    """Close an ended quarter: its statements become final; later readings of it go to the open quarter."""
    estate_id = _estate_id(session, user, code, Action.close_period)
    q = periods.parse(quarter)
    period = statements.close_period(session, estate_id, q, actor=user.username)
    return PeriodOut(
        period=period.period,
        status=period.status,
        starts_at=period.starts_at,
        ends_at=period.ends_at,
        closed_at=period.closed_at,
        closed_by=period.closed_by,
    )


@router.get("/estates/{code}/manual-readings", response_model=list[ManualReadingOut])
def list_manual_readings(code: EstateCode, session: ReadSessionDep, user: ReadingViewers) -> list[ManualReadingOut]:
    """The estate's manual readings, newest first, with the verdict and the repair ticket of a mismatch."""
    estate_id = _estate_id(session, user, code, Action.view_manual_readings)
    return [_reading_out(m) for m in statement_queries.manual_readings(session, estate_id)]


@router.post("/estates/{code}/manual-readings", response_model=ManualReadingOut, status_code=201, responses=CONFLICT)
def record_manual_reading(
    code: EstateCode, body: ManualReadingIn, session: SessionDep, user: Recorders
) -> ManualReadingOut:
    """Record a hand-read register; beyond the tolerance a repair ticket opens for the meter (once)."""
    estate_id = _estate_id(session, user, code, Action.record_manual_reading)
    device_id = statement_queries.household_meter(session, estate_id, body.device)
    if device_id is None:
        raise InvalidInput(f"no household hot-water meter {body.device!r} in this estate / 本小区无此住户热水表")
    reading = reconcile.record_and_reconcile(
        session,
        device_id=device_id,
        read_at=body.read_at,
        value=Decimal(body.value),
        reader=body.reader or user.username,
        actor=user.username,
        note=body.note,
    )
    row = next(m for m in statement_queries.manual_readings(session, estate_id) if m.reading_id == reading.id)
    return _reading_out(row)
