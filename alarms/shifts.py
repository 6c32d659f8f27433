"""An estate's shifts (班次): which shift a moment falls in, the one before it, and the estate's definitions.

Shifts are wall-clock times of the estate's zone and tile the day: each ends where the next begins, and together
they cover 24 hours. A shift whose end is at or before its start runs across midnight (夜班 20:00–08:00 belongs to
the evening it starts on). An estate without definitions works the defaults (白班 08:00–20:00, 夜班 20:00–08:00).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from storage.models import ShiftDefinition

DAY = timedelta(hours=24)


@dataclass(frozen=True)
class Shift:
    """One shift of the day, as defined (local wall-clock times)."""

    code: str
    name_zh: str
    name_en: str
    starts: time
    ends: time

    @property
    def length(self) -> timedelta:
        start = datetime.combine(date(2000, 1, 1), self.starts)
        end = datetime.combine(date(2000, 1, 1), self.ends)
        return end - start if end > start else end + DAY - start


DEFAULT_SHIFTS: tuple[Shift, ...] = (
    Shift("day", "白班", "Day shift", time(8, 0), time(20, 0)),
    Shift("night", "夜班", "Night shift", time(20, 0), time(8, 0)),
)


@dataclass(frozen=True)
class ShiftWindow:
    """One occurrence of a shift: [start, end) as aware UTC times."""

    code: str
    name_zh: str
    name_en: str
    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def validate(shifts: Sequence[Shift]) -> list[Shift]:
    """The shifts ordered by start time, or InvalidInput when they do not tile the day exactly once."""
    if not shifts:
        raise InvalidInput("define at least one shift / 至少需要一个班次")
    if len(shifts) > 6:
        raise InvalidInput("at most six shifts a day / 每天最多六个班次")
    codes = [s.code for s in shifts]
    if len(set(codes)) != len(codes):
        raise InvalidInput("shift codes must be unique / 班次代码不能重复")
    for s in shifts:
        if s.starts == s.ends:
            raise InvalidInput(f"shift {s.code} starts where it ends / 班次 {s.name_zh} 起止时间相同")
        if s.starts.second or s.ends.second or s.starts.microsecond or s.ends.microsecond:
            raise InvalidInput("shift times are whole minutes / 班次时间须为整分钟")
    ordered = sorted(shifts, key=lambda s: s.starts)
    for prev, nxt in zip(ordered, [*ordered[1:], ordered[0]], strict=True):
        if prev.ends != nxt.starts:
            raise InvalidInput(
                f"shift {prev.code} ends at {prev.ends:%H:%M} but the next starts at {nxt.starts:%H:%M} / "
                f"班次须首尾相接：{prev.name_zh} {prev.ends:%H:%M} 下班，下一班 {nxt.starts:%H:%M} 接班"
            )
    if sum((s.length for s in ordered), timedelta(0)) != DAY:
        raise InvalidInput("shifts must cover the day exactly once / 班次须恰好覆盖全天 24 小时")
    return ordered


def _window(shift: Shift, day: date, tz: ZoneInfo) -> ShiftWindow:
    start = datetime.combine(day, shift.starts, tz)
    end_day = day + timedelta(days=1) if shift.ends <= shift.starts else day
    end = datetime.combine(end_day, shift.ends, tz)
    return ShiftWindow(shift.code, shift.name_zh, shift.name_en, start.astimezone(UTC), end.astimezone(UTC))


def shift_at(shifts: Sequence[Shift], tz: ZoneInfo, at: datetime) -> ShiftWindow:
    """The shift occurrence `at` falls in (a night shift that began yesterday evening included)."""
    local_day = at.astimezone(tz).date()
    for day in (local_day - timedelta(days=1), local_day):
        for shift in shifts:
            window = _window(shift, day, tz)
            if window.contains(at):
                return window
    # Only a clock change (a DST gap or overlap in the estate's zone) can leave a moment between two shifts:
    # it belongs to the shift that started last before it.
    candidates = [_window(s, d, tz) for d in (local_day - timedelta(days=1), local_day) for s in shifts]
    return max((w for w in candidates if w.start <= at), key=lambda w: w.start)


def previous_shift(shifts: Sequence[Shift], tz: ZoneInfo, window: ShiftWindow) -> ShiftWindow:
    return shift_at(shifts, tz, window.start - timedelta(microseconds=1))


def definitions(session: Session, estate_id: int) -> list[Shift]:
    """The estate's shifts by start time, or the defaults when it has defined none."""
    rows = session.scalars(
        select(ShiftDefinition).where(ShiftDefinition.estate_id == estate_id).order_by(ShiftDefinition.starts_at)
    ).all()
    if not rows:
        return list(DEFAULT_SHIFTS)
    return [Shift(r.code, r.name_zh, r.name_en, r.starts_at, r.ends_at) for r in rows]


def set_definitions(session: Session, estate_id: int, shifts: Sequence[Shift]) -> list[Shift]:
    """Replace the estate's shifts (validated first). Records already handed over keep the shift they were for."""
    ordered = validate(shifts)
    session.execute(delete(ShiftDefinition).where(ShiftDefinition.estate_id == estate_id))
    session.add_all(
        ShiftDefinition(
            estate_id=estate_id, code=s.code, name_zh=s.name_zh, name_en=s.name_en, starts_at=s.starts, ends_at=s.ends
        )
        for s in ordered
    )
    session.flush()
    return ordered
