"""Downlink faults (reliability matrix M18, M19) through the whole chain: the worker's outbox dispatcher
(worker/outbox.py), a real Mosquitto with Steward's configuration, the simulated fleet as the device side
(simulators/commands.py: applies a command once per command_id, drops one past its expiry) and ingest, which
records the device's ack on the outbox row (ingest/writer.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from core import clock
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from protocol.topics import downlink
from simulators import run_simulation
from simulators.run import RunStats
from steward.broker import MosquittoProcess
from storage.db import make_sessionmaker
from storage.models import Device, Outbox
from tests.simulators.test_valve_commands import LEAKING, TINY_ESTATE
from tests.support.ingest_process import IngestProcess
from worker.jobs import OUTBOX_LOCK, Job
from worker.outbox import MqttPublisher, OutboxDispatcher, encode
from worker.runner import Worker

pytestmark = [pytest.mark.broker, pytest.mark.fault]
TOPIC = downlink("tiny", LEAKING, "valve")


def wait_for(what: str, ok: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Sim:
    """The tiny estate's simulated devices in a thread (120× real time), answering valve commands."""

    def __init__(self, estate_file: Path, port: int) -> None:
        self.progress: list[RunStats] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=run_simulation,
            args=(estate_file, "127.0.0.1", port),
            kwargs={
                "seed": 5,
                "speed": 120,
                "stop_event": self.stop_event,
                "on_progress": self.progress.append,
                "client_id": "downlink-fault-sim",
            },
            daemon=True,
        )

    def start(self) -> Sim:
        self.thread.start()
        wait_for("the simulator's downlink subscription", lambda: self.subscribed >= 1)
        return self

    @property
    def subscribed(self) -> int:
        return self.progress[-1].commands.subscribed if self.progress else 0

    @property
    def commands(self) -> Any:
        return self.progress[-1].commands

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


@dataclass
class Chain:
    engine: Engine
    mosquitto: MosquittoProcess
    estate_file: Path
    publisher: MqttPublisher
    worker: Worker

    def command(self, *, expires_in: timedelta) -> int:
        with Session(self.engine) as s, s.begin():
            device = s.query(Device).filter_by(code=LEAKING).one()
            row = Outbox(
                topic=TOPIC,
                device_id=device.id,
                payload={"v": 1, "action": "close", "reason": "vacant_flow"},
                expires_at=clock.now() + expires_in,
            )
            s.add(row)
            s.flush()
            return row.id

    def row(self, oid: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT status, attempts, sent_at, acked_at, last_error FROM outbox WHERE id = :i"), {"i": oid}
            ).one()

    def wire(self, oid: int) -> bytes:
        with Session(self.engine) as s:
            return encode(s.get_one(Outbox, oid))


@pytest.fixture
def chain(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path, stop_at_end: Callable[..., Any]
) -> Iterator[Chain]:
    estate_file = tmp_path / "tiny.yaml"
    estate_file.write_text(TINY_ESTATE)
    engine = create_engine(fresh_database)
    with Session(engine) as s, s.begin():
        import_estate(s, load_estate_file(estate_file))
    stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-downlink")).start()
    publisher = stop_at_end(MqttPublisher("127.0.0.1", mosquitto.port, client_id="worker-downlink").start())
    assert publisher.wait_connected(5)
    # ack timeout 1 h: in these tests a resend comes only from the broker or a replay, never the dispatcher.
    dispatcher = OutboxDispatcher(publisher, ack_timeout_s=3600)
    worker = Worker(make_sessionmaker(engine), [Job("outbox", 2.0, OUTBOX_LOCK, dispatcher)])
    yield Chain(engine, mosquitto, estate_file, publisher, worker)
    engine.dispose()


def replay(port: int, payload: bytes) -> None:
    """Publish a command's exact wire bytes again (a QoS 1 redelivery, a stale copy replayed after a reconnect)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"replay-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(TOPIC, payload, qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_m19_downlink_while_broker_down_delivered_after_recovery_applied_once(
    chain: Chain, stop_at_end: Callable[..., Any]
) -> None:
    sim = stop_at_end(Sim(chain.estate_file, chain.mosquitto.port)).start()
    chain.mosquitto.stop()
    wait_for("the dispatcher to see the broker gone", lambda: not chain.publisher.connected, timeout=10)
    oid = chain.command(expires_in=timedelta(minutes=30))
    # The dispatcher runs on its 2 s period through the outage: nothing can be published, the row waits.
    t = clock.now()
    for k in range(3):
        chain.worker.run_once(t + timedelta(seconds=2 * k))
    status, attempts, sent_at, _, _ = chain.row(oid)
    assert (status, sent_at) == ("pending", None)
    chain.mosquitto.start()
    wait_for("the dispatcher to reconnect", lambda: chain.publisher.connected, timeout=30)
    wait_for("the device to resubscribe", lambda: sim.subscribed >= 2, timeout=30)
    # Past any backoff a failed try could have set (at most 5 min).
    chain.worker.run_once(clock.now() + timedelta(minutes=6))
    wait_for("the device's ack, recorded by ingest", lambda: chain.row(oid)[0] == "acknowledged", timeout=30)
    # The same command again (a QoS 1 redelivery or a resend after a lost ack): answered, not applied twice.
    replay(chain.mosquitto.port, chain.wire(oid))
    wait_for("the repeat to be answered", lambda: sim.commands.duplicates >= 1)
    status, attempts, sent_at, acked_at, _ = chain.row(oid)
    counts = sim.commands
    print(
        f"outbox {status} after {attempts} publish(es); device applied={counts.applied} duplicates={counts.duplicates}"
    )
    assert (status, attempts) == ("acknowledged", 1)
    assert sent_at is not None
    assert acked_at is not None
    assert counts.applied == 1
    assert counts.duplicates == 1
    assert counts.expired == counts.rejected == 0


def test_m18_expired_command_replayed_after_reconnect_is_never_applied(
    chain: Chain, stop_at_end: Callable[..., Any]
) -> None:
    # The device is offline when its command goes out: the broker acks the publish, nobody hears it.
    oid = chain.command(expires_in=timedelta(seconds=3))
    t = clock.now()
    chain.worker.run_once(t)
    assert chain.row(oid)[0] == "sent"
    stale = chain.wire(oid)
    chain.worker.run_once(t + timedelta(seconds=4))  # its expiry passed without an ack
    assert chain.row(oid)[0] == "expired"
    wait_for("the wall clock to pass the expiry", lambda: clock.now() > t + timedelta(seconds=3.5), timeout=10)
    # The device comes back, and the stale copy reaches it (a broker session's redelivery, a replay).
    sim = stop_at_end(Sim(chain.estate_file, chain.mosquitto.port)).start()
    replay(chain.mosquitto.port, stale)
    wait_for("the device's answer", lambda: sim.commands.expired >= 1)
    wait_for("ingest to record it", lambda: chain.row(oid)[3] is not None, timeout=30)
    chain.worker.run_once(clock.now() + timedelta(minutes=6))  # never published again
    status, attempts, _, acked_at, last_error = chain.row(oid)
    counts = sim.commands
    print(f"outbox {status} ({last_error}) after {attempts} publish(es); device expired={counts.expired}")
    assert counts.applied == 0
    assert counts.expired == 1
    assert (status, attempts, last_error) == ("expired", 1, "expired")
    assert acked_at is not None
    assert isinstance(json.loads(stale)["expires_at"], str)
    assert datetime.fromisoformat(json.loads(stale)["expires_at"]) < clock.now()


def test_m19_broker_hung_mid_publish_retried_applied_once(chain: Chain, stop_at_end: Callable[..., Any]) -> None:
    """The other outage: the broker hangs (SIGSTOP) with the dispatcher still connected. Its publish gets no PUBACK,
    so the row goes back to 'pending' with a backoff and is published again once the broker is back — while the
    first copy, still in the broker's socket, is delivered too. The device applies the command once by its
    command_id, and the row ends 'acknowledged'."""
    sim = stop_at_end(Sim(chain.estate_file, chain.mosquitto.port)).start()
    chain.mosquitto.pause()
    oid = chain.command(expires_in=timedelta(minutes=30))
    t = clock.now()
    chain.worker.run_once(t)  # waits PUBACK_TIMEOUT_S (5 s) for the PUBACK that cannot come
    status, attempts, sent_at, _, last_error = chain.row(oid)
    assert (status, attempts, sent_at, last_error) == ("pending", 1, None, "no PUBACK from the broker")
    chain.mosquitto.resume()
    chain.worker.run_once(t + timedelta(seconds=10))  # past the 2 s backoff: published again, same command_id
    wait_for("the device's ack, recorded by ingest", lambda: chain.row(oid)[0] == "acknowledged", timeout=30)
    wait_for("both copies answered", lambda: sim.commands.received >= 2, timeout=15)
    status, attempts, sent_at, acked_at, _ = chain.row(oid)
    counts = sim.commands
    print(f"outbox {status} after {attempts} publishes; device received={counts.received} applied={counts.applied}")
    assert (status, attempts) == ("acknowledged", 2)
    assert sent_at is not None
    assert acked_at is not None
    assert (counts.received, counts.applied, counts.duplicates) == (2, 1, 1)
