"""Reads of shift handover records for the handover page, the printable record and the JSON API."""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ShiftHandover


def record_for(session: Session, estate_id: int, shift_start: datetime) -> ShiftHandover | None:
    """The record of the estate's shift that began at ``shift_start``, if it was handed over."""
    return session.scalar(
        select(ShiftHandover).where(ShiftHandover.estate_id == estate_id, ShiftHandover.shift_start == shift_start)
    )


def record(session: Session, handover_id: int, visible: Set[int]) -> ShiftHandover | None:
    """One record of the caller's estates, or None (missing and not visible are the same answer)."""
    row = session.get(ShiftHandover, handover_id)
    return row if row is not None and row.estate_id in visible else None


def recent_records(
    session: Session, estate_id: int, *, limit: int = 20, before: datetime | None = None
) -> list[ShiftHandover]:
    """The estate's latest records, newest shift first."""
    stmt = select(ShiftHandover).where(ShiftHandover.estate_id == estate_id)
    if before is not None:
        stmt = stmt.where(ShiftHandover.shift_start < before)
    return list(session.scalars(stmt.order_by(ShiftHandover.shift_start.desc()).limit(limit)))
