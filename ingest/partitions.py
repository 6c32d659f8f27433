"""Ingest partitioned by estate (DESIGN §9, STEWARD_INGEST_PARTITIONS > 1).

Estates hash to N partitions (``partition_of``). A process claims free partitions with PostgreSQL advisory locks
held on a connection of its own, so a process that dies loses its locks with its connection. Each claimed
partition runs as one writer: its own persistent MQTT session (client id ``{STEWARD_MQTT_CLIENT_ID}-{k}``,
subscribed to ``steward/{estate}/up/+/+`` for its estates) and its own Pipeline (registry, seq tracker, batch
hooks), so a device's order, seq and alarm state never have two writers.

A process owning fewer than it may (STEWARD_INGEST_MAX_PARTITIONS) polls for free partitions: when an owner dies,
a standby claims its partition and connects with the same client id, taking over the broker session and the
messages queued in it. The broker's session takeover also cuts off an owner that is only half dead (its lock
connection gone, its MQTT connection not yet): that owner sees "Session taken over" and lets the partition go
(ingest/source.py), and one that loses its lock connection stops all its partitions before anyone else can have
them for long.

Estates imported at run time are picked up by re-reading the estates table every STEWARD_INGEST_ESTATE_POLL_S
and subscribing the partition to them. A message published for an estate before its partition subscribed is
not kept by the broker (nobody's subscription matched it): import an estate before its devices report.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Iterable

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings
from ingest.health import Health, PartitionedHealth, serve_health
from ingest.pipeline import Pipeline, batch_hooks, charger_behind
from ingest.source import MqttSource
from protocol.topics import PLATFORM_STATE_PARTITION, estate_subscription

log = logging.getLogger(__name__)

# pg_try_advisory_lock(LOCK_CLASS, k) holds partition k. The two-int form is a key space of its own beside the
# worker jobs' one-bigint locks (pg_locks objsubid 2 vs 1); 0x60 is from the ids set aside for this work.
# Advisory locks are per database, so deployments (and tests) on different databases never meet.
LOCK_CLASS = 0x60
HALT_TIMEOUT_S = 30.0


def partition_of(estate: str, partitions: int) -> int:
    """The partition of an estate: CRC-32 (zlib's, the IEEE 802.3 polynomial) of the estate code's UTF-8 bytes,
    modulo the number of partitions. Stable across processes, Python versions and restarts (unlike ``hash``)."""
    return zlib.crc32(estate.encode("utf-8")) % partitions


def estates_by_partition(estates: Iterable[str], partitions: int) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {k: set() for k in range(partitions)}
    for code in estates:
        out[partition_of(code, partitions)].add(code)
    return out


def libpq_url(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class PartitionLocks:
    """Partition locks on one dedicated autocommit connection: a lock lives exactly as long as the connection,
    which dies with the process (TCP keepalives bound how long a vanished host keeps it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None

    def connect(self) -> None:
        self.close()
        self.conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            application_name="steward-ingest-partitions",
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def _c(self) -> psycopg.Connection[tuple[object, ...]]:
        if self.conn is None or self.conn.closed:
            raise psycopg.OperationalError("partition lock connection is closed")
        return self.conn

    def held_elsewhere(self) -> set[int]:
        """Partitions whose lock some other session holds (one query instead of a try per partition)."""
        rows = (
            self._c()
            .execute(
                "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 "
                "AND granted AND pid <> pg_backend_pid() "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LOCK_CLASS,),
            )
            .fetchall()
        )
        return {int(r[0]) for r in rows}  # type: ignore[call-overload]

    def try_claim(self, k: int) -> bool:
        row = self._c().execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, k)).fetchone()
        return bool(row and row[0])

    def release(self, k: int) -> None:
        self._c().execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, k))

    def check(self) -> None:
        """Raise if the connection (and with it every lock we hold) is gone."""
        self._c().execute("SELECT 1")

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


class Partition:
    """One claimed partition: its persistent session and its own single-writer Pipeline, in a thread."""

    def __init__(self, k: int, settings: Settings, engine: Engine, estates: Iterable[str]) -> None:
        self.k = k
        self.settings = settings.model_copy(update={"mqtt_client_id": f"{settings.mqtt_client_id}-{k}"})
        self.health = Health()
        self.source = MqttSource(
            self.settings,
            self.health,
            subscriptions=[estate_subscription(e) for e in estates],
            state_topic=PLATFORM_STATE_PARTITION.format(partition=k),
            yield_on_takeover=True,
        )
        self.pipeline = Pipeline(
            self.settings,
            engine,
            self.health,
            self.source.ack,
            resync=self.source.resync,
            resync_needed=lambda: self.source.resync_needed,
        )
        self.pipeline.hooks.extend(batch_hooks(self.settings))
        # Charging behind the commits (billing/charge_behind.py): one charger per partition, for its estates' meters.
        self.charger = charger_behind(self.settings, engine)
        if self.charger is not None:
            self.pipeline.after_commit.append(self.charger.submit)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"ingest-p{k}", daemon=True)

    def start(self) -> Partition:
        self.thread.start()
        return self

    def _run(self) -> None:
        started = False
        if self.charger is not None:
            self.charger.start()
        try:
            if not self.pipeline.prepare(self.stop):
                return
            self.source.start()
            started = True
            self.pipeline.run(self.source.queue, self.stop)
        except BaseException as exc:
            log.exception("partition %d failed", self.k)
            self.error = exc
        finally:
            if started:
                self.source.stop()
            if self.charger is not None:
                self.charger.stop()

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self.source.taken_over.is_set()

    def set_estates(self, estates: Iterable[str]) -> None:
        topics = {estate_subscription(e) for e in estates}
        if topics - (self.source.subscriptions or set()):
            self.pipeline.registry.expire()  # before subscribing: the new estate's devices are in the table already
        self.source.set_subscriptions(topics)

    def halt(self) -> None:
        self.stop.set()

    def join(self, timeout: float = HALT_TIMEOUT_S) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.error("partition %d did not stop within %.0f s", self.k, timeout)


def read_estates(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(code) for (code,) in conn.execute(text("SELECT code FROM estates"))]


def halt_all(parts: Iterable[Partition]) -> None:
    """Stop partitions together (each may be mid-commit), then wait for all of them."""
    parts = list(parts)
    for p in parts:
        p.halt()
    for p in parts:
        p.join()


def run_partitioned(
    settings: Settings, engine: Engine, stop: threading.Event, health: PartitionedHealth | None = None
) -> PartitionedHealth:
    """Run a partitioned ingest process until ``stop``: claim free partitions up to STEWARD_INGEST_MAX_PARTITIONS,
    run each, follow the estates table, and take over partitions other processes let go of or died with."""
    n = settings.ingest_partitions
    cap = settings.ingest_max_partitions or n
    health = health or PartitionedHealth(n)
    port = settings.ingest_health_port
    server = serve_health(health, port, settings.metrics_host) if port else None
    locks = PartitionLocks(libpq_url(engine))
    owned: dict[int, Partition] = {}
    estates: dict[int, set[str]] | None = None
    estates_read = float("-inf")
    log.info("ingest partitions: %d, this process owns at most %d", n, cap)
    # Import the batch hooks' modules (alarms, tickets, billing) now rather than when a partition is claimed: a
    # standby's takeover gap should not include a second of imports.
    batch_hooks(settings)
    try:
        while not stop.is_set():
            if time.monotonic() - estates_read >= settings.ingest_estate_poll_s or estates is None:
                try:
                    estates = estates_by_partition(read_estates(engine), n)
                    estates_read = time.monotonic()
                    for k, p in owned.items():
                        p.set_estates(estates[k])
                        health.estates[k] = sorted(estates[k])
                except SQLAlchemyError as exc:
                    log.warning("could not read the estates: %s", str(exc).splitlines()[0])
            try:
                if not locks.connected:
                    locks.connect()
                    log.info("partition lock connection up")
                locks.check()
                health.locks_ok = True
                ended = [k for k, p in owned.items() if not p.running]
                if ended:
                    halt_all(owned[k] for k in ended)
                    for k in ended:
                        locks.release(k)
                        del owned[k]
                        health.drop(k)
                        log.warning("partition %d let go", k)
                if len(owned) < cap and estates is not None:
                    busy = locks.held_elsewhere()
                    for k in range(n):
                        if len(owned) >= cap:
                            break
                        if k in owned or k in busy or not locks.try_claim(k):
                            continue
                        log.info("claimed partition %d (%d estates)", k, len(estates[k]))
                        part = Partition(k, settings, engine, estates[k])
                        owned[k] = part
                        health.estates[k] = sorted(estates[k])
                        health.add(k, part.health)
                        part.start()
            except psycopg.Error as exc:
                # The lock connection is gone and our locks with it: another process may claim our partitions at
                # any moment, so stop writing them now; claim again once the connection is back.
                if health.locks_ok or owned:
                    log.error("partition lock connection lost (%s): stopping %d partition(s)", exc, len(owned))
                health.locks_ok = False
                halt_all(owned.values())
                for k in list(owned):
                    health.drop(k)
                owned.clear()
                locks.close()
            stop.wait(settings.ingest_claim_poll_s)
    finally:
        halt_all(owned.values())
        locks.close()
        if server is not None:
            server.shutdown()
        log.info("partitioned ingest stopped: %s", health.snapshot()["counters"])
    return health


__all__ = ["LOCK_CLASS", "PartitionLocks", "partition_of", "run_partitioned"]
