"""An estate with one room of every kind (tests/support/world.py), built in the test's rolled-back session, and
a driven clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from core import clock
from tests.support.world import RoomsEstate, rooms_estate_in

SH = ZoneInfo("Asia/Shanghai")
# 08:00 Shanghai time: the 2 h power-room round [08:00, 10:00) begins.
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=SH)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


LV_POINTS = (("LV1", "voltage_a_v", 228.0), ("CAP1", "case_temp_c", 38.0), ("ENV", "room_temp_c", 29.0))


@pytest.fixture
def est(session: Session) -> RoomsEstate:
    return rooms_estate_in(session, "rd")


@pytest.fixture
def frozen_clock() -> Iterator[list[datetime]]:
    """core.clock.now() returns holder[0]; tests move it."""
    holder = [at(0)]
    clock.set_clock(lambda: holder[0])
    yield holder
    clock.reset_clock()
