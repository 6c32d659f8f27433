"""Ingest partitioned by estate (DESIGN §9): the estate → partition hash, claiming partitions with advisory locks,
and partitioned ingest processes (run in threads here, each with its own lock connection) against a real
Mosquitto and PostgreSQL: every estate's messages stored once, by the owner of its partition, and an estate
imported at run time subscribed without a restart."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from sqlalchemy import Engine, create_engine, text

from core import clock
from core.settings import Settings
from ingest.health import PartitionedHealth
from ingest.partitions import LOCK_CLASS, PartitionLocks, estates_by_partition, partition_of, run_partitioned
from steward.broker import MosquittoProcess
from tests.support.estate import load_small_estate
from tests.support.oracle import judge, telemetry_traffic, wait_quiescent
from tests.support.publisher import OraclePublisher


def estates_in(partition: int, partitions: int, prefix: str, count: int = 1) -> list[str]:
    """The first ``count`` codes ``{prefix}-{i}`` that hash to ``partition``."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        code = f"{prefix}-{i}"
        if partition_of(code, partitions) == partition:
            out.append(code)
        i += 1
    return out


def test_partition_is_crc32_of_the_estate_code_modulo_n() -> None:
    for code in ("lvyuan", "bench", "m17-a", "绿苑"):
        for n in (1, 2, 3, 8, 64):
            assert partition_of(code, n) == zlib.crc32(code.encode("utf-8")) % n
    assert partition_of("anything", 1) == 0
    # Known values, so a change of hash (which would move estates between sessions) fails here first.
    assert [partition_of(c, 4) for c in ("lvyuan", "bench", "m17-a")] == [
        zlib.crc32(b"lvyuan") % 4,
        zlib.crc32(b"bench") % 4,
        zlib.crc32(b"m17-a") % 4,
    ]
    spread = estates_by_partition((f"estate-{i}" for i in range(4000)), 4)
    assert sorted(spread) == [0, 1, 2, 3]
    assert all(900 < len(codes) < 1100 for codes in spread.values())


def test_a_partition_has_one_owner_until_its_connection_goes(fresh_database: str) -> None:
    url = fresh_database.replace("postgresql+psycopg://", "postgresql://", 1)
    a, b = PartitionLocks(url), PartitionLocks(url)
    a.connect()
    b.connect()
    try:
        assert a.try_claim(0)
        assert a.try_claim(1)
        assert not b.try_claim(0)
        assert b.held_elsewhere() == {0, 1}
        assert a.held_elsewhere() == set()  # our own locks are not "elsewhere"
        a.release(1)
        assert b.try_claim(1)
        # The worker's one-key advisory locks live in another key space: id 0 or LOCK_CLASS does not collide.
        with a.conn.transaction():  # type: ignore[union-attr]
            assert a.conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_CLASS,)).fetchone() == (True,)  # type: ignore[union-attr]
        a.close()  # a process that dies: its connection and its locks go with it
        deadline = time.monotonic() + 5
        while not b.try_claim(0):
            assert time.monotonic() < deadline, "lock not released with its connection"
            time.sleep(0.05)
        assert b.held_elsewhere() == set()
    finally:
        a.close()
        b.close()


class Proc:
    """A partitioned ingest process, run in a thread of this test (its own lock connection and sessions)."""

    def __init__(self, db_url: str, broker: MosquittoProcess, *, cap: int, partitions: int = 2, **kw: Any) -> None:
        self.settings = Settings(
            env="testing",
            database_url=db_url,
            mqtt_url=broker.url,
            mqtt_client_id="tp-ingest",
            ingest_partitions=partitions,
            ingest_max_partitions=cap,
            ingest_claim_poll_s=0.2,
            ingest_estate_poll_s=0.5,
            ingest_rate_limit_factor=0,  # test traffic stamps a reading a second per device (as IngestProcess)
            **kw,
        )
        self.engine = create_engine(db_url, pool_size=5)
        self.health = PartitionedHealth(partitions)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=run_partitioned, args=(self.settings, self.engine, self.stop_event, self.health), daemon=True
        )

    def start(self) -> Proc:
        self.thread.start()
        return self

    def wait_owning(self, count: int, timeout: float = 20) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = self.health.snapshot()
            owned = list(snap["owned"])  # type: ignore[call-overload]
            if len(owned) == count and snap["status"] == "ok" and snap["mqtt_connected"]:
                return owned
            time.sleep(0.05)
        raise TimeoutError(f"not owning {count} partitions: {self.health.snapshot()}")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(40)
        self.engine.dispose()


@pytest.fixture
def procs(fresh_database: str, mosquitto: MosquittoProcess) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def make(**kw: Any) -> Proc:
        p = Proc(fresh_database, mosquitto, **kw).start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def publish(broker: MosquittoProcess, estates: list[str], frames: int, hours_ago: int = 1) -> tuple[set[str], set[str]]:
    start = clock.now().replace(microsecond=0) - timedelta(hours=hours_ago)
    items = [it for e in estates for it in telemetry_traffic(e, devices=2, frames=frames, start=start)]
    pub = OraclePublisher("127.0.0.1", broker.port, client_id=f"tp-pub-{time.monotonic_ns()}")
    pub.publish_all(items)
    pub.drain()
    pub.close()
    return pub.log.acked, {k for k, _, _ in items}


def test_two_processes_split_the_partitions_and_a_new_estate_is_subscribed_without_restart(
    fresh_database: str, mosquitto: MosquittoProcess, procs: Callable[..., Proc]
) -> None:
    engine = create_engine(fresh_database)
    p0, p1 = estates_in(0, 2, "tpa")[0], estates_in(1, 2, "tpa")[0]
    for code in (p0, p1):
        load_small_estate(engine, code, sensors=2, meters=0)
    a = procs(cap=1)
    a_owns = a.wait_owning(1)
    b = procs(cap=1)
    b_owns = b.wait_owning(1)
    assert sorted(a_owns + b_owns) == [0, 1]

    acked, sent = publish(mosquitto, [p0, p1], frames=200)
    wait_quiescent(engine, acked=acked, timeout=30)
    v = judge(engine, acked, sent)
    assert (len(v.lost), len(v.duplicated), v.acked) == (0, 0, 400), v
    # Each estate was written by its partition's owner only.
    for proc, owned in ((a, a_owns), (b, b_owns)):
        by_partition = proc.health.snapshot()["by_partition"]
        assert by_partition[str(owned[0])]["counters"]["stored"] == 200 * 5  # type: ignore[index]
    with engine.connect() as conn:
        instances = {r[0] for r in conn.execute(text("SELECT instance FROM ingest_status"))}
    assert instances == {"tp-ingest-0", "tp-ingest-1"}

    # An estate imported while both run: its partition's owner subscribes within the estate poll.
    late = estates_in(0, 2, "tplate")[0]
    load_small_estate(engine, late, sensors=2, meters=0)
    owner = a if a_owns == [0] else b
    deadline = time.monotonic() + 10
    while late not in owner.health.snapshot()["by_partition"]["0"]["estates"]:  # type: ignore[index]
        assert time.monotonic() < deadline, "the new estate was not subscribed"
        time.sleep(0.1)
    time.sleep(0.5)  # the SUBSCRIBE was sent with the estates noted; give the broker its SUBACK
    acked, sent = publish(mosquitto, [late], frames=50)
    wait_quiescent(engine, acked=acked, timeout=30)
    earlier = {k for k in _stored_keys(engine) if not k.startswith(late.upper() + "-")}
    v = judge(engine, acked, sent | earlier)
    with engine.connect() as conn:
        q = list(conn.execute(text("SELECT topic, reason FROM quarantined_messages LIMIT 3")))
    assert (len(v.lost), len(v.duplicated), v.acked) == (0, 0, 50), (v, q, owner.health.snapshot())
    metrics = owner.health.prometheus()
    assert 'steward_ingest_stored_total{partition="0"}' in metrics
    assert "steward_ingest_partitions_owned 1" in metrics
    assert 'steward_ingest_commit_stalled_seconds{partition="0"}' in metrics
    engine.dispose()


def _stored_keys(engine: Engine) -> set[str]:
    from tests.support.oracle import stored_frames

    return set(stored_frames(engine))


def test_an_owner_that_loses_its_lock_connection_stops_and_a_standby_takes_over(
    fresh_database: str, mosquitto: MosquittoProcess, procs: Callable[..., Proc]
) -> None:
    """Half dead: the owner's lock connection is cut (its locks go) while its process and MQTT sessions live on.
    It must stop writing at once; the standby claims both partitions and takes over their sessions."""
    engine = create_engine(fresh_database)
    estates = [estates_in(0, 2, "tph")[0], estates_in(1, 2, "tph")[0]]
    for code in estates:
        load_small_estate(engine, code, sensors=2, meters=0)
    a = procs(cap=2)
    assert a.wait_owning(2) == [0, 1]
    b = procs(cap=2)
    assert b.wait_owning(0) == []  # a standby: healthy, owning nothing
    acked, sent = publish(mosquitto, estates, frames=100)
    with engine.begin() as conn:
        cut = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT DISTINCT pid FROM pg_locks "
                "WHERE locktype = 'advisory' AND classid = :c AND objsubid = 2 AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) held"
            ),
            {"c": LOCK_CLASS},
        ).scalar_one()
    assert cut == 1
    assert b.wait_owning(2) == [0, 1]
    more_acked, more_sent = publish(mosquitto, estates, frames=100, hours_ago=2)
    a.wait_owning(0)  # back as the standby once its lock connection is up again
    wait_quiescent(engine, acked=acked | more_acked, timeout=30)
    v = judge(engine, acked | more_acked, sent | more_sent)
    assert (len(v.lost), len(v.duplicated), len(v.unexpected), v.acked) == (0, 0, 0, 400), v
    engine.dispose()


def test_a_partition_session_taken_over_gives_the_partition_up_an_unpartitioned_one_does_not() -> None:
    """MQTT 5 reason 142 (Session taken over): a partition's owner that is cut off by a standby with its client id
    must not reconnect (paho would, and take the session back); the single unpartitioned ingest keeps reconnecting
    as it always has (test_m14: a device borrowing its client id must not switch it off)."""
    from paho.mqtt.reasoncodes import ReasonCode

    from ingest.health import Health
    from ingest.source import MqttSource

    taken = ReasonCode(PacketTypes.DISCONNECT, identifier=142)
    for yield_on_takeover in (True, False):
        src = MqttSource(Settings(env="testing"), Health(), subscriptions=[], yield_on_takeover=yield_on_takeover)
        src._on_disconnect(src.client, None, None, taken, None)
        assert src.taken_over.is_set() is yield_on_takeover
        assert not src.health.mqtt_connected
    normal = ReasonCode(PacketTypes.DISCONNECT, identifier=0)
    src = MqttSource(Settings(env="testing"), Health(), subscriptions=[], yield_on_takeover=True)
    src._on_disconnect(src.client, None, None, normal, None)
    assert not src.taken_over.is_set()
