"""Reads of quarterly statements, quarters and manual-reading reconciliations (the API and pages render these)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.const import METER_KIND
from storage.models import (
    BillingAccount,
    BillingPeriod,
    BillingStatement,
    Building,
    Device,
    Estate,
    ManualReading,
    Ticket,
    Unit,
)


@dataclass(frozen=True, slots=True)
class StatementRow:
    statement_id: int
    account_id: int
    estate_id: int
    estate_code: str
    estate_name: str
    timezone: str
    unit_code: str
    period: str
    status: str  # the quarter's: open | closed
    starts_at: datetime
    ends_at: datetime
    opening_fen: int
    charges_fen: int
    charges_m3: Decimal
    late_fen: int
    late_m3: Decimal
    payments_fen: int
    refunds_fen: int
    adjustments_fen: int
    closing_fen: int
    first_reading_at: datetime | None
    first_register: Decimal | None
    last_reading_at: datetime | None
    last_register: Decimal | None
    by_tariff: list[dict[str, Any]]
    late: list[dict[str, Any]]
    generated_at: datetime


def _select() -> Any:
    return (
        select(BillingStatement, Unit.code, Estate.code, Estate.name, Estate.timezone, BillingPeriod.status)
        .join(BillingAccount, BillingAccount.id == BillingStatement.account_id)
        .join(Unit, Unit.id == BillingAccount.unit_id)
        .join(Estate, Estate.id == BillingStatement.estate_id)
        .outerjoin(
            BillingPeriod,
            (BillingPeriod.estate_id == BillingStatement.estate_id) & (BillingPeriod.period == BillingStatement.period),
        )
    )


def _row(s: BillingStatement, unit: str, code: str, name: str, tz: str, status: str | None) -> StatementRow:
    return StatementRow(
        statement_id=s.id,
        account_id=s.account_id,
        estate_id=s.estate_id,
        estate_code=code,
        estate_name=name,
        timezone=tz,
        unit_code=unit,
        period=s.period,
        status=status or "open",
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        opening_fen=s.opening_fen,
        charges_fen=s.charges_fen,
        charges_m3=s.charges_m3,
        late_fen=s.late_fen,
        late_m3=s.late_m3,
        payments_fen=s.payments_fen,
        refunds_fen=s.refunds_fen,
        adjustments_fen=s.adjustments_fen,
        closing_fen=s.closing_fen,
        first_reading_at=s.first_reading_at,
        first_register=s.first_register,
        last_reading_at=s.last_reading_at,
        last_register=s.last_register,
        by_tariff=list(s.by_tariff),
        late=list(s.late),
        generated_at=s.generated_at,
    )


def estate_statements(session: Session, estate_id: int, period: str) -> list[StatementRow]:
    """An estate's statements of one quarter, by unit code."""
    rows = session.execute(
        _select()
        .where(BillingStatement.estate_id == estate_id, BillingStatement.period == period)
        .order_by(Unit.code, BillingStatement.id)
    ).all()
    return [_row(*r) for r in rows]


def account_statements(session: Session, account_id: int) -> list[StatementRow]:
    """A household's statements, newest quarter first."""
    rows = session.execute(
        _select().where(BillingStatement.account_id == account_id).order_by(BillingStatement.starts_at.desc())
    ).all()
    return [_row(*r) for r in rows]


def statement(session: Session, statement_id: int) -> StatementRow | None:
    row = session.execute(_select().where(BillingStatement.id == statement_id)).first()
    return None if row is None else _row(*row)


@dataclass(frozen=True, slots=True)
class PeriodRow:
    period: str
    status: str
    starts_at: datetime
    ends_at: datetime
    closed_at: datetime | None
    closed_by: str | None


def estate_periods(session: Session, estate_id: int) -> list[PeriodRow]:
    """The estate's quarters that have statements or were closed, newest first."""
    return [
        PeriodRow(p.period, p.status, p.starts_at, p.ends_at, p.closed_at, p.closed_by)
        for p in session.scalars(
            select(BillingPeriod).where(BillingPeriod.estate_id == estate_id).order_by(BillingPeriod.starts_at.desc())
        )
    ]


@dataclass(frozen=True, slots=True)
class ManualReadingRow:
    reading_id: int
    device_id: int
    device_code: str
    unit_code: str | None
    read_at: datetime
    value: Decimal
    reader: str
    note: str
    in_sop_window: bool
    register: Decimal | None
    register_method: str | None
    difference: Decimal | None
    tolerance: Decimal | None
    verdict: str
    ticket_id: int | None
    ticket_number: str | None
    recorded_by: str
    recorded_at: datetime


def manual_readings(session: Session, estate_id: int, *, limit: int = 500) -> list[ManualReadingRow]:
    """An estate's manual readings with their verdicts and tickets, newest first."""
    rows = session.execute(
        select(ManualReading, Device.code, Unit.code, Ticket.number)
        .join(Device, Device.id == ManualReading.device_id)
        .outerjoin(Unit, Unit.id == Device.unit_id)
        .outerjoin(Ticket, Ticket.id == ManualReading.ticket_id)
        .where(ManualReading.estate_id == estate_id)
        .order_by(ManualReading.read_at.desc(), ManualReading.id.desc())
        .limit(limit)
    ).all()
    return [
        ManualReadingRow(
            reading_id=m.id,
            device_id=m.device_id,
            device_code=code,
            unit_code=unit,
            read_at=m.read_at,
            value=m.value,
            reader=m.reader,
            note=m.note,
            in_sop_window=m.in_sop_window,
            register=m.register,
            register_method=m.register_method,
            difference=m.difference,
            tolerance=m.tolerance,
            verdict=m.verdict,
            ticket_id=m.ticket_id,
            ticket_number=number,
            recorded_by=m.recorded_by,
            recorded_at=m.recorded_at,
        )
        for m, code, unit, number in rows
    ]


def household_meter(session: Session, estate_id: int, code: str) -> int | None:
    """The id of the estate's household hot-water meter with this device code (manual-reading entry)."""
    return session.scalar(
        select(Device.id).where(
            Device.estate_id == estate_id,
            Device.code == code,
            Device.unit_id.is_not(None),
            Device.kind == "hot_water_meter",
        )
    )


def meters_by_unit(session: Session, estate_id: int) -> list[tuple[str, str]]:
    """(unit code, meter code) of the estate's household hot-water meters, for the entry form's list."""
    rows = session.execute(
        select(Unit.code, Device.code)
        .join(Device, Device.unit_id == Unit.id)
        .join(Building, Building.id == Unit.building_id)
        .where(Building.estate_id == estate_id, Device.kind == METER_KIND)
        .order_by(Unit.code)
    ).all()
    return [(u, d) for u, d in rows]
