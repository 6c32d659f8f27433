"""The MQTT side of ingest: paho callbacks only convert and enqueue; acks are sent after the commit.

Mosquitto 2.0.11 (Debian 12's) breaks two promises under a backlog, and this module survives both
(measured by bench/ingest.py; mosquitto issue #2301, fixed in 2.0.13):
- it exceeds our MQTT 5 Receive Maximum once acks flow while messages are queued (128k unacked
  seen with a maximum of 10k), so the queue must not assume the maximum bounds it;
- it reuses a packet id that is still unacknowledged, so one PUBACK could retire a message we have
  not committed yet. We PUBACK an id only when no other message under that id is still pending, and
  then once for every message that held it: the broker keeps one in-flight entry per message, and an
  entry never acked stays for the whole session, lengthening the list it scans on every PUBACK
  (46,835 reused ids in one bench run left Mosquitto at 100 % CPU and the paced run at 1,860 msg/s).
"""

from __future__ import annotations

import json
import logging
import queue
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from core.mqtt import SessionOptions, connect_async, make_client, tls_from_settings
from core.mqtt_buffered import BufferedClient
from core.settings import Settings
from ingest.health import Health
from ingest.messages import RawMessage
from protocol.topics import PLATFORM_STATE_ALL, UPLINK_SUBSCRIPTION

log = logging.getLogger(__name__)

# Queue bound as a multiple of Receive Maximum: far above what a correct broker can send, so it only
# trips on a broker that ignores the maximum by an order of magnitude (memory stays bounded).
QUEUE_BOUND_FACTOR = 10
PUBACK = 0x40


# MQTT 5 DISCONNECT reason "Session taken over": another client connected with our client id.
SESSION_TAKEN_OVER = 142


class MqttSource:
    def __init__(
        self,
        settings: Settings,
        health: Health,
        *,
        subscriptions: Iterable[str] | None = None,
        state_topic: str = PLATFORM_STATE_ALL,
        yield_on_takeover: bool = False,
    ) -> None:
        self.options = SessionOptions(
            client_id=settings.mqtt_client_id,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            keepalive_s=settings.mqtt_keepalive_s,
            mqtt5=settings.mqtt_protocol == "5",
        )
        self.max_queue = QUEUE_BOUND_FACTOR * self.options.receive_maximum
        # None: every estate's uplink (one unpartitioned ingest); else one partition's estates (ingest/partitions.py).
        self.subscriptions: set[str] | None = None if subscriptions is None else set(subscriptions)
        self.state_topic = state_topic
        # A partition's session taken over by another client means a standby claimed the partition: we stay
        # off (paho would reconnect and take it back) and the partition's supervisor lets it go.
        self.yield_on_takeover = yield_on_takeover
        self.taken_over = threading.Event()
        self.queue: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
        self.resync_needed = False
        self.health = health
        self.host, self.port = settings.mqtt_host_port
        self._connection = 0  # generation; 0 = not connected
        self._generations = 0
        self._lock = threading.Lock()
        # Packet ids received on the current connection and not yet acknowledged, with how many
        # messages hold each (more than one only when the broker reuses an id).
        self._pending: Counter[int] = Counter()
        # Committed messages whose PUBACK waits for another message under the same id.
        self._deferred: Counter[int] = Counter()
        # QoS 1 messages of this connection received and not yet acked. At Receive Maximum we stop
        # reading: Mosquitto 2.0.11 keeps sending past it once we read fast (core.mqtt_buffered),
        # its in-flight list grew past 65,535 ids (so it reused them) and it then spent more CPU
        # scanning that list on each PUBACK than ingest spent on everything (bench/ingest.py).
        self._unacked = 0
        password = settings.mqtt_password.get_secret_value()
        self.client = make_client(
            self.options,
            username=settings.mqtt_username,
            password=password,
            tls=tls_from_settings(settings),
            buffered=settings.mqtt_fast_reader,
        )
        self.client.will_set(self.state_topic, json.dumps({"status": "offline"}), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        if isinstance(self.client, BufferedClient):
            self.client.read_paused = lambda: self._unacked >= self.options.receive_maximum

    def start(self) -> None:
        connect_async(self.client, self.host, self.port, self.options)
        self.client.loop_start()

    def stop(self) -> None:
        self.publish_state("offline")
        self.client.disconnect()
        self.client.loop_stop()

    def resync(self) -> None:
        """Reconnect on the same persistent session so the broker redelivers every message we left
        unacked (call only with nothing of the current connection left to acknowledge)."""
        log.warning(
            "reconnecting to collect messages dropped on queue overflow (%d so far)",
            self.health.counters.queue_overflow,
        )
        self.resync_needed = False
        self.client.disconnect()
        self.client.loop_stop()
        connect_async(self.client, self.host, self.port, self.options)
        self.client.loop_start()

    def publish_state(self, status: str) -> None:
        payload = {"status": status, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.client.publish(self.state_topic, json.dumps(payload), qos=1, retain=True)

    def ack(self, messages: Sequence[RawMessage]) -> int:
        """PUBACK, in receipt order, the committed messages of the current connection.

        Messages delivered on an earlier connection are redelivered on this one, so their old ids are
        left alone. An id another pending message still holds is not acked yet (see module doc)."""
        ids: list[int] = []
        with self._lock:
            current = self._connection
            for m in messages:
                if m.qos != 1 or m.connection != current:
                    continue
                left = self._pending[m.mid] - 1
                if left > 0:
                    self._pending[m.mid] = left
                    self._deferred[m.mid] += 1
                    continue
                del self._pending[m.mid]
                ids.extend([m.mid] * (1 + self._deferred.pop(m.mid, 0)))
            if ids:
                self._send_pubacks(ids)
                self._unacked -= len(ids)
        if ids and isinstance(self.client, BufferedClient):
            self.client.resume_reading()
        return len(ids)

    def _send_pubacks(self, ids: list[int]) -> None:
        # One buffer, one socket write and one wake-up of paho's thread for the whole batch, instead
        # of client.ack()'s per-message packet and wake-up byte (≈ 1,400 msg/s at full load).
        # _packet_queue is private paho API; paho is pinned < 3 and tests/e2e exercise this path.
        queue_packet = getattr(self.client, "_packet_queue", None)
        if queue_packet is None:
            for mid in ids:
                self.client.ack(mid, 1)
            return
        # Each PUBACK: fixed header 0x40, remaining length 2, packet id (MQTT 5 lets the reason code
        # be omitted when it is 0 = success).
        packet = struct.pack(f"!{len(ids)}I", *((0x4002 << 16) | mid for mid in ids))
        queue_packet(PUBACK, packet, 0, 0)

    # --- paho callbacks: run in paho's network thread; never block ------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connect refused: %s", reason)
            return
        with self._lock:
            self._generations += 1
            self._connection = self._generations
            self._pending.clear()
            self._deferred.clear()
            self._unacked = 0
        self.health.mqtt_connected = True
        log.info("MQTT connected (session present: %s)", flags.session_present)
        if self.subscriptions is None:
            client.subscribe(UPLINK_SUBSCRIPTION, qos=1)
        else:
            with self._lock:
                topics = sorted(self.subscriptions)
            if topics:  # a persistent session keeps them anyway; subscribing again is idempotent
                client.subscribe([(t, 1) for t in topics])
        self.publish_state(self.health.status)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._connection = 0
            self._unacked = 0  # never pause the reads that bring the next CONNACK
        self.health.mqtt_connected = False
        log.warning("MQTT disconnected: %s", reason)
        if self.yield_on_takeover and getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            log.error("session %s taken over by another client: giving the partition up", self.options.client_id)
            self.taken_over.set()
            client.disconnect()  # no automatic reconnect that would take the session back

    def set_subscriptions(self, topics: Iterable[str]) -> None:
        """Subscribe to the filters added since the last call and unsubscribe from those gone (a partition's
        estates imported or removed at run time); the persistent session remembers them across reconnects."""
        if self.subscriptions is None:
            return
        new = set(topics)
        with self._lock:
            added, removed = sorted(new - self.subscriptions), sorted(self.subscriptions - new)
            self.subscriptions = new
            connected = self._connection != 0
        if not connected:
            return  # _on_connect subscribes to the whole set
        if added:
            log.info("subscribing to %d new estate(s): %s", len(added), ", ".join(added[:5]))
            self.client.subscribe([(t, 1) for t in added])
        if removed:
            self.client.unsubscribe(removed)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        if self.queue.qsize() >= self.max_queue:
            # Not acked, so the broker still owns it; it redelivers on the next connection, which
            # the pipeline opens (resync) once it has drained and acknowledged the queue.
            if not self.resync_needed:
                log.error("ingest queue full (%d); leaving messages unacked for redelivery", self.queue.qsize())
            self.resync_needed = True
            self.health.counters.queue_overflow += 1
            return
        if msg.qos == 1:
            with self._lock:
                held = self._pending[msg.mid]
                self._pending[msg.mid] = held + 1
                self._unacked += 1
            if held:
                self.health.counters.broker_id_reuse += 1
        self.queue.put(
            RawMessage(
                topic=topic,
                payload=bytes(msg.payload),
                mid=msg.mid,
                qos=msg.qos,
                received_at=datetime.now(UTC),
                connection=self._connection,
            )
        )
        self.health.counters.received += 1
