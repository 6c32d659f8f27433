"""Time as a test input: a pinned `core.clock`, and the instants the time-sensitive tests run at.

The product reads the clock only through `core.clock.now()`; tests pin it with `pinned(t)` (or the
`frozen_clock` / `at_instant` fixtures in tests/conftest.py) and never read the wall clock for a decision.

`INSTANTS` are moments in Asia/Shanghai where an hour-of-day mistake shows: just after midnight (the
local day differs from the UTC day), just before and after a window or shift boundary, noon, one
minute before midnight, and the last minute of a quarter (day, month, quarter and year roll over
together). Their keys are the test ids: ``test_x[sh-0030]``, ``test_x[sh-q4-end-2359]``, …
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core import clock

SH = ZoneInfo("Asia/Shanghai")

# An ordinary Thursday mid-quarter, and the last day of a quarter (and of the year).
_DAY = (2026, 11, 26)
INSTANTS: dict[str, datetime] = {
    "sh-0030": datetime(*_DAY, 0, 30, tzinfo=SH),
    "sh-0759": datetime(*_DAY, 7, 59, tzinfo=SH),
    "sh-1200": datetime(*_DAY, 12, 0, tzinfo=SH),
    "sh-2001": datetime(*_DAY, 20, 1, tzinfo=SH),
    "sh-2359": datetime(*_DAY, 23, 59, tzinfo=SH),
    "sh-q4-end-2359": datetime(2026, 12, 31, 23, 59, tzinfo=SH),
}


class FrozenClock:
    """What `core.clock.now()` returns while pinned; tests move it with `set` / `advance`."""

    def __init__(self, t: datetime) -> None:
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"a pinned clock needs an aware datetime, got {t!r}")
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t

    def advance(self, delta: timedelta) -> datetime:
        self.t += delta
        return self.t


def local_2359_after(at: datetime) -> datetime:
    """23:59 Shanghai time of `at`'s local day, or of the next day once `at` has reached it: the SOP's
    "same day" deadline, worked out here independently of tickets.sla."""
    local = at.astimezone(SH)
    day = local.date() if local.time() < time(23, 59) else local.date() + timedelta(days=1)
    return datetime.combine(day, time(23, 59), SH)


def same_day_due(at: datetime) -> datetime:
    """§4's "same day" deadline of a ticket received at `at`, worked out here independently of tickets.sla:
    23:59 Shanghai time of the local day, but the next day's noon when received at or after 20:00."""
    local = at.astimezone(SH)
    if local.time() >= time(20, 0):
        return datetime.combine(local.date() + timedelta(days=1), time(12, 0), SH)
    return local_2359_after(at)


def latest_local(hour: int, now: datetime) -> datetime:
    """The latest ``hour``:00 Shanghai time at or before `now`: a fixed time of day in the recent past, for
    tests whose data must be recent (a real ingest's acceptance window) but not depend on the hour they run."""
    local = now.astimezone(SH)
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at <= local else at - timedelta(days=1)


@contextmanager
def pinned(t: datetime) -> Iterator[FrozenClock]:
    """`core.clock.now()` returns the yielded clock's time until the block ends (on failure too)."""
    frozen = FrozenClock(t)
    clock.set_clock(frozen)
    try:
        yield frozen
    finally:
        clock.reset_clock()


# For a module whose module-scoped world is built at the instant (the parameter is then module-scoped:
# each instant builds the world once). Usage: ``pytestmark = per_instant_module``, and take ``instant``.
per_instant_module = pytest.mark.parametrize("instant", list(INSTANTS.values()), ids=list(INSTANTS), scope="module")


def simulated_window_start(hour: int = 10, days_back: int = 2) -> datetime:
    """Where an end-to-end simulation starts: ``hour`` o'clock Shanghai time ``days_back`` days ago, so it covers
    the same hours of the day (the simulated sensors follow daily shapes) whenever the test runs, always in the
    past and inside ingest's accept window."""
    local = clock.now().astimezone(SH)
    return (local.replace(hour=hour, minute=0, second=0, microsecond=0) - timedelta(days=days_back)).astimezone(
        ZoneInfo("UTC")
    )
