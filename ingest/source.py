"""The MQTT side of ingest: paho callbacks only convert and enqueue; acks are sent after the commit."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from core.mqtt import SessionOptions, connect_async, make_client
from core.settings import Settings
from ingest.health import Health
from ingest.messages import RawMessage
from protocol.topics import PLATFORM_STATE_ALL, UPLINK_SUBSCRIPTION

log = logging.getLogger(__name__)


class MqttSource:
    def __init__(self, settings: Settings, health: Health) -> None:
        self.options = SessionOptions(
            client_id=settings.mqtt_client_id,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            keepalive_s=settings.mqtt_keepalive_s,
            mqtt5=settings.mqtt_protocol == "5",
        )
        # The broker should never have more than receive_maximum unacked messages out to us, but
        # Mosquitto 2.0.11 was seen overshooting it while draining a backlog after a database outage
        # (16k unacked with Receive Maximum 10k). Headroom makes that rare; when it still overflows,
        # the dropped messages stay unacked and ``resync`` fetches them again (see _on_message).
        self.queue: queue.Queue[RawMessage] = queue.Queue(maxsize=2 * self.options.receive_maximum)
        self.resync_needed = False
        self.health = health
        self.host, self.port = settings.mqtt_host_port
        self._connection = 0  # generation; 0 = not connected
        self._generations = 0
        self._lock = threading.Lock()
        password = settings.mqtt_password.get_secret_value()
        self.client = make_client(self.options, username=settings.mqtt_username, password=password)
        self.client.will_set(PLATFORM_STATE_ALL, json.dumps({"status": "offline"}), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

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
            "reconnecting to collect %d messages dropped on queue overflow", self.health.counters.queue_overflow
        )
        self.resync_needed = False
        self.client.disconnect()
        self.client.loop_stop()
        connect_async(self.client, self.host, self.port, self.options)
        self.client.loop_start()

    def publish_state(self, status: str) -> None:
        payload = {"status": status, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.client.publish(PLATFORM_STATE_ALL, json.dumps(payload), qos=1, retain=True)

    def ack(self, messages: Sequence[RawMessage]) -> int:
        """PUBACK, in receipt order, every message of the current connection. Messages delivered on an
        earlier connection are redelivered by the broker on this one, so their old ids are left alone
        (acking an old id could acknowledge a different message)."""
        sent = 0
        with self._lock:
            current = self._connection
            for m in messages:
                if m.qos > 0 and m.connection == current:
                    self.client.ack(m.mid, m.qos)
                    sent += 1
        return sent

    # --- paho callbacks: run in paho's network thread; never block ------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connect refused: %s", reason)
            return
        with self._lock:
            self._generations += 1
            self._connection = self._generations
        self.health.mqtt_connected = True
        log.info("MQTT connected (session present: %s)", flags.session_present)
        client.subscribe(UPLINK_SUBSCRIPTION, qos=1)
        self.publish_state(self.health.status)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._connection = 0
        self.health.mqtt_connected = False
        log.warning("MQTT disconnected: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        raw = RawMessage(
            topic=topic,
            payload=bytes(msg.payload),
            mid=msg.mid,
            qos=msg.qos,
            received_at=datetime.now(UTC),
            connection=self._connection,
        )
        try:
            self.queue.put_nowait(raw)
            self.health.counters.received += 1
        except queue.Full:
            # Not acked, so the broker still owns it; it redelivers on the next connection, which
            # the pipeline opens (resync) once it has drained and acknowledged the queue.
            if not self.resync_needed:
                log.error("ingest queue full (%d); leaving messages unacked for redelivery", self.queue.qsize())
            self.resync_needed = True
            self.health.counters.queue_overflow += 1
