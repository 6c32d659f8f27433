"""Outbox → MQTT downlink: publish device commands with QoS 1, resend those the device does not acknowledge.

Domains write a command as an `outbox` row in their own transaction (DESIGN.md §2); this dispatcher
runs as a worker job every 2 s, in a transaction of its own. A row's ``status``:

- ``pending``: not yet published, or its last publish got no PUBACK (tried again at ``next_attempt_at``,
  backoff 2, 4, 8 … s, at most 5 min);
- ``sent``: the broker acknowledged the publish (``sent_at``, first time); the device has until
  ``next_attempt_at`` (`ack_timeout_s`, setting ``outbox_ack_timeout_s``) to ack it, else it is resent —
  same payload, same ``command_id``, so a device that did apply it applies nothing twice;
- ``acknowledged``: the device's ``ack`` arrived (ingest sets ``acked_at`` and the status, ingest/writer.py);
- ``refused``: the device answered, but not "applied" (a whitelist refusal such as ``version_gap``, a valve
  command it rejected or got too late); ``last_error`` holds the reason. Closed: never resent (the claim,
  expiry and give-up below only touch ``pending``/``sent`` rows), the domain that queued it decides what next;
- ``expired``: its ``expires_at`` passed before an ack (``expired_at``; marked once, never published again);
- ``failed``: `max_attempts` publishes (setting ``outbox_max_attempts``) and still no ack.

Each run:

1. marks expired rows ``expired`` (one UPDATE … RETURNING, so each is marked, logged and counted once);
2. gives up on rows out of tries whose last ack deadline passed (``failed``);
3. claims due rows (``pending``/``sent``, no ack, ``next_attempt_at`` passed or unset, not expired) with
   ``FOR UPDATE SKIP LOCKED``, oldest first (`claim_statement`), so two dispatchers never hold — and so
   never send — the same row; publishes each at QoS 1 and waits for the broker's PUBACKs;
4. for each: ``attempts + 1``; PUBACK → ``sent`` with the ack deadline; no PUBACK → ``pending`` with the
   backoff, or ``failed`` when it was the last try.

A command that the device was sent but never acknowledged (``failed``, or ``expired`` after at least one
publish) raises an alarm through the alarm engine (`alarms.commands`, one open alarm per device; its
ticket through `on_raised`). A command that expired before it could be published at all raises none:
the device never saw it (the broker or the dispatcher was down, which their own health shows).

Delivery is at least once: a crash between the PUBACK and the commit publishes the row again on the
next run. The payload's ``command_id`` is the outbox id, so a device applies a command once and its
``ack`` names the row; it counts only on the topic of the row's ``device_id``, so one device cannot
acknowledge another's command. `storage.outbox_reads.list_commands` lists rows with their status for the pages.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from alarms.commands import UnackedCommand, raise_unacknowledged
from alarms.store import OnRaised
from core.mqtt import SessionOptions, TlsOptions, make_client, tls_from_settings
from core.settings import Settings
from protocol.payloads import command_wire
from storage.models import Outbox

log = logging.getLogger(__name__)

BATCH = 200
PUBACK_TIMEOUT_S = 5.0
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
ACK_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 5
OPEN = ("pending", "sent")  # every other status is closed: acknowledged, refused, expired, failed


def backoff_s(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed try: 2, 4, 8, … capped at 5 min."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1))


def claim_statement(now: datetime, limit: int = BATCH) -> Select[Any]:
    """The rows to publish now: open, not acknowledged, due, not expired; locked, skipping rows another
    dispatcher holds."""
    return (
        select(Outbox)
        .where(
            Outbox.status.in_(OPEN),
            Outbox.acked_at.is_(None),
            or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= now),
            or_(Outbox.expires_at.is_(None), Outbox.expires_at > now),
        )
        .order_by(Outbox.created_at, Outbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


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
    failed: int  # publishes without a PUBACK (retried)
    expired: int
    gave_up: int = 0  # marked 'failed': out of tries without the device's ack
    resent: int = 0  # of `sent`: resends after an ack timeout


class OutboxDispatcher:
    """The outbox job: `dispatcher(session, now)` runs one pass (module doc)."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        batch: int = BATCH,
        timeout_s: float = PUBACK_TIMEOUT_S,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
        on_raised: OnRaised | None = None,
    ) -> None:
        self.publisher = publisher
        self.batch = batch
        self.timeout_s = timeout_s
        self.ack_timeout = timedelta(seconds=ack_timeout_s)
        self.max_attempts = max_attempts
        self.on_raised = on_raised

    def __call__(self, session: Session, now: datetime) -> DispatchResult:
        unacked: list[UnackedCommand] = []
        expired = self._expire(session, now, unacked)
        gave_up = self._give_up(session, now, unacked)
        sent = failed = resent = 0
        if self.publisher.connected:
            sent, failed, resent, out_of_tries = self._publish(session, now)
            gave_up += len(out_of_tries)
            unacked += out_of_tries
        if unacked:
            raise_unacknowledged(session, unacked, now, on_raised=self.on_raised)
        return DispatchResult(sent, failed, expired, gave_up, resent)

    def _expire(self, session: Session, now: datetime, unacked: list[UnackedCommand]) -> int:
        rows = session.execute(
            update(Outbox)
            .where(Outbox.status.in_(OPEN), Outbox.acked_at.is_(None), Outbox.expires_at <= now)
            .values(status="expired", expired_at=now, next_attempt_at=None)
            .returning(Outbox.id, Outbox.device_id, Outbox.topic, Outbox.attempts, Outbox.sent_at)
        ).all()
        if rows:
            log.warning("outbox: %d command(s) expired before the device acknowledged them", len(rows))
        unacked += [
            UnackedCommand(r.id, r.device_id, r.topic, r.attempts, "expired")
            for r in rows
            if r.sent_at is not None and r.device_id is not None
        ]
        return len(rows)

    def _give_up(self, session: Session, now: datetime, unacked: list[UnackedCommand]) -> int:
        """Sent for the last time and the ack deadline passed: 'failed'."""
        rows = session.execute(
            update(Outbox)
            .where(
                Outbox.status == "sent",
                Outbox.acked_at.is_(None),
                Outbox.attempts >= self.max_attempts,
                Outbox.next_attempt_at <= now,
            )
            .values(status="failed", next_attempt_at=None, last_error=f"no ack after {self.max_attempts} sends")
            .returning(Outbox.id, Outbox.device_id, Outbox.topic, Outbox.attempts)
        ).all()
        if rows:
            log.error("outbox: %d command(s) never acknowledged after %d sends", len(rows), self.max_attempts)
        unacked += [UnackedCommand(r.id, r.device_id, r.topic, r.attempts, "failed") for r in rows if r.device_id]
        return len(rows)

    def _publish(self, session: Session, now: datetime) -> tuple[int, int, int, list[UnackedCommand]]:
        rows: list[Outbox] = list(session.scalars(claim_statement(now, self.batch)))
        if not rows:
            return 0, 0, 0, []
        results = self.publisher.publish_batch([(r.topic, encode(r)) for r in rows], self.timeout_s)
        sent = failed = resent = 0
        out_of_tries: list[UnackedCommand] = []
        for row, ok in zip(rows, results, strict=True):
            row.attempts = (row.attempts or 0) + 1
            if ok:
                if row.status == "sent":
                    resent += 1
                    row.last_error = f"no ack within {self.ack_timeout.total_seconds():g} s; resent"
                row.status = "sent"
                row.sent_at = row.sent_at or now
                row.next_attempt_at = now + self.ack_timeout
                sent += 1
            elif row.attempts >= self.max_attempts:
                row.status, row.next_attempt_at = "failed", None
                row.last_error = f"no PUBACK after {row.attempts} tries"
                if row.device_id is not None:
                    out_of_tries.append(UnackedCommand(row.id, row.device_id, row.topic, row.attempts, "failed"))
            else:
                row.next_attempt_at = now + timedelta(seconds=backoff_s(row.attempts))
                row.last_error = "no PUBACK from the broker"
                failed += 1
        session.flush()
        if failed or resent:
            log.warning("outbox: %d sent (%d resent), %d not acknowledged by the broker", sent, resent, failed)
        else:
            log.debug("outbox: %d sent", sent)
        return sent, failed, resent, out_of_tries


__all__ = [
    "ACK_TIMEOUT_S",
    "MAX_ATTEMPTS",
    "DispatchResult",
    "MqttPublisher",
    "OutboxDispatcher",
    "Publisher",
    "backoff_s",
    "claim_statement",
    "encode",
]
