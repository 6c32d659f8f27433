"""The publisher's bounds (in-flight window, rate), the pacer, and the CLI helpers — no broker."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from core import clock
from simulators.cli import parse_broker, parse_duration_s, parse_scenarios
from simulators.clock import Pacer, default_start, parse_duration
from simulators.frames import Frame
from simulators.publisher import InflightWindow, Publisher, RateLimiter
from simulators.scenarios import ScenarioSpec

T0 = datetime(2026, 11, 26, tzinfo=UTC)


def frame(i: int) -> Frame:
    return Frame(f"steward/t/up/D{i}/meter", b"{}", f"D{i}", "meter", T0)


class FakeClient:
    """Stands in for paho: records publishes; acks them (on_publish) when told to, from any thread."""

    def __init__(self, rc: MQTTErrorCode = MQTTErrorCode.MQTT_ERR_SUCCESS) -> None:
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.rc = rc
        self.unacked: list[int] = []
        self.sent = 0
        self.lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        assert qos == 1
        with self.lock:
            self.sent += 1
            mid = self.sent
            if self.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.unacked.append(mid)
        info = mqtt.MQTTMessageInfo(mid)
        info.rc = self.rc
        return info

    def ack(self, n: int | None = None) -> int:
        with self.lock:
            take = self.unacked[: n if n is not None else len(self.unacked)]
            del self.unacked[: len(take)]
        for mid in take:
            self.on_publish(self, None, mid, None, None)
        return len(take)


def test_window_blocks_at_its_limit() -> None:
    window = InflightWindow(3)
    assert all(window.acquire(timeout=0.01) for _ in range(3))
    assert not window.acquire(timeout=0.05)
    window.release()
    assert window.acquire(timeout=0.01)
    assert window.high_water == 3


def test_window_rejects_limits_beyond_packet_ids() -> None:
    with pytest.raises(ValueError, match="65,534"):
        InflightWindow(65_535)


def test_publish_blocks_without_acks_until_stopped() -> None:
    client = FakeClient()
    pub = Publisher(client, window=5)
    for i in range(5):
        assert pub.publish(frame(i))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert not pub.publish(frame(5), stop)  # no PUBACK arrives: the sixth never goes out
    assert time.monotonic() - started >= 0.15
    assert client.sent == 5
    client.ack(1)
    assert pub.publish(frame(6))
    assert pub.window.high_water == 5


def test_window_bounds_concurrent_traffic() -> None:
    client = FakeClient()
    pub = Publisher(client, window=16)
    done = threading.Event()

    def broker() -> None:  # acknowledges in random batches, like a busy broker
        r = random.Random(1)
        while not done.is_set() or client.unacked:
            client.ack(r.randint(0, 4))
            time.sleep(0.0005)

    acker = threading.Thread(target=broker)
    acker.start()
    for i in range(3000):
        assert pub.publish(frame(i))
    assert pub.window.wait_empty(5)
    done.set()
    acker.join(5)
    assert pub.counts.published == 3000
    assert pub.window.acked == 3000
    assert pub.window.high_water <= 16
    assert pub.window.in_flight == 0


def test_publish_while_disconnected_still_counts_as_in_flight() -> None:
    # paho keeps a QoS 1 message it could not send (NO_CONN) and sends it after reconnecting.
    client = FakeClient(rc=mqtt.MQTT_ERR_NO_CONN)
    pub = Publisher(client, window=2)
    assert pub.publish(frame(1))
    assert pub.window.in_flight == 1
    assert pub.counts.published == 1


def test_refused_publish_frees_its_slot() -> None:
    client = FakeClient(rc=mqtt.MQTT_ERR_QUEUE_SIZE)
    pub = Publisher(client, window=1)
    for i in range(3):
        assert pub.publish(frame(i))
    assert pub.window.in_flight == 0
    assert pub.counts.refused == 3


def test_connection_callbacks_are_counted() -> None:
    client = FakeClient()
    pub = Publisher(client)
    client.on_connect(client, None, None, ReasonCode(PacketTypes.CONNACK, identifier=0), None)
    assert pub.connected.is_set()
    client.on_disconnect(client, None, None, ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), None)
    assert not pub.connected.is_set()
    assert (pub.counts.connects, pub.counts.disconnects) == (1, 1)
    assert pub.counts.last_error is not None


def test_rate_limiter_spaces_messages() -> None:
    clock = [100.0]
    limiter = RateLimiter(10, monotonic=lambda: clock[0])
    delays = [limiter.delay() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock[0] += 10  # a long stall does not turn into a burst of catch-up credit
    assert limiter.delay() == 0.0
    assert limiter.delay() == pytest.approx(0.1)
    assert RateLimiter(0).delay() == 0.0


def test_publisher_applies_the_rate() -> None:
    slept: list[float] = []
    clock = [0.0]

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    client = FakeClient()
    pub = Publisher(client, window=100, rate=50, sleep=sleep)
    pub.limiter = RateLimiter(50, monotonic=lambda: clock[0])
    for i in range(11):
        pub.publish(frame(i))
    assert clock[0] == pytest.approx(0.2)  # 11 messages at 50/s span 10 gaps of 20 ms


class FakeTime:
    def __init__(self) -> None:
        self.mono = 0.0
        self.wall = T0

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += timedelta(seconds=s)


def test_pacer_maps_simulated_to_wall_time() -> None:
    ft = FakeTime()
    past = T0 - timedelta(hours=1)
    pacer = Pacer(past, 60, monotonic=lambda: ft.mono, wall=lambda: ft.wall)
    assert pacer.delay(past + timedelta(minutes=30)) == pytest.approx(30)  # 30 min at 60× = 30 s
    ft.advance(30)
    assert pacer.delay(past + timedelta(minutes=30)) == 0


def test_pacer_never_runs_ahead_of_the_wall_clock() -> None:
    ft = FakeTime()
    pacer = Pacer(T0, 0, monotonic=lambda: ft.mono, wall=lambda: ft.wall)  # 0 = as fast as possible
    assert pacer.delay(T0 - timedelta(days=1)) == 0
    assert pacer.delay(T0 + timedelta(seconds=10)) == pytest.approx(10)


def test_pacer_wait_is_interruptible() -> None:
    stop = threading.Event()
    stop.set()
    pacer = Pacer(clock.now(), 1)
    assert not pacer.wait_until(clock.now() + timedelta(hours=1), stop)


def test_default_start() -> None:
    assert default_start(1, 3600, now=T0) == T0
    assert default_start(60, 3600, now=T0) == T0 - timedelta(hours=1)
    assert default_start(0, None, now=T0) == T0 - timedelta(days=1)
    assert default_start(1000, 90 * 86400, now=T0) == T0 - timedelta(days=29)  # stay inside 30 days


def test_cli_helpers() -> None:
    assert parse_scenarios(["rollover,late@1h", "spike:HW-1-1-101"]) == [
        ScenarioSpec("rollover"),
        ScenarioSpec("late", None, timedelta(hours=1)),
        ScenarioSpec("spike", "HW-1-1-101"),
    ]
    assert parse_duration_s("90m") == 5400
    assert parse_duration_s(None) is None
    assert parse_duration("1.5d") == timedelta(hours=36)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert parse_broker("mqtt://broker.local:1884") == ("broker.local", 1884)
    assert parse_broker("127.0.0.1") == ("127.0.0.1", 1883)
