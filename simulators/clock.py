"""Simulated time, and the mapping from simulated time to wall time for live runs.

The fleet never reads the wall clock: it is driven by a simulated clock (start + n × step), which is
what keeps generated frames deterministic. Only a live run paces itself against the wall, through
``Pacer`` — and a device cannot report the future, so the pacer never lets simulated time get ahead of
the wall clock (readings dated in the future would be quarantined by ingest).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from core import clock as core_clock


def require_aware(ts: datetime, what: str = "time") -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {ts!r}")
    return ts


def ticks(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    """start+step, start+2·step, … up to and including ``end`` (the last tick is clamped to ``end``)."""
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    t = start
    while t < end:
        t = min(t + step, end)
        yield t


def default_start(speed: float, duration_s: float | None, now: datetime | None = None) -> datetime:
    """Where a live run's simulated clock starts.

    Realtime (speed 1) starts now. Faster runs replay the recent past so that they end at about "now"
    instead of producing future readings: ``now − duration`` (or one day when unbounded), at most
    29 days back so nothing falls outside ingest's 30-day acceptance window.
    """
    now = (now or core_clock.now()).astimezone(UTC).replace(microsecond=0)
    if speed == 1:
        return now
    back = timedelta(seconds=duration_s) if duration_s is not None else timedelta(days=1)
    return now - min(back, timedelta(days=29))


class Pacer:
    """Waits until simulated time ``t`` may be emitted: ``speed`` simulated seconds per wall second.

    ``speed <= 0`` means as fast as possible. Either way ``t`` is never emitted before the wall clock
    reaches it, so a fast replay of the past turns into realtime once it catches up with now.
    """

    def __init__(
        self,
        sim_start: datetime,
        speed: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = core_clock.now,
    ) -> None:
        self.sim_start = require_aware(sim_start, "sim_start")
        self.speed = speed
        self._monotonic = monotonic
        self._wall = wall
        self._mono_start = monotonic()

    def delay(self, t: datetime) -> float:
        """Seconds to wait before ``t`` may be emitted (0 when it is already due)."""
        wait = (t - self._wall()).total_seconds()  # never ahead of the wall clock
        if self.speed > 0:
            due = self._mono_start + (t - self.sim_start).total_seconds() / self.speed
            wait = max(wait, due - self._monotonic())
        return max(0.0, wait)

    def wait_until(self, t: datetime, stop: threading.Event) -> bool:
        """Block until ``t`` is due; False if ``stop`` was set first."""
        while True:
            wait = self.delay(t)
            if wait <= 0:
                return not stop.is_set()
            # Short naps: the wall clock may jump (NTP) and stop must stay responsive.
            if stop.wait(min(wait, 0.5)):
                return False


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``900`` or ``900s``, ``15m``, ``2h``, ``1.5d`` → timedelta (for CLI options and scenario onsets)."""
    text = text.strip().lower()
    unit = text[-1] if text and text[-1] in _UNITS else "s"
    number = text[:-1] if text and text[-1] in _UNITS else text
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use 900, 90s, 15m, 2h or 1d)") from None
    if value < 0:
        raise ValueError(f"duration must not be negative: {text!r}")
    return timedelta(seconds=value * _UNITS[unit])
