"""A manual reading that disagrees with the meter's register opens a repair ticket for the meter.

Why here and not in `tickets/from_alarms.py`: billing decides the verdict (`billing.manual_readings`)
and tickets opens tickets, and the two are siblings that never import each other; the composition must
sit above both, and `alarms` is that layer (it already opens tickets for meter anomalies). from_alarms
is the ingest path's set-based alarm hook, keyed by alarm episodes: a manual reading is neither, and
comes one at a time from a person, so `tickets.service.open_ticket` (one reading, one ticket) fits.

Once per reading: the ticket's ``source_key`` is ``manual_reading:<id>`` (at most one open ticket per key)
and the reading keeps the ticket's id, so a retry or the sweep opens nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from billing import manual_readings
from storage.models import Device, Estate, ManualReading
from tickets import service as tickets
from tickets.const import Category, Priority, Source


def open_ticket(session: Session, reading: ManualReading, *, actor: str) -> int | None:
    """Open (or find) the repair ticket of a mismatched reading and link it; the ticket id, or None."""
    if reading.verdict != manual_readings.Verdict.mismatch:
        return None
    if reading.ticket_id is not None:
        return reading.ticket_id
    device = session.get(Device, reading.device_id)
    assert device is not None
    estate = session.get(Estate, reading.estate_id)
    read_at = tickets.local_minute(reading.read_at, estate.timezone if estate else None)  # the estate's clock
    title = f"热水表读数不符 {device.code}: 人工 {reading.value} / 系统 {reading.register} m³"
    description = (
        f"人工抄表 {read_at} 读数 {reading.value} m³（抄表人 {reading.reader}），"
        f"系统表底 {reading.register} m³（{reading.register_method}），差 {reading.difference} m³，"
        f"超出允差 {reading.tolerance} m³。请核查表具与远传模块。\n"
        f"Manual reading {reading.value} m³ at {read_at} vs register {reading.register} m³: "
        f"difference {reading.difference} m³ beyond the tolerance {reading.tolerance} m³; "
        "check the meter and its transmitter."
    )
    ticket = tickets.open_ticket(
        session,
        estate_id=reading.estate_id,
        source=Source.inspection.value,
        category=Category.meter.value,
        priority=Priority.normal.value,
        title=title,
        description=description,
        received_by=actor,
        unit_id=device.unit_id,
        device_id=device.id,
        source_key=f"manual_reading:{reading.id}",
    )
    reading.ticket_id = ticket.id
    session.flush()
    return ticket.id


def record_and_reconcile(
    session: Session,
    *,
    device_id: int,
    read_at: datetime,
    value: Decimal | str,
    reader: str,
    actor: str,
    note: str = "",
) -> ManualReading:
    """Record a manual reading (billing's verdict) and, beyond the tolerance, open the meter's ticket."""
    reading, _ = manual_readings.record(
        session, device_id=device_id, read_at=read_at, value=value, reader=reader, actor=actor, note=note
    )
    open_ticket(session, reading, actor=actor)
    return reading


def sweep(session: Session, *, actor: str = "system") -> list[int]:
    """Open the tickets of mismatched readings that have none (a reading recorded by other means)."""
    return [t for r in manual_readings.unticketed_mismatches(session) if (t := open_ticket(session, r, actor=actor))]
