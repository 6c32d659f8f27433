"""Outbox → MQTT downlink: publish pending device commands with QoS 1, mark them sent after the PUBACK.

Domains write a command as an `outbox` row in their own transaction (DESIGN.md §2); this dispatcher
runs as a worker job every 2 s, in a transaction of its own:

1. claim pending rows (``sent_at IS NULL``, not expired) with ``FOR UPDATE SKIP LOCKED``, oldest
   first (`claim_statement`), so two dispatchers never hold — and so never send — the same row;
2. publish each on its downlink topic at QoS 1 and wait for the broker's PUBACKs;
3. for each row: ``attempts + 1``; ``sent_at`` only when the broker acknowledged it with success.
   A row that failed waits `backoff_s(attempts)` before the next try.

Delivery is at least once: a crash between the PUBACK and the commit publishes the row again on the
next run. The payload's ``command_id`` is the outbox id, so a device applies a command once and its
``ack`` (stored by ingest as ``outbox.acked_at``) names the row; it counts only on the topic of the row's
``device_id``, so one device cannot acknowledge another's command.

Expired rows (``expires_at`` passed before they were sent) are never published. The schema has no
column to mark them, so they stay ``sent_at IS NULL`` and are logged once, on the run in which they
expire; a `status` / `expired_at` column would let the API show them (left to the schema owner).
The retry backoff is kept in the dispatcher's memory for the same reason (no "next attempt" column):
after a restart every failed row is tried once straight away, which is harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from core.mqtt import SessionOptions, TlsOptions, make_client, tls_from_settings
from core.settings import Settings
from protocol.payloads import command_wire
from storage.models import Outbox

log = logging.getLogger(__name__)

BATCH = 200
PUBACK_TIMEOUT_S = 5.0
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0


def backoff_s(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed try: 2, 4, 8, … capped at 5 min."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1))


def claim_statement(now: datetime, limit: int = BATCH, skip_ids: Sequence[int] = ()) -> Select[Any]:
    """The rows to send now: unsent, not expired, not backing off; locked, skipping rows another dispatcher holds."""
    stmt = (
        select(Outbox)
        .where(Outbox.sent_at.is_(None), or_(Outbox.expires_at.is_(None), Outbox.expires_at > now))
        .order_by(Outbox.created_at, Outbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if skip_ids:
        stmt = stmt.where(Outbox.id.not_in(list(skip_ids)))
    return stmt


def encode(row: Outbox) -> bytes:
    """The wire payload: the stored command plus ``command_id`` (= outbox id), ``issued_at`` and expiry."""
    return command_wire(row.payload or {}, command_id=str(row.id), issued_at=row.created_at, expires_at=row.expires_at)


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    def publish_batch(self, messages: Sequence[tuple[str, bytes]], timeout: float) -> list[bool]:
        """Publish at QoS 1; True for each message the broker acknowledged with success."""
        ...


class MqttPublisher:
    """A paho client that only publishes; PUBACKs are matched to messages by packet id."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        mqtt5: bool = True,
        keepalive_s: int = 15,
        tls: TlsOptions | None = None,
    ) -> None:
        # A client id of its own per process: two workers with one id would disconnect each other.
        # No persistent session: unsent commands live in the outbox, not in the broker.
        cid = client_id or f"steward-worker-{socket.gethostname()}-{os.getpid()}"
        self.options = SessionOptions(client_id=cid, manual_ack=False, keepalive_s=keepalive_s, mqtt5=mqtt5)
        self.host, self.port = host, port
        self.client = make_client(self.options, username=username, password=password, tls=tls)
        self._connected = threading.Event()
        self._cond = threading.Condition()
        self._acks: dict[int, bool] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttPublisher:
        host, port = settings.mqtt_host_port
        return cls(
            host,
            port,
            username=settings.mqtt_username,
            password=settings.mqtt_password.get_secret_value() or None,
            mqtt5=settings.mqtt_protocol == "5",
            keepalive_s=settings.mqtt_keepalive_s,
            tls=tls_from_settings(settings),
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> MqttPublisher:
        self.client.connect_async(self.host, self.port, keepalive=self.options.keepalive_s)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_batch(self, messages: Sequence[tuple[str, bytes]], timeout: float) -> list[bool]:
        mids: list[int | None] = []
        for topic, payload in messages:
            info = self.client.publish(topic, payload, qos=1)
            # Not queued for the wire (not connected, queue full): a failed try; the row is retried.
            mids.append(info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None)
        wanted = {m for m in mids if m is not None}
        deadline = time.monotonic() + timeout
        with self._cond:
            while not wanted <= self._acks.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            acks = {m: self._acks.pop(m) for m in wanted if m in self._acks}
        return [m is not None and acks.get(m, False) for m in mids]

    # paho callbacks: network thread, never block.
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("outbox MQTT connect refused: %s", reason)
            return
        self._connected.set()
        log.info("outbox dispatcher connected to MQTT")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        log.warning("outbox dispatcher disconnected: %s", reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            self._acks[mid] = not reason.is_failure
            self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class DispatchResult:
    sent: int
    failed: int
    expired: int


class OutboxDispatcher:
    """The outbox job: `dispatcher(session, now)` publishes one batch of pending commands."""

    def __init__(self, publisher: Publisher, *, batch: int = BATCH, timeout_s: float = PUBACK_TIMEOUT_S) -> None:
        self.publisher = publisher
        self.batch = batch
        self.timeout_s = timeout_s
        self._not_before: dict[int, float] = {}  # outbox id → monotonic time of the next try
        self._last_run: datetime | None = None

    def __call__(self, session: Session, now: datetime) -> DispatchResult:
        expired = self._log_expired(session, now)
        if not self.publisher.connected:
            return DispatchResult(0, 0, expired)
        mono = time.monotonic()
        self._not_before = {i: t for i, t in self._not_before.items() if t > mono}
        rows: list[Outbox] = list(session.scalars(claim_statement(now, self.batch, sorted(self._not_before))))
        if not rows:
            return DispatchResult(0, 0, expired)
        results = self.publisher.publish_batch([(r.topic, encode(r)) for r in rows], self.timeout_s)
        sent = failed = 0
        for row, ok in zip(rows, results, strict=True):
            row.attempts = (row.attempts or 0) + 1
            if ok:
                row.sent_at = now
                sent += 1
            else:
                self._not_before[row.id] = mono + backoff_s(row.attempts)
                failed += 1
        session.flush()
        if failed:
            log.warning("outbox: %d sent, %d not acknowledged (retried with backoff)", sent, failed)
        else:
            log.debug("outbox: %d sent", sent)
        return DispatchResult(sent, failed, expired)

    def _log_expired(self, session: Session, now: datetime) -> int:
        since = self._last_run
        self._last_run = now
        if since is None or since >= now:
            return 0
        n = int(
            session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.sent_at.is_(None), Outbox.expires_at > since, Outbox.expires_at <= now)
            )
            or 0
        )
        if n:
            log.warning("outbox: %d command(s) expired before they could be sent", n)
        return n


__all__ = [
    "DispatchResult",
    "MqttPublisher",
    "OutboxDispatcher",
    "Publisher",
    "backoff_s",
    "claim_statement",
    "encode",
]
