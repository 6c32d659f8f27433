"""Outbox → MQTT against a real Mosquitto: a command arrives once, sent_at is set after the PUBACK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from steward.broker import MosquittoProcess
from storage.db import make_sessionmaker
from storage.models import Outbox
from worker.jobs import OUTBOX_LOCK, Job
from worker.outbox import MqttPublisher, OutboxDispatcher, backoff_s, claim_statement, encode
from worker.runner import Worker

pytestmark = pytest.mark.broker
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
TOPIC = "steward/wk/down/WK-CW-1/valve"


class Subscriber:
    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict[str, object]]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("steward/+/down/#", qos=1)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(5)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def db(fresh_database: str) -> Iterator[Engine]:
    eng = create_engine(fresh_database)
    yield eng
    eng.dispose()


@pytest.fixture
def publisher(mosquitto: MosquittoProcess) -> Iterator[MqttPublisher]:
    pub = MqttPublisher("127.0.0.1", mosquitto.port, client_id="steward-worker-test").start()
    assert pub.wait_connected(5)
    yield pub
    pub.stop()


def add(engine: Engine, *, topic: str = TOPIC, expires_at: datetime | None = None) -> int:
    with Session(engine) as s, s.begin():
        row = Outbox(topic=topic, payload={"valve": "close", "reason": "vacant_flow"}, expires_at=expires_at)
        s.add(row)
        s.flush()
        return row.id


def rows(engine: Engine) -> dict[int, tuple[datetime | None, int]]:
    with engine.connect() as conn:
        return {r.id: (r.sent_at, r.attempts) for r in conn.execute(text("SELECT id, sent_at, attempts FROM outbox"))}


def test_command_arrives_once_and_is_marked_sent(
    db: Engine, mosquitto: MosquittoProcess, publisher: MqttPublisher
) -> None:
    sub = Subscriber(mosquitto.port)
    try:
        cmd = add(db, expires_at=NOW + timedelta(minutes=10))
        gone = add(db, expires_at=NOW - timedelta(seconds=1))
        worker = Worker(make_sessionmaker(db), [Job("outbox", 2.0, OUTBOX_LOCK, OutboxDispatcher(publisher))])
        assert worker.run_once(NOW) == {"outbox": True}
        state = rows(db)
        assert state[cmd] == (NOW, 1)
        assert state[gone] == (None, 0)  # expired: never published
        worker.run_once(NOW + timedelta(seconds=2))
        worker.run_once(NOW + timedelta(seconds=4))
        deadline = time.monotonic() + 5
        while not sub.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a duplicate would arrive within this
        assert len(sub.messages) == 1
        topic, body = sub.messages[0]
        assert topic == TOPIC
        assert body["command_id"] == str(cmd)
        assert body["valve"] == "close"
        assert body["v"] == 1
        assert "issued_at" in body
        assert "expires_at" in body
        assert rows(db)[cmd] == (NOW, 1)
    finally:
        sub.stop()


def test_unacknowledged_publish_is_retried_with_backoff(db: Engine) -> None:
    class Flaky:
        connected = True

        def __init__(self) -> None:
            self.calls: list[list[str]] = []
            self.ok = False

        def publish_batch(self, messages: Sequence[tuple[str, bytes]], timeout: float) -> list[bool]:
            self.calls.append([json.loads(p)["command_id"] for _, p in messages])
            return [self.ok] * len(messages)

    cmd = add(db)
    flaky = Flaky()
    dispatcher = OutboxDispatcher(flaky)
    worker = Worker(make_sessionmaker(db), [Job("outbox", 2.0, OUTBOX_LOCK, dispatcher)])
    worker.run_once(NOW)
    assert rows(db)[cmd] == (None, 1)
    worker.run_once(NOW + timedelta(seconds=1.9))  # backing off (2 s, in outbox.next_attempt_at): not tried yet
    assert flaky.calls == [[str(cmd)]]
    flaky.ok = True
    later = NOW + timedelta(seconds=2)  # the backoff elapsed
    worker.run_once(later)
    assert rows(db)[cmd] == (later, 2)
    assert [backoff_s(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff_s(100) == 300.0


def test_not_connected_claims_nothing(db: Engine) -> None:
    class Offline:
        connected = False

        def publish_batch(self, messages: Sequence[tuple[str, bytes]], timeout: float) -> list[bool]:
            raise AssertionError("must not publish while offline")

    cmd = add(db)
    Worker(make_sessionmaker(db), [Job("outbox", 2.0, OUTBOX_LOCK, OutboxDispatcher(Offline()))]).run_once(NOW)
    assert rows(db)[cmd] == (None, 0)


def test_two_dispatchers_never_claim_the_same_row(db: Engine) -> None:
    ids = {add(db) for _ in range(5)}
    with Session(db) as a, a.begin(), Session(db) as b, b.begin():
        got_a: set[int] = {r.id for r in a.scalars(claim_statement(NOW, limit=3))}
        got_b: set[int] = {r.id for r in b.scalars(claim_statement(NOW, limit=10))}
    assert len(got_a) == 3
    assert got_a.isdisjoint(got_b)
    assert got_a | got_b == ids


def test_encode_forces_the_command_id() -> None:
    row = Outbox(id=42, topic=TOPIC, payload={"command_id": "forged", "x": 1}, created_at=NOW)
    body = json.loads(encode(row))
    assert body["command_id"] == "42"
    assert body["issued_at"] == NOW.isoformat()
    assert body["x"] == 1


def test_an_unacknowledged_command_is_resent_on_the_wire_with_the_same_id(
    db: Engine, mosquitto: MosquittoProcess, publisher: MqttPublisher
) -> None:
    sub = Subscriber(mosquitto.port)
    try:
        cmd = add(db)
        worker = Worker(
            make_sessionmaker(db),
            [Job("outbox", 2.0, OUTBOX_LOCK, OutboxDispatcher(publisher, ack_timeout_s=60, max_attempts=2))],
        )
        worker.run_once(NOW)
        worker.run_once(NOW + timedelta(seconds=60))  # no ack within the timeout: resent
        worker.run_once(NOW + timedelta(seconds=120))  # still none after the last send: failed
        deadline = time.monotonic() + 5
        while len(sub.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [body["command_id"] for _, body in sub.messages] == [str(cmd), str(cmd)]
        with db.connect() as conn:
            status, attempts = conn.execute(text("SELECT status, attempts FROM outbox WHERE id = :i"), {"i": cmd}).one()
        assert (status, attempts) == ("failed", 2)
    finally:
        sub.stop()
