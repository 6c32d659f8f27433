"""The SOP's manual quarterly reading as a reconciliation against the meter register (seeds/002 §3.1.3,
domain-defaults §5): a steward or engineer reads the household's hot-water meter on the 25th–30th of
the quarter's last month; the platform compares the value with the register it received.

`record` stores the reading with its verdict; billing never opens tickets (a sibling's job):
`alarms.manual_readings` composes this verdict with `tickets.service` to open the repair ticket.

The register at `read_at` comes from `meter_readings`: the nearest reading before and after it,
*interpolated* linearly in time when both exist within `MAX_GAP` and the register did not fall between
them (a meter reporting every 15 min moves little in between, so the straight line is within a few litres);
otherwise the *nearest* one within `MAX_GAP` (the edge of the data, or a reset between the two); with
neither, the verdict is `no_data` (nothing to compare; the meter's silence is the stale-data alarm's job).

Tolerance: max(`tolerance_m3`, `tolerance_pct` % of the register), per estate in `estates.policy`
(``manual_reading_tolerance_m3``, ``manual_reading_tolerance_pct``), default max(0.5 m³, 2 %): 0.5 m³
covers a misread last dial and the interpolation; 2 % is a class-2 meter's permitted error, which over the
whole volume a register has counted grows with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.const import METER_KIND
from billing.service import audit
from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import Device, Estate, ManualReading, MeterReading

DEFAULT_TOLERANCE_M3 = Decimal("0.5")
DEFAULT_TOLERANCE_PCT = Decimal("2")
TOLERANCE_M3_KEY, TOLERANCE_PCT_KEY = "manual_reading_tolerance_m3", "manual_reading_tolerance_pct"
MAX_GAP = timedelta(days=2)  # a register reading further than this from read_at says nothing about it
SOP_DAYS = range(25, 31)  # the 25th to the 30th
QUARTER_END_MONTHS = (3, 6, 9, 12)
PLACES = Decimal("0.001")


class Verdict:
    ok = "ok"
    mismatch = "mismatch"
    no_data = "no_data"


def in_sop_window(read_at: datetime, tz: str) -> bool:
    """Whether the reading was taken on the 25th–30th (estate-local) of a quarter's last month."""
    local = read_at.astimezone(ZoneInfo(tz))
    return local.month in QUARTER_END_MONTHS and local.day in SOP_DAYS


@dataclass(frozen=True, slots=True)
class Register:
    value: Decimal
    method: str  # interpolated | nearest


def register_at(session: Session, device_id: int, at: datetime) -> Register | None:
    """The meter's register at `at` from the readings around it (module docstring)."""
    before = session.execute(
        select(MeterReading.ts, MeterReading.register)
        .where(MeterReading.device_id == device_id, MeterReading.ts <= at, MeterReading.ts >= at - MAX_GAP)
        .order_by(MeterReading.ts.desc())
        .limit(1)
    ).first()
    after = session.execute(
        select(MeterReading.ts, MeterReading.register)
        .where(MeterReading.device_id == device_id, MeterReading.ts >= at, MeterReading.ts <= at + MAX_GAP)
        .order_by(MeterReading.ts)
        .limit(1)
    ).first()
    if before is not None and before.ts == at:
        return Register(Decimal(before.register), "nearest")
    if before is not None and after is not None and after.register >= before.register:
        span = Decimal((after.ts - before.ts).total_seconds())
        part = Decimal((at - before.ts).total_seconds())
        value = before.register + (after.register - before.register) * part / span
        return Register(value.quantize(PLACES), "interpolated")
    near = [r for r in (before, after) if r is not None]
    if not near:
        return None
    best = min(near, key=lambda r: abs(r.ts - at))
    return Register(Decimal(best.register), "nearest")


def tolerance(policy: dict[str, Any] | None, register: Decimal) -> Decimal:
    policy = policy or {}
    m3 = Decimal(str(policy.get(TOLERANCE_M3_KEY, DEFAULT_TOLERANCE_M3)))
    pct = Decimal(str(policy.get(TOLERANCE_PCT_KEY, DEFAULT_TOLERANCE_PCT)))
    return max(m3, (abs(register) * pct / 100).quantize(PLACES))


def record(
    session: Session,
    *,
    device_id: int,
    read_at: datetime,
    value: Decimal | str,
    reader: str,
    actor: str,
    note: str = "",
) -> tuple[ManualReading, bool]:
    """Store a manual reading with its verdict (flushes); (row, created). The same meter and instant again
    with the same value returns the first row; with another value it is refused (409)."""
    if read_at.tzinfo is None:
        raise InvalidInput("read_at needs a timezone / 抄表时间需带时区")
    try:
        reading = Decimal(value)
    except (ArithmeticError, ValueError, TypeError):
        raise InvalidInput(f"not a register value: {value!r} / 读数无效") from None
    if not reading.is_finite() or reading < 0:
        raise InvalidInput("a register reading is a number ≥ 0 / 读数须为非负数")
    if not reader.strip() or not actor.strip():
        raise InvalidInput("a manual reading needs the reader / 需填写抄表人")
    if read_at > clock.now() + timedelta(minutes=5):
        raise InvalidInput("read_at is in the future / 抄表时间不能晚于现在")
    device = session.get(Device, device_id)
    if device is None or device.kind != METER_KIND or device.unit_id is None:
        raise NotFound("no household hot-water meter with this id / 未找到该住户热水表")
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    existing = session.scalars(
        select(ManualReading).where(ManualReading.device_id == device_id, ManualReading.read_at == read_at)
    ).one_or_none()
    if existing is not None:
        if existing.value != reading:
            raise Conflict(
                f"this meter already has a reading {existing.value} at that time / 该表此时刻已有读数 {existing.value}"
            )
        return existing, False
    reg = register_at(session, device_id, read_at)
    row = ManualReading(
        estate_id=estate.id,
        device_id=device_id,
        read_at=read_at,
        value=reading,
        reader=reader.strip(),
        note=note,
        in_sop_window=in_sop_window(read_at, estate.timezone),
        recorded_by=actor,
        recorded_at=clock.now(),
        verdict=Verdict.no_data,
    )
    if reg is not None:
        row.register, row.register_method = reg.value, reg.method
        row.difference = reading - reg.value
        row.tolerance = tolerance(estate.policy, reg.value)
        row.verdict = Verdict.mismatch if abs(row.difference) > row.tolerance else Verdict.ok
    session.add(row)
    session.flush()
    audit(
        session,
        actor,
        "billing.manual_reading",
        f"device:{device_id}",
        {"reading_id": row.id, "value": str(reading), "verdict": row.verdict},
    )
    return row, True


def unticketed_mismatches(session: Session, estate_id: int | None = None) -> list[ManualReading]:
    """Mismatched readings whose ticket is not opened yet (the composition in alarms opens them)."""
    stmt = select(ManualReading).where(ManualReading.verdict == Verdict.mismatch, ManualReading.ticket_id.is_(None))
    if estate_id is not None:
        stmt = stmt.where(ManualReading.estate_id == estate_id)
    return list(session.scalars(stmt.order_by(ManualReading.id)))
