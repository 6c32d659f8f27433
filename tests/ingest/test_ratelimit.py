"""The per-device rate limit (matrix M15): a token bucket filled by the device's own clock, excess quarantined
with reason ``rate_limited`` by the decoder. No broker, no writes; the registry comes from the real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from ingest.decode import Decoder, Reason
from ingest.ratelimit import DeviceRateLimiter, rate_limiter
from ingest.registry import DeviceRegistry
from tests.ingest.conftest import Estate, frame, new_estate_code, raw
from tests.support.clock import INSTANTS, pinned
from tests.support.estate import load_small_estate

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NOW = INSTANTS["sh-1200"].astimezone(UTC)


def test_burst_then_factor_per_interval_of_device_time() -> None:
    limiter = DeviceRateLimiter(factor=10, burst=5)
    # 100× the rate of a 1 s device: a reading every 10 ms of its clock.
    allowed = [limiter.allow(1, 1, T0 + timedelta(milliseconds=10 * n)) for n in range(1000)]
    # The burst, then one every 100 ms (10 per second of device time) over the remaining 9.99 s.
    assert allowed[:5] == [True] * 5
    assert 5 + 99 <= sum(allowed) <= 5 + 100
    assert limiter.allow(2, 1, T0)  # another device has its own bucket


def test_backlog_at_normal_device_spacing_is_never_limited() -> None:
    """A broker backlog or a replayed history arrives all at once but is stamped at the device's interval."""
    limiter = DeviceRateLimiter(factor=2, burst=1)
    assert all(limiter.allow(7, 60, T0 + timedelta(seconds=60 * n)) for n in range(500))


def test_repeated_or_backwards_timestamps_refill_nothing() -> None:
    limiter = DeviceRateLimiter(factor=10, burst=3)
    assert [limiter.allow(1, 60, T0) for _ in range(5)] == [True, True, True, False, False]
    assert not limiter.allow(1, 60, T0 - timedelta(hours=1))  # late data: no refill
    assert limiter.allow(1, 60, T0 + timedelta(seconds=6))  # 6 s of a 60 s device at 10×: one token


def test_settings_switch_it_off_with_factor_zero() -> None:
    from core.settings import Settings

    assert rate_limiter(Settings(env="testing", ingest_rate_limit_factor=0)) is None
    on = rate_limiter(Settings(env="testing"))
    assert on is not None
    assert (on.factor, on.burst) == (10, 100)
    with pytest.raises(ValueError, match="factor must be positive"):
        DeviceRateLimiter(factor=0, burst=1)


@pytest.fixture(scope="module")
def est(engine: Engine) -> Estate:
    code = new_estate_code("irl")
    load_small_estate(engine, code, sensors=2, meters=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE devices SET expected_interval_s = 1 WHERE estate_id = (SELECT id FROM estates WHERE code = :e)"
            ),
            {"e": code},
        )
    return Estate(code, engine)


@pytest.fixture(autouse=True)
def _pinned_clock() -> Iterator[None]:
    with pinned(NOW):
        yield


def test_decoder_quarantines_the_flood_and_keeps_the_neighbour(engine: Engine, est: Estate) -> None:
    registry = DeviceRegistry()
    with engine.connect() as conn:
        registry.load(conn)
    decoder = Decoder(
        registry,
        accept_past=timedelta(days=30),
        accept_future=timedelta(minutes=5),
        max_payload_bytes=4096,
        limiter=DeviceRateLimiter(factor=10, burst=5),
    )
    start = NOW - timedelta(minutes=1)
    flood = [
        raw(est.topic(est.sensor(0), "telemetry"), frame(start + timedelta(milliseconds=10 * n), seq=n))
        for n in range(100)
    ]
    calm = [raw(est.topic(est.sensor(1), "telemetry"), frame(start + timedelta(seconds=n), seq=n)) for n in range(5)]
    # A door controller's swipes are events: never limited, however dense.
    swipes = [
        raw(
            est.topic(est.controller, "swipe"),
            {
                "v": 1,
                "ts": (start + timedelta(milliseconds=n)).isoformat(),
                "door": "1-1-main",
                "card": f"C{n:04d}",
                "granted": True,
            },
        )
        for n in range(50)
    ]
    out = decoder.decode(flood + calm + swipes)
    limited = [q for q in out.quarantined if q.reason == Reason.rate_limited]
    # 100 readings in 0.99 s of device time: the burst of 5 plus 10 per second → 5 + 9 stored.
    assert out.rate_limited == len(limited) == len(out.quarantined) == 100 - 14
    assert {q.device_code for q in limited} == {est.sensor(0)}
    assert "10× its expected rate" in limited[0].detail
    assert len(out.sample_ts) == (14 + 5) * 5  # five metrics a frame
    assert len(out.swipes) == 50
