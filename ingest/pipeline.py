"""The ingest loop: collect a batch, write it in one transaction, then acknowledge it.

Acknowledging only after the commit is what makes delivery exactly-once from the broker's PUBACK to a
stored row: a crash before the commit leaves the messages unacked, the broker redelivers them, and
the device-time keys turn any repeat into a counted duplicate.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from core.settings import Settings
from ingest.decode import DeadLetterRow, DecodedBatch, Decoder
from ingest.health import Health
from ingest.messages import RawMessage
from ingest.ratelimit import rate_limiter
from ingest.registry import DeviceRegistry
from ingest.seq import SeqTracker
from ingest.writer import WriteResult, write_batch
from storage.timescale import has_timescale

if TYPE_CHECKING:
    from billing.charge_behind import ChargerBehindIngest
    from billing.on_ingest import ChargeOnIngest

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# How often ingest_status is refreshed: inside a batch transaction at most once a second, and by
# itself when idle, so the API can tell "quiet" from "dead" (stale after 30 s).
STATUS_EVERY_S = 1.0
STATUS_IDLE_EVERY_S = 5.0

# Called inside the batch transaction after the rows are written (alarms, billing hook in here).
BatchHook = Callable[..., object]  # return value ignored
# Called after the batch transaction committed, before its ack (the charger behind ingest): must not block.
CommittedHook = Callable[[DecodedBatch, WriteResult], object]


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        health: Health,
        ack: Callable[[Sequence[RawMessage]], int],
        resync: Callable[[], None] | None = None,
        resync_needed: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.health = health
        self.ack = ack
        self.resync = resync
        self.resync_needed = resync_needed
        self.registry = DeviceRegistry()
        self.seq = SeqTracker()
        self.decoder = Decoder(
            self.registry,
            accept_past=settings.accept_past,
            accept_future=settings.accept_future,
            max_payload_bytes=settings.max_payload_bytes,
            limiter=rate_limiter(settings),
        )
        self.keep_rollup = True
        self.hooks: list[BatchHook] = []
        self.after_commit: list[CommittedHook] = []
        self.instance = settings.mqtt_client_id
        self._status_written = 0.0
        self._expect_duplicates = True  # until a batch without any
        # Batches taken off the source queue and not yet acked (or given up at stop).
        self._held = 0
        self._held_lock = threading.Lock()

    def prepare(self, stop: threading.Event) -> bool:
        """Load the registry and seq state, waiting for the database if it is not up yet."""
        attempt = 0
        while not stop.is_set():
            try:
                with self.engine.begin() as conn:
                    self.registry.load(conn)
                    self.seq.load(conn)
                    self.keep_rollup = not has_timescale(conn)
                self.health.database_ok = True
                return True
            except SQLAlchemyError as exc:
                self._degraded(exc)
                stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
        return False

    def run(self, source_queue: queue.SimpleQueue[RawMessage], stop: threading.Event) -> None:
        """Two stages, so decoding the next batch overlaps the database writing this one: this thread
        collects and decodes, the ``ingest-writer`` thread writes, commits and acks, in order. At most
        one decoded batch waits between them; while it waits, reading stops at Receive Maximum
        (ingest/source.py), which is what bounds memory. A batch not committed when we stop is not
        acked, so the broker delivers it again."""
        handoff: queue.Queue[tuple[list[RawMessage], DecodedBatch | None]] = queue.Queue(maxsize=1)
        halt = threading.Event()  # either stage ends: the other one follows
        failed: list[BaseException] = []
        writer = threading.Thread(
            target=self._write_loop, args=(handoff, halt, failed), name="ingest-writer", daemon=True
        )
        writer.start()
        try:
            self._read_loop(source_queue, handoff, stop, halt)
        finally:
            halt.set()
            writer.join()
        if failed:
            raise failed[0]

    def _read_loop(
        self,
        source_queue: queue.SimpleQueue[RawMessage],
        handoff: queue.Queue[tuple[list[RawMessage], DecodedBatch | None]],
        stop: threading.Event,
        halt: threading.Event,
    ) -> None:
        while not stop.is_set() and not halt.is_set():
            if self.resync is not None and self.resync_needed() and self._held == 0 and source_queue.empty():
                self.resync()  # nothing of this connection is left to acknowledge
            batch = self._collect(source_queue, stop)
            if not batch:
                if time.monotonic() - self._status_written > STATUS_IDLE_EVERY_S:
                    self._report_idle()
                continue
            with self._held_lock:
                self._held += 1
            # A batch naming a device we have not loaded is decoded by the writer, after the registry
            # lookup, under its retry loop (the database may be down).
            decoded = None if self.decoder.unknown_codes(batch) else self.decoder.decode(batch)
            while not stop.is_set() and not halt.is_set():
                try:
                    handoff.put((batch, decoded), timeout=0.2)
                    break
                except queue.Full:
                    self.health.queue_depth = source_queue.qsize()  # the backlog held while the writer waits
                    continue

    def _write_loop(
        self,
        handoff: queue.Queue[tuple[list[RawMessage], DecodedBatch | None]],
        halt: threading.Event,
        failed: list[BaseException],
    ) -> None:
        try:
            while not halt.is_set():
                try:
                    batch, decoded = handoff.get(timeout=0.2)
                except queue.Empty:
                    continue
                self.health.writing_since = self.health.clock()
                try:
                    if self._commit_with_retry(batch, halt, decoded):
                        self.ack(batch)
                finally:
                    self.health.writing_since = None
                    with self._held_lock:
                        self._held -= 1
        except BaseException as exc:  # run() raises it, as the one-thread loop did
            log.exception("ingest writer failed")
            failed.append(exc)
            halt.set()

    def _collect(self, q: queue.SimpleQueue[RawMessage], stop: threading.Event) -> list[RawMessage]:
        try:
            first = q.get(timeout=0.2)
        except queue.Empty:
            self.health.queue_depth = 0
            return []
        batch = [first]
        size, deadline = self.settings.batch_size, time.monotonic() + self.settings.batch_latency_ms / 1000
        while len(batch) < size:
            try:
                batch.append(q.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.is_set():
                break
            try:
                batch.append(q.get(timeout=remaining))
            except queue.Empty:
                break
        self.health.queue_depth = q.qsize()
        return batch

    def _commit_with_retry(
        self, batch: list[RawMessage], stop: threading.Event, decoded: DecodedBatch | None = None
    ) -> bool:
        """Write ``batch`` (already ``decoded``, or not yet); on a database outage keep retrying (not
        acking) until it works or we stop."""
        attempt = 0
        while not stop.is_set():
            try:
                if decoded is None:
                    self._write(batch)
                else:
                    self._write_decoded(decoded)
                if not self.health.database_ok:
                    log.info("database back; ingest resumed")
                self.health.database_ok = True
                return True
            except (DataError, IntegrityError) as exc:
                # The database refused some value in the batch: find it by halving, dead-letter it,
                # and keep everything else flowing (one bad message never stops ingestion).
                return self._isolate_poison(batch, exc, stop)
            except SQLAlchemyError as exc:
                self._degraded(exc)
                stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
        return False

    def _isolate_poison(self, batch: list[RawMessage], exc: SQLAlchemyError, stop: threading.Event) -> bool:
        if len(batch) > 1:
            half = len(batch) // 2
            return all(self._commit_with_retry(part, stop) for part in (batch[:half], batch[half:]))
        m = batch[0]
        dead = DecodedBatch(messages=1)
        reason = f"database rejected the payload: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
        dead.dead_letters.append(DeadLetterRow(m.received_at, m.topic, m.payload, reason))
        attempt = 0
        while not stop.is_set():
            try:
                self._write_decoded(dead)
                return True
            except SQLAlchemyError as again:
                self._degraded(again)
                stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
        return False

    def _write(self, batch: list[RawMessage]) -> None:
        unknown = self.decoder.unknown_codes(batch)
        if unknown:
            with self.engine.connect() as conn:
                self.registry.resolve(conn, unknown)
        self._write_decoded(self.decoder.decode(batch))

    def _write_decoded(self, decoded: DecodedBatch) -> WriteResult:
        gaps, last_seq = self.seq.scan(decoded)
        try:
            result = self._transaction(decoded, gaps, last_seq, expect_duplicates=self._expect_duplicates)
        except IntegrityError as exc:
            # The fast samples insert met a duplicate (ingest/writer.py): the transaction is gone
            # with nothing else in it yet; write the batch again, deduplicating.
            if self._expect_duplicates or not isinstance(exc.orig, UniqueViolation):
                raise
            result = self._transaction(decoded, gaps, last_seq, expect_duplicates=True)
        self.seq.commit(last_seq)
        for committed in self.after_commit:
            committed(decoded, result)
        # Redeliveries come in runs (after a reconnect or a crash): while they last, dedupe directly.
        self._expect_duplicates = result.duplicates > 0
        c = self.health.counters
        c.batches += 1
        c.stored += result.stored
        c.duplicate += result.duplicates
        c.dead_lettered += len(decoded.dead_letters)
        c.quarantined += len(decoded.quarantined)
        c.rate_limited += decoded.rate_limited
        c.seq_gaps += len(gaps)
        self.health.last_commit_at = time.time()
        if self.health.first_commit_at is None:
            self.health.first_commit_at = self.health.last_commit_at
        return result

    def _transaction(
        self,
        decoded: DecodedBatch,
        gaps: list[tuple[int, int, int]],
        last_seq: dict[int, int],
        *,
        expect_duplicates: bool,
    ) -> WriteResult:
        with self.engine.begin() as conn:
            result = write_batch(
                conn,
                decoded,
                now=datetime.now(UTC),
                gaps=gaps,
                last_seq=last_seq,
                keep_rollup=self.keep_rollup,
                expect_duplicates=expect_duplicates,
            )
            for hook in self.hooks:
                hook(conn, decoded, result)
            if time.monotonic() - self._status_written > STATUS_EVERY_S:
                self._report_status(conn)
        return result

    def _report_status(self, conn: Connection) -> None:
        """Publish our health and counters where the API and dashboards can read them."""
        snap = self.health.snapshot()
        conn.execute(
            text(
                "INSERT INTO ingest_status (instance, updated_at, status, counters) "
                "VALUES (:i, now(), :s, CAST(:c AS jsonb)) ON CONFLICT (instance) DO UPDATE SET "
                "updated_at = excluded.updated_at, status = excluded.status, counters = excluded.counters"
            ),
            {"i": self.instance, "s": snap["status"], "c": json.dumps(snap["counters"])},
        )
        self._status_written = time.monotonic()

    def _report_idle(self) -> None:
        try:
            with self.engine.begin() as conn:
                self._report_status(conn)
            self.health.database_ok = True
        except SQLAlchemyError as exc:
            self._degraded(exc)
            self._status_written = time.monotonic()  # retry at the idle pace, not in a tight loop

    def _degraded(self, exc: SQLAlchemyError) -> None:
        first_line = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
        if self.health.database_ok:
            log.error("database unavailable, holding acks and retrying: %s", first_line)
        self.health.database_ok = False
        self.health.last_error = first_line
        self.health.counters.commit_failures += 1


def batch_hooks(settings: Settings) -> list[BatchHook]:
    """The hooks `run_ingest` runs inside each batch transaction, as the settings switch them on."""
    hooks: list[BatchHook] = []
    if settings.alarm_evaluation:
        from alarms.access_evaluator import AccessEvaluator
        from alarms.battery import BatteryEvaluator
        from alarms.evaluator import AlarmEvaluator
        from alarms.meter_evaluator import MeterAnomalyEvaluator
        from alarms.multipoint_evaluator import MultiPointEvaluator
        from tickets.from_alarms import open_for_alarms

        # Alarms are evaluated inside each batch transaction: a reading and the alarm it raises
        # commit together, so a crash can neither lose the alarm nor raise it twice.
        hooks.append(AlarmEvaluator(on_raised=open_for_alarms))
        hooks.append(MultiPointEvaluator(on_raised=open_for_alarms))  # several points of a device (§2)
        hooks.append(MeterAnomalyEvaluator(on_raised=open_for_alarms))
        hooks.append(BatteryEvaluator(on_raised=open_for_alarms))  # meters' battery_v in status frames
        hooks.append(AccessEvaluator(on_raised=open_for_alarms))  # swipes and door events (issue 12 §4)
    if settings.billing_charge_on_ingest and settings.billing_charge_mode == "in_batch":
        # Household hot-water meters charged in the batch transaction: a redelivered batch finds the
        # cursor moved and charges nothing twice (billing/on_ingest.py).
        hooks.append(charge_hook(settings))
    return hooks


def charge_hook(settings: Settings) -> ChargeOnIngest:
    """The product's charging logic: a meter is charged once its uncharged readings span
    billing_charge_span_s, its intervals merged into as few charges as the tariff and the month allow
    (same amounts, fewer ledger rows)."""
    from billing.on_ingest import ChargeOnIngest

    return ChargeOnIngest(span=timedelta(seconds=settings.billing_charge_span_s), merge=True)


def charger_behind(settings: Settings, engine: Engine) -> ChargerBehindIngest | None:
    """The charger that follows ingest's commits (billing/charge_behind.py), when charging is on and
    not done inside the batch transaction; the caller starts it and stops it."""
    if not settings.billing_charge_on_ingest or settings.billing_charge_mode != "behind":
        return None
    from billing.charge_behind import ChargerBehindIngest

    return ChargerBehindIngest(engine, charge_hook(settings), round_s=settings.billing_charge_round_s)


def run_ingest(settings: Settings, engine: Engine, stop: threading.Event, health: Health | None = None) -> Health:
    """Run ingest until ``stop`` is set: connect, consume, commit, ack. Returns the final health."""
    from ingest.health import serve_health
    from ingest.source import MqttSource

    health = health or Health()
    port = settings.ingest_health_port
    server = serve_health(health, port, settings.metrics_host) if port else None
    source = MqttSource(settings, health)
    pipeline = Pipeline(
        settings, engine, health, source.ack, resync=source.resync, resync_needed=lambda: source.resync_needed
    )
    pipeline.hooks.extend(batch_hooks(settings))
    charger = charger_behind(settings, engine)
    if charger is not None:
        pipeline.after_commit.append(charger.submit)
        charger.start()
    try:
        if not pipeline.prepare(stop):
            return health
        source.start()
        pipeline.run(source.queue, stop)
    finally:
        source.stop()
        if charger is not None:
            charger.stop()
        if server is not None:
            server.shutdown()
        log.info("ingest stopped: %s", health.snapshot()["counters"])
    return health


__all__ = ["Pipeline", "batch_hooks", "charge_hook", "charger_behind", "run_ingest"]
