"""Publishing frames to an MQTT broker: paho-mqtt 2, QoS 1, bounded in-flight window, optional rate.

Why a window of our own: paho queues every QoS 1 message it cannot put in flight yet, without limit,
and MQTT packet ids are 16-bit — a fast producer would grow memory without bound and, past 65,535
unacknowledged messages, run out of ids. ``InflightWindow`` makes ``publish`` block once ``window``
messages are waiting for their PUBACK; ``on_publish`` (the PUBACK) releases a slot.
paho resends unacknowledged QoS 1 messages itself after a reconnect, so each accepted publish gets
exactly one ``on_publish`` eventually and slots are not leaked by disconnects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.frames import Frame

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 200  # far below 65,535 packet ids; plenty to keep a LAN broker busy
MIN_SLEEP_S = 0.002


class InflightWindow:
    """A counting gate: at most ``limit`` messages published but not yet acknowledged."""

    def __init__(self, limit: int) -> None:
        if not 1 <= limit < 65_535:
            raise ValueError("in-flight window must be between 1 and 65,534")
        self.limit = limit
        self._cond = threading.Condition()
        self._in_flight = 0
        self.high_water = 0  # the most ever in flight: tests assert it never exceeds ``limit``
        self.acked = 0

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def acquire(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Take a slot; False if ``stop`` was set or ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._in_flight >= self.limit:
                if stop is not None and stop.is_set():
                    return False
                wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if wait <= 0:
                    return False
                self._cond.wait(wait)
            self._in_flight += 1
            self.high_water = max(self.high_water, self._in_flight)
            return True

    def release(self) -> None:
        """A PUBACK arrived (or a publish was refused before it left): free one slot."""
        with self._cond:
            if self._in_flight == 0:
                log.warning("in-flight window released more often than acquired")
                return
            self._in_flight -= 1
            self.acked += 1
            self._cond.notify()

    def wait_empty(self, timeout: float) -> bool:
        """Wait until every message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True


class RateLimiter:
    """Spaces calls ``1/rate`` seconds apart (``rate <= 0``: no limit). Does not burst after a stall."""

    def __init__(self, rate: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._monotonic = monotonic
        self._next = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next call may go; reserves that slot."""
        if not self.interval:
            return 0.0
        now = self._monotonic()
        slot = max(self._next, now)
        self._next = slot + self.interval
        return slot - now


class MqttClient(Protocol):
    """The slice of ``paho.mqtt.client.Client`` the publisher uses (tests pass a fake)."""

    on_connect: Any
    on_disconnect: Any
    on_publish: Any

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo: ...


@dataclass
class PublishCounts:
    published: int = 0  # handed to paho (accepted into its session)
    refused: int = 0  # paho refused to queue (should stay 0)
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None


class Publisher:
    """Sends frames with QoS 1 through one MQTT connection, at most ``window`` unacknowledged."""

    def __init__(
        self,
        client: MqttClient,
        *,
        window: int = DEFAULT_WINDOW,
        rate: float = 0.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.window = InflightWindow(window)
        self.limiter = RateLimiter(rate)
        self.counts = PublishCounts()
        self.connected = threading.Event()
        self._sleep = sleep
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish

    # paho callbacks run on its network thread: count and signal, never block.
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self.counts.last_error = f"connect refused: {reason}"
            log.warning("MQTT connect refused: %s", reason)
            return
        self.counts.connects += 1
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self.counts.disconnects += 1
        self.connected.clear()
        if getattr(reason, "is_failure", False):
            self.counts.last_error = f"disconnected: {reason}"
            log.warning("MQTT disconnected (%s); paho will reconnect and resend unacknowledged messages", reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None, properties: Any = None) -> None:
        self.window.release()

    def publish(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        """Queue one frame (QoS 1); blocks for the rate limit and a free window slot. False if stopped."""
        wait = self.limiter.delay()
        # Sub-millisecond naps cost more than they wait; the limiter keeps the debt, so the average
        # rate still holds and the sleep happens once the debt is worth it.
        if wait >= MIN_SLEEP_S:
            if self._sleep is not None:
                self._sleep(wait)
            elif stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)
        if not self.window.acquire(stop):
            return False
        info = self.client.publish(frame.topic, frame.payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # Not queued (e.g. paho's own queue limit): no PUBACK will ever come for it.
            self.window.release()
            self.counts.refused += 1
            self.counts.last_error = mqtt.error_string(info.rc)
            return True
        # NO_CONN still means "stored in the session": paho sends it once reconnected.
        self.counts.published += 1
        return True


def connect(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    window: int = DEFAULT_WINDOW,
    keepalive: int = 30,
) -> mqtt.Client:
    """A paho client (MQTT 3.1.1, which every broker we use speaks) connecting in the background."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)  # unlimited in paho; InflightWindow is the bound
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.connect_async(host, port, keepalive=keepalive)
    client.loop_start()  # retries the first connection too (loop_forever(retry_first_connection=True))
    return client
