"""Shifts (alarms/shifts.py): which shift a moment falls in at the boundaries, across midnight, and which
definitions tile the day. Pure: the moments are inputs, no clock is read."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from alarms.shifts import DEFAULT_SHIFTS, Shift, definitions, previous_shift, set_definitions, shift_at, validate
from core.errors import InvalidInput
from tests.support.world import make_estate

SH = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 26)


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), SH)


@pytest.mark.parametrize(
    ("moment", "code", "start", "end"),
    [
        (at(DAY, 8), "day", at(DAY, 8), at(DAY, 20)),
        (at(DAY, 19, 59, 59), "day", at(DAY, 8), at(DAY, 20)),
        (at(DAY, 20), "night", at(DAY, 20), at(DAY + timedelta(days=1), 8)),
        (at(DAY, 23, 59), "night", at(DAY, 20), at(DAY + timedelta(days=1), 8)),
        # After midnight the night shift is still the one that began the evening before.
        (at(DAY, 0, 30), "night", at(DAY - timedelta(days=1), 20), at(DAY, 8)),
        (at(DAY, 7, 59), "night", at(DAY - timedelta(days=1), 20), at(DAY, 8)),
        # The last minute of the year belongs to the night shift of 12-31 that ends in the new year.
        (at(date(2026, 12, 31), 23, 59), "night", at(date(2026, 12, 31), 20), at(date(2027, 1, 1), 8)),
    ],
)
def test_default_shifts_at_their_boundaries(moment: datetime, code: str, start: datetime, end: datetime) -> None:
    window = shift_at(DEFAULT_SHIFTS, SH, moment)
    assert (window.code, window.start, window.end) == (code, start, end)
    assert window.contains(moment)
    assert window.end - window.start == timedelta(hours=12)


def test_the_shift_before_crosses_midnight_both_ways() -> None:
    night = shift_at(DEFAULT_SHIFTS, SH, at(DAY, 3))
    day = previous_shift(DEFAULT_SHIFTS, SH, night)
    assert (day.code, day.start, day.end) == ("day", at(DAY - timedelta(days=1), 8), at(DAY - timedelta(days=1), 20))
    assert previous_shift(DEFAULT_SHIFTS, SH, shift_at(DEFAULT_SHIFTS, SH, at(DAY, 9))) == night


THREE = [
    Shift("a", "早班", "Early", time(0), time(8)),
    Shift("b", "中班", "Middle", time(8), time(16)),
    Shift("c", "晚班", "Late", time(16), time(0)),
]


def test_three_shifts_tile_the_day() -> None:
    assert [s.code for s in validate(list(reversed(THREE)))] == ["a", "b", "c"]
    assert shift_at(THREE, SH, at(DAY, 23, 59)).end == at(DAY + timedelta(days=1), 0)
    assert shift_at(THREE, SH, at(DAY, 0)).code == "a"
    assert shift_at(THREE, SH, at(DAY, 15, 59)).code == "b"


@pytest.mark.parametrize(
    "shifts",
    [
        [],
        [Shift("day", "白班", "", time(8), time(20))],  # half a day
        [Shift("day", "白班", "", time(8), time(20)), Shift("night", "夜班", "", time(19), time(8))],  # overlap
        [Shift("day", "白班", "", time(8), time(8))],  # empty
        [Shift("d", "白班", "", time(8), time(20)), Shift("d", "夜班", "", time(20), time(8))],  # same code
        [Shift("day", "白班", "", time(8, 0, 30), time(20)), Shift("night", "夜班", "", time(20), time(8, 0, 30))],
    ],
)
def test_definitions_that_do_not_tile_the_day_are_refused(shifts: list[Shift]) -> None:
    with pytest.raises(InvalidInput):
        validate(shifts)


def test_an_estate_works_the_defaults_until_it_sets_its_own(session: Session) -> None:
    place = make_estate(session)
    assert definitions(session, place.estate_id) == list(DEFAULT_SHIFTS)
    set_definitions(session, place.estate_id, THREE)
    assert [(s.code, s.starts, s.ends) for s in definitions(session, place.estate_id)] == [
        ("a", time(0), time(8)),
        ("b", time(8), time(16)),
        ("c", time(16), time(0)),
    ]
    with pytest.raises(InvalidInput):
        set_definitions(session, place.estate_id, THREE[:2])
