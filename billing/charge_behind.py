"""Charging one step behind ingest's commits, on a thread and a database connection of its own.

Ingest hands this charger each committed batch's meter readings (`submit`, an after-commit hook of the
pipeline: a dictionary merge, no I/O); the charger thread charges them with the same `ChargeOnIngest`
logic (the span, the coalesced charges, ``wait=False`` locks) in its own transaction, while ingest's
writer thread goes on storing the next batch. Measured by ``bench/ingest.py --meter-stream``: charging
inside the batch transaction costs the single writer about half its time (the charges write six rows
for each reading's one); here that work overlaps the writes instead of lengthening them.

Why nothing is charged twice or lost, though the charge no longer commits with its readings:
- the readings are committed before the charger sees them, and a charge walks the readings after the
  meter's billing cursor (`charge_meters_coalesced`), moving the cursor in the same transaction as its
  charges, under the meter's advisory lock; meter_charges is unique on (device, from_ts) and (device, to_ts)
  and the ledger on ``charge:<device>:<from_ts>``. A redelivered batch, a retried round, a second ingest
  process and the worker's billing run all start from the cursor, so each interval is charged once.
- a crash (or a stop) between a batch's commit and its charge leaves readings behind the cursor, never
  a half charge: the next reading of that meter (the cursor cache starts empty, so it asks) or the
  hourly billing run (worker, `billing_run`) charges them.
- a round that fails (database down) keeps its meters pending and is retried with backoff; ingest is
  not held up by it. Under load the pending set merges — a meter waiting for the charger gets one
  charge for all its new readings — so the charger does less work per reading the busier ingest is;
  ``round_s`` (settings ``billing_charge_round_s``) spaces the rounds so that this merging happens.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from billing.on_ingest import ChargeOnIngest, MeterBatch, newest_readings

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class ChargerBehindIngest:
    """`submit` after each batch commit; a thread charges the pending meters (module docstring)."""

    def __init__(self, engine: Engine, hook: ChargeOnIngest, *, round_s: float = 0.0) -> None:
        self.engine, self.hook = engine, hook
        # At most one round per round_s: under a flood the readings of a meter gather between rounds and
        # are charged as one stretch, so the charger's work follows the meters, not the readings.
        self.round_s = round_s
        self._pending: dict[int, datetime] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._idle = threading.Event()  # set while nothing is pending or being charged
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Meters waiting for the charger (a gauge for health and tests)."""
        return len(self._pending)

    def submit(self, decoded: MeterBatch, result: object = None) -> None:
        """After-commit hook: note each meter's newest committed reading for the next round."""
        if not decoded.meters:
            return
        newest = newest_readings(decoded)
        with self._cond:
            self._merge(newest)
            self._idle.clear()
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="billing-charger", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the round in progress; what is still pending is charged later (module docstring)."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted reading has been through a round (tests, bench)."""
        return self._idle.wait(timeout)

    def _merge(self, newest: dict[int, datetime]) -> None:
        p = self._pending
        for d, ts in newest.items():
            cur = p.get(d)
            if cur is None or ts > cur:
                p[d] = ts

    def _run(self) -> None:
        attempt = 0
        last_round = time.monotonic() - self.round_s
        while not self._stop.is_set():
            wait = last_round + self.round_s - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    self._idle.set()
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                work, self._pending = self._pending, {}
            last_round = time.monotonic()
            try:
                with self.engine.begin() as conn:
                    self.hook.charge(conn, work)
                self.rounds += 1
                attempt = 0
            except Exception as exc:  # a database outage, or a bug: either way the thread must live on
                # Rolled back: nothing of the round stays. Its meters wait for the next round.
                self.failures += 1
                self.hook.forget(work)
                with self._cond:
                    self._merge(work)
                first_line = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, SQLAlchemyError):
                    log.warning("charging behind ingest failed, retrying: %s", first_line)
                else:
                    log.exception("charging behind ingest failed, retrying")
                self._stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1


__all__ = ["ChargerBehindIngest"]
