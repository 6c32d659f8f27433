"""Charging as readings arrive: an ingest `Pipeline` hook, run inside the batch transaction.

`ChargeOnIngest()(conn, decoded, result)` charges every household hot-water meter that has readings in
the batch up to its newest reading there (`charging.charge_meters`: `charge_meter`'s charges for the
whole set in a handful of statements), in the batch's own transaction:
the readings, the charges, the ledger postings and the cursor commit together or not at all.

Why it cannot charge twice: a redelivered batch finds the meter's cursor already at (or past) those
readings, and `charge_meter` only walks readings after the cursor; behind that, meter_charges is
unique on (device, from_ts) and (device, to_ts) and the ledger on ``charge:<device>:<from_ts>``. A
late reading (device time at or before the cursor) changes nothing: the registers are cumulative, so
its volume is inside the charged interval that spans it.

Why it stays cheap: which devices are billable comes from a cache (`meters_to_bill`, reloaded every
`REFRESH_EVERY_S`, or after `RELOAD_COOLDOWN_S` when a device the cache does not know reports), so a
batch without billable meters costs no query at all.

Why it stays cheap under a flood of readings: with a ``span`` (the product's default, settings
``billing_charge_span_s``, one hour) a meter is charged when its newest reading is at least that far
past its cursor, so one charge covers an hour of readings or more; and with ``merge`` the meters are
charged by the billing run's coalesced path (`coalesce.charge_meters_coalesced`: one charge per stretch
of normal intervals in one month and tariff). The amounts are the same either way (tier values and
rounded amounts telescope); only the number of ledger rows falls. A
meter's cursor time is cached to decide "due" without a query: the cache only decides *when*, never
*what* (charge_meters reads the cursor itself), and a batch rolled back after the cache moved delays
that meter's charge by at most the span. The periodic billing run charges whatever is left.

Why it never stalls ingest: each meter is taken with ``pg_try_advisory_xact_lock``; a meter that a
billing run (or another ingest process) is charging at that moment is skipped, and the next batch of
that meter or the periodic billing run (worker, `billing_run`) picks it up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from billing.charging import MeterResult, charge_meters, meters_to_bill
from billing.coalesce import charge_meters_coalesced

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 60.0
RELOAD_COOLDOWN_S = 5.0


class MeterBatch(Protocol):
    """What the hook needs of a batch (ingest's DecodedBatch): billing never imports ingest."""

    meters: list[tuple[datetime, int, Decimal, Decimal | None, str | None, list[str], int | None, datetime]]


@dataclass
class Totals:
    """Running counters since the hook was made (logged and read by tests and the bench)."""

    batches: int = 0
    meters: int = 0
    charges: int = 0
    amount_fen: int = 0
    skipped: int = 0  # meters locked by another charger: left to the next batch or the billing run
    deferred: int = 0  # meters whose uncharged readings span less than `span`: left to a later batch


class ChargeOnIngest:
    """Pipeline hook: charge the batch's household hot-water meters up to their newest reading."""

    def __init__(self, *, span: timedelta = timedelta(0), merge: bool = False) -> None:
        self.span, self.merge = span, merge
        self._charged_to: dict[int, datetime] = {}  # meter → its cursor's time, as far as this process knows
        self._billable: frozenset[int] = frozenset()
        self._known: frozenset[int] = frozenset()
        self._loaded_ns: int | None = None  # time.monotonic_ns() of the last load; None: never loaded
        self.totals = Totals()

    def load(self, conn: Connection) -> None:
        self._billable = frozenset(meters_to_bill(conn))
        # Every device counts as known, billable or not, so a sensor never forces reloads.
        self._known = frozenset(conn.execute(text("SELECT id FROM devices")).scalars())
        self._loaded_ns = time.monotonic_ns()
        log.info("charge on ingest: %d billable meters", len(self._billable))

    def _refresh(self, conn: Connection, device_ids: Iterable[int]) -> None:
        if self._loaded_ns is None:
            self.load(conn)
            return
        age_s = (time.monotonic_ns() - self._loaded_ns) / 1e9
        if age_s > REFRESH_EVERY_S or (age_s > RELOAD_COOLDOWN_S and not self._known.issuperset(device_ids)):
            self.load(conn)

    def __call__(self, conn: Connection, decoded: MeterBatch, result: object = None) -> list[MeterResult]:
        """Charge each billable meter of the batch up to its newest reading; returns what each got."""
        if not decoded.meters:
            return []
        return self.charge(conn, newest_readings(decoded))

    def charge(self, conn: Connection, readings: Mapping[int, datetime]) -> list[MeterResult]:
        """Charge the billable meters among ``readings`` (device → its newest reading's time) up to there."""
        if not readings:
            return []
        self._refresh(conn, readings.keys())
        newest = {d: ts for d, ts in readings.items() if d in self._billable}
        if not newest:
            return []
        if self.span > timedelta(0):
            newest = self._due(conn, newest)
            if not newest:
                return []
        # A Session on the batch's connection joins its transaction: flush writes into it, and the
        # pipeline's commit (or rollback) decides for the readings and the charges together.
        session = Session(bind=conn, autoflush=False, expire_on_commit=False)
        try:
            charge = (lambda s, u: charge_meters_coalesced(s, u, wait=False)) if self.merge else charge_meters
            out = charge(session, newest)
        finally:
            session.close()
        if self.span > timedelta(0):
            for r in out:
                if r.skipped or r.held is not None or r.unpriced is not None:
                    self._charged_to.pop(r.device_id, None)  # stopped short: ask the cursor next time
                else:
                    self._charged_to[r.device_id] = newest[r.device_id]
        t = self.totals
        t.batches += 1
        t.meters += len(out)
        t.charges += sum(r.charges for r in out)
        t.amount_fen += sum(r.amount_fen for r in out)
        t.skipped += sum(r.skipped for r in out)
        return out

    def forget(self, device_ids: Iterable[int]) -> None:
        """Drop the cached cursor times of ``device_ids`` (their charge was rolled back): asked again next time."""
        for d in device_ids:
            self._charged_to.pop(d, None)

    def _due(self, conn: Connection, newest: dict[int, datetime]) -> dict[int, datetime]:
        """The meters whose newest reading is at least `span` past their cursor (or that have none)."""
        unknown = [d for d in newest if d not in self._charged_to]
        if unknown:
            rows = conn.execute(
                text("SELECT device_id, last_ts FROM billing_cursors WHERE device_id = ANY(:d)"), {"d": unknown}
            )
            self._charged_to.update((d, ts) for d, ts in rows)
        due = {}
        for d, ts in newest.items():
            last = self._charged_to.get(d)
            if last is None or ts - last >= self.span:
                due[d] = ts
        self.totals.deferred += len(newest) - len(due)
        return due


def newest_readings(decoded: MeterBatch) -> dict[int, datetime]:
    """Each meter of the batch → the device time of its newest reading there."""
    newest: dict[int, datetime] = {}
    for m in decoded.meters:
        ts, device_id = m[0], m[1]
        if device_id not in newest or ts > newest[device_id]:
            newest[device_id] = ts
    return newest


__all__ = ["REFRESH_EVERY_S", "ChargeOnIngest", "MeterBatch", "Totals", "newest_readings"]
