"""A QoS 1 test publisher that records which messages the broker acknowledged (the oracle's input).

After Jepsen's total-queue checker: every PUBLISH the broker acked must end up stored exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class PublishLog:
    sent: dict[int, str] = field(default_factory=dict)  # mid -> key
    acked: set[str] = field(default_factory=set)
    all_keys: list[str] = field(default_factory=list)
    # When each PUBACK arrived (time.monotonic()): what a broker crash may lose is what it acked after its last
    # save, a stretch of time, whatever the rate then (the pacer catches up in bursts after a stall).
    acked_at: dict[str, float] = field(default_factory=dict)

    def ack(self, key: str) -> None:
        self.acked.add(key)
        self.acked_at[key] = time.monotonic()


class OraclePublisher:
    """Publishes (key, topic, payload) tuples; ``log.acked`` holds keys whose PUBACK arrived.

    Keeps at most ``window`` messages unacknowledged (paho keys in-flight messages by a 16-bit id).
    A fresh clean session per connection: a message not acked before a broker restart is simply not
    counted as acknowledged (it may or may not be stored; the oracle only judges acked ones).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        window: int = 500,
        client_id: str = "oracle-pub",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.log = PublishLog()
        self._window = threading.BoundedSemaphore(window)
        self._lock = threading.Lock()
        self._early: set[int] = set()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho's hint says int; 0.2 s works
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("publisher could not connect")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            key = self.log.sent.pop(mid, None)
            if key is None:
                # The PUBACK beat publish_all to recording the id (the lock is never held across
                # client.publish: paho calls us with its own lock held, so that would deadlock).
                self._early.add(mid)
                return
            self.log.ack(key)
            self._window.release()

    def _on_disconnect(self, *args: Any) -> None:
        self.connected.clear()
        # Messages in flight on a dropped connection are not counted as acked; free their slots.
        with self._lock:
            for _ in range(len(self.log.sent)):
                self._window.release()
            self.log.sent.clear()
            self._early.clear()

    def publish_all(
        self, items: Iterable[tuple[str, str, bytes]], *, rate: float = 0, stop: threading.Event | None = None
    ) -> None:
        interval = 1 / rate if rate else 0
        next_at = time.monotonic()
        for key, topic, payload in items:
            if stop is not None and stop.is_set():
                return
            while not self.connected.wait(0.5):
                if stop is not None and stop.is_set():
                    return
            self._window.acquire()
            self.log.all_keys.append(key)
            info = self.client.publish(topic, payload, qos=1)
            with self._lock:
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self._window.release()
                elif info.mid in self._early:
                    self._early.discard(info.mid)
                    self.log.ack(key)
                    self._window.release()
                else:
                    self.log.sent[info.mid] = key
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def drain(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.log.sent and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
