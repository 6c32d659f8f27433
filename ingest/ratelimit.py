"""Per-device rate limit (reliability matrix M15): a device flooding far past its reporting interval has the
excess quarantined (reason ``rate_limited``), so one broken device cannot crowd out the estate.

A token bucket per device, filled by the advance of the *device's own clock* (the readings' ``ts``), not by
arrival time. Why device time: the same device legitimately arrives in bursts — a broker backlog drained
after an outage, a simulator or gateway replaying its history, ingest catching up after a restart — and
all of those carry timestamps spread at the device's normal interval. A flooding device (a firmware loop,
a stuck retry) stamps its readings densely (or repeats the same stamp), so it empties its bucket whatever
the arrival pattern.

- rate: ``factor`` readings per ``expected_interval_s`` of device time (setting
  ``ingest_rate_limit_factor``; 0 switches the limit off);
- burst: ``burst`` messages above that (setting ``ingest_rate_limit_burst``) — a device rebooting and
  resending, or reporting an alarm state change between regular frames, stays well inside it;
- a message costs one token; a device clock going backwards (late data) refills nothing;
- only periodic readings (telemetry, meter readings) are limited: swipes, door events, statuses and acks are
  events without an interval to hold them to.

Hot path: a dict lookup and a few float operations per message, no SQL; state is per process and starts
full on restart (a restarted ingest forgives, it never punishes twice). A batch decoded a second time (the
rare retry of a batch that named an unregistered device, or poison isolation) is judged again: that can only
quarantine more of a flood, never store a message twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.settings import Settings


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last_ts: float  # device time (epoch seconds) of the newest reading seen


class DeviceRateLimiter:
    def __init__(self, *, factor: float, burst: int) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive (use no limiter to switch it off)")
        self.factor = factor
        self.burst = float(burst)
        self._buckets: dict[int, _Bucket] = {}

    def allow(self, device_id: int, interval_s: int, ts: datetime) -> bool:
        """Take one token for a message of ``device_id`` stamped ``ts``; False when its bucket is empty."""
        t = ts.timestamp()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            self._buckets[device_id] = _Bucket(self.burst - 1.0, t)
            return True
        if t > bucket.last_ts:
            rate = self.factor / max(interval_s, 1)  # tokens per second of device time
            bucket.tokens = min(self.burst, bucket.tokens + (t - bucket.last_ts) * rate)
            bucket.last_ts = t
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def detail(self, interval_s: int) -> str:
        """The quarantine row's detail: what the limit is, so an operator can tell a flood from a setting."""
        return (
            f"device exceeds {self.factor:g}× its expected rate (1 per {interval_s} s of device time, "
            f"burst {self.burst:g}): excess quarantined"
        )


def rate_limiter(settings: Settings) -> DeviceRateLimiter | None:
    """The limiter the settings ask for; None when ``ingest_rate_limit_factor`` is 0 (off)."""
    if settings.ingest_rate_limit_factor <= 0:
        return None
    return DeviceRateLimiter(factor=settings.ingest_rate_limit_factor, burst=settings.ingest_rate_limit_burst)


__all__ = ["DeviceRateLimiter", "rate_limiter"]
