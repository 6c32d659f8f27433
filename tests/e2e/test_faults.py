"""Delivery under faults (reliability matrix M1, M4, M5, M6), judged by the oracle:
every publish the broker acknowledged is stored exactly once — 0 lost, 0 duplicated, 0 unexpected.

Each test starts its own Mosquitto (and, for M6, its own PostgreSQL) so it can restart, kill and
stop them without touching the machine's services.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from steward.broker import MosquittoProcess
from storage.migrate import upgrade
from tests.support.estate import load_small_estate
from tests.support.ingest_process import IngestProcess
from tests.support.oracle import Verdict, judge, telemetry_traffic, wait_quiescent
from tests.support.postgres import ThrowawayPostgres
from tests.support.publisher import OraclePublisher

pytestmark = [pytest.mark.broker, pytest.mark.fault]


class Load:
    """Publishes keyed frames in a background thread at a steady rate."""

    def __init__(self, broker: MosquittoProcess, estate: str, *, frames: int, rate: float, devices: int = 20) -> None:
        self.items = list(telemetry_traffic(estate, devices=devices, frames=frames))
        self.pub = OraclePublisher("127.0.0.1", broker.port, client_id=f"oracle-{estate}")
        self.rate = rate
        self.stopped = threading.Event()
        # A daemon that stop() ends: a test failing before finish() must not leave it publishing (a run
        # that waited for it would never exit once the broker is gone).
        self.thread = threading.Thread(
            target=self.pub.publish_all, args=(self.items,), kwargs={"rate": rate, "stop": self.stopped}, daemon=True
        )

    def start(self) -> Load:
        self.thread.start()
        return self

    def finish(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "publisher did not finish"
        self.pub.drain()
        self.pub.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.pub.close()

    def verdict(self, engine_url: str) -> Verdict:
        engine = create_engine(engine_url)
        wait_quiescent(engine, acked=self.pub.log.acked, timeout=90)
        v = judge(engine, self.pub.log.acked, {k for k, _, _ in self.items})
        engine.dispose()
        return v


def assert_exactly_once(v: Verdict, *, min_acked: int) -> None:
    print(v)
    assert v.acked >= min_acked, v
    assert v.lost == [], f"lost {len(v.lost)}: {v.lost[:5]}"
    assert v.duplicated == [], f"duplicated {len(v.duplicated)}: {v.duplicated[:5]}"
    assert v.unexpected == [], f"unexpected {len(v.unexpected)}: {v.unexpected[:5]}"


def test_m1_broker_graceful_restart_during_load(
    fresh_database: str,
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    stop_at_end: Callable[..., Any],
) -> None:
    load_small_estate(create_engine(fresh_database), "m1")
    ingest = stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-m1")).start()
    load = stop_at_end(Load(mosquitto, "m1", frames=12_000, rate=2_000)).start()
    time.sleep(2.0)
    mosquitto.restart()  # SIGTERM: mosquitto saves ingest's session and queued messages, then starts again
    time.sleep(1.5)
    mosquitto.restart()
    load.finish()
    verdict = load.verdict(fresh_database)
    health = ingest.health()
    ingest.stop()
    assert_exactly_once(verdict, min_acked=8_000)
    assert health is not None
    assert health["status"] == "ok"


def test_m4_ingest_sigkilled_at_random_points(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path, stop_at_end: Callable[..., Any]
) -> None:
    load_small_estate(create_engine(fresh_database), "m4")
    ingest = stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-m4")).start()
    load = stop_at_end(Load(mosquitto, "m4", frames=40_000, rate=2_500)).start()
    rng = random.Random(4)
    kills = 0
    while load.thread.is_alive() or kills < 10:
        # Batches commit every ~50 ms, so a kill at a random instant lands after receive, between
        # insert and commit, or between commit and ack, across the runs.
        time.sleep(rng.uniform(0.2, 1.2))
        ingest.kill()
        kills += 1
        time.sleep(rng.uniform(0.0, 0.5))
        ingest.start()
    load.finish()
    verdict = load.verdict(fresh_database)
    ingest.stop()
    assert kills >= 10
    assert_exactly_once(verdict, min_acked=40_000)


def test_m5_negative_control_paho_defaults_lose_messages(
    fresh_database: str,
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    stop_at_end: Callable[..., Any],
) -> None:
    """The same kill-and-restart with paho's defaults (clean session, ack on receipt) loses messages:
    the configuration of the real ingest is what keeps them."""
    load_small_estate(create_engine(fresh_database), "m5")

    def naive() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.naive_ingest", fresh_database, "127.0.0.1", str(mosquitto.port)]
        )
        return stop_at_end(proc, stop=lambda: (proc.kill(), proc.wait()))

    proc = naive()
    time.sleep(1.5)
    load = stop_at_end(Load(mosquitto, "m5", frames=8_000, rate=2_000)).start()
    for _ in range(3):
        time.sleep(0.8)
        proc.kill()
        proc.wait()
        time.sleep(0.5)
        proc = naive()
    load.finish()
    time.sleep(2)
    verdict = load.verdict(fresh_database)
    proc.kill()
    proc.wait()
    print(verdict)
    assert verdict.acked == 8_000
    assert len(verdict.lost) > 0, "paho defaults were expected to lose acknowledged messages"


def test_m6_postgres_down_30s_under_load(
    mosquitto: MosquittoProcess, tmp_path: Path, stop_at_end: Callable[..., Any]
) -> None:
    # Outside pytest's tmp tree: the server runs as its own user, which must traverse the parents, and any
    # other pytest session on the machine resets /tmp/pytest-of-<user> to mode 0700 (pg_ctl: permission denied).
    pg = stop_at_end(ThrowawayPostgres(Path(tempfile.mkdtemp(prefix="steward-m6-")) / "pg"))
    url = pg.url
    upgrade(url)
    load_small_estate(create_engine(url), "m6")
    ingest = stop_at_end(IngestProcess(url, mosquitto.url, tmp_path / "logs", client_id="ingest-m6")).start()
    load = stop_at_end(Load(mosquitto, "m6", frames=45_000, rate=1_000)).start()
    time.sleep(5)
    pg.stop()
    outage_started = time.monotonic()
    degraded = ingest.wait_healthy(timeout=15, status="degraded")
    time.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
    pg.start()
    recovered = ingest.wait_healthy(timeout=30, status="ok")
    load.finish()
    verdict = load.verdict(url)
    ingest.stop()
    pg.stop()
    assert degraded["database_ok"] is False
    assert degraded["counters"]["commit_failures"] >= 1  # type: ignore[index]
    assert recovered["database_ok"] is True
    assert_exactly_once(verdict, min_acked=45_000)


def test_m14_a_device_with_ingests_client_id_loses_nothing(fresh_database: str, tmp_path: Path) -> None:
    """Issue 9 #2 through Mosquitto with the shipped configuration (deploy/mosquitto): while 10,000 acknowledged
    messages are queued in ingest's persistent session, a device connects with its own credentials and
    ingest's client id — resuming the session, then with a clean start, then again while ingest drains.
    None of it touches ingest's session: the total-queue oracle finds every acked message stored once."""
    from tests.conftest import require_mosquitto
    from tests.e2e.test_broker_acl import Client
    from tests.support.deploy_broker import deploy_broker

    cid = "steward-ingest"
    broker = deploy_broker(
        require_mosquitto(),
        tmp_path / "broker",
        devices={"M14-S0000": "device-pw", "m14-gateway": "gateway-pw"},
        platform={"steward-platform": "platform-pw"},
        # The simulators' gateway account (deploy/mosquitto/README.md) publishes the load for every device.
        extra_acl="\nuser m14-gateway\ntopic write steward/m14/up/#\n",
    ).start()
    try:
        load_small_estate(create_engine(fresh_database), "m14")
        ingest = IngestProcess(
            fresh_database,
            f"mqtt://127.0.0.1:{broker.platform_port}",
            tmp_path / "logs",
            client_id=cid,
            STEWARD_MQTT_USERNAME="steward-platform",
            STEWARD_MQTT_PASSWORD="platform-pw",
        ).start()
        ingest.stop()  # its persistent session stays at the broker: what follows queues there
        items = list(telemetry_traffic("m14", devices=20, frames=10_000))
        pub = OraclePublisher(
            "127.0.0.1", broker.device_port, client_id="m14-gateway", username="m14-gateway", password="gateway-pw"
        )
        pub.publish_all(items)
        pub.drain()
        pub.close()
        assert len(pub.log.acked) == 10_000
        # The device, with its own valid credentials, asks for ingest's client id: first to resume ingest's
        # session (and receive its queue), then to wipe it with a clean start.
        for clean in (False, True):
            thief = Client(broker.device_port, "M14-S0000", "device-pw", client_id=cid, clean_start=clean)
            assert thief.connected.is_set()
            thief.subscribe("steward/#")
            time.sleep(1.0)
            assert thief.received == []
            thief.close()
        ingest.start()
        # And once more while ingest drains its queue: it must not be cut off.
        thief = Client(broker.device_port, "M14-S0000", "device-pw", client_id=cid, clean_start=True)
        assert thief.connected.is_set()
        engine = create_engine(fresh_database)
        wait_quiescent(engine, acked=pub.log.acked, timeout=120)
        verdict = judge(engine, pub.log.acked, {k for k, _, _ in items})
        engine.dispose()
        thief.close()
        health = ingest.health()
        ingest.stop()
    finally:
        broker.kill()
    assert_exactly_once(verdict, min_acked=10_000)
    assert thief.received == []
    assert health is not None
    assert health["status"] == "ok"
