"""Where an estate's devices left off: the newest stored report and each meter's last registers.

A platform restarted on its own data (``steward demo`` run again, a simulator reconnecting) resumes
from here instead of from made-up starting points, so nothing reads as a reset or a silent device.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session


def last_report_at(session: Session, estate_code: str) -> datetime | None:
    """Device time of the newest message stored for any device of the estate (None: nothing yet)."""
    last: datetime | None = session.execute(
        text(
            "SELECT max(s.last_ts) FROM device_state s JOIN devices d ON d.id = s.device_id "
            "JOIN estates e ON e.id = d.estate_id WHERE e.code = :estate"
        ),
        {"estate": estate_code},
    ).scalar_one()
    return last


def last_registers(session: Session, estate_code: str) -> dict[str, tuple[Decimal, Decimal | None]]:
    """Meter code → (register, reverse register) of its newest stored reading."""
    rows = session.execute(
        text(
            "SELECT DISTINCT ON (r.device_id) d.code, r.register, r.reverse_register "
            "FROM meter_readings r JOIN devices d ON d.id = r.device_id "
            "JOIN estates e ON e.id = d.estate_id WHERE e.code = :estate "
            "ORDER BY r.device_id, r.ts DESC"
        ),
        {"estate": estate_code},
    ).all()
    return {
        code: (Decimal(register), None if reverse is None else Decimal(reverse)) for code, register, reverse in rows
    }
