"""Billing periods: an estate's quarters, in its own time zone, open or closed (issue 11 §3).

A quarter is the estate-local [starts_at, ends_at) (2026Q4: 1 Oct 00:00 to 1 Jan 00:00 Asia/Shanghai). A
charge belongs to the quarter its interval *ends* in, the same rule as its tier month (`meter_charges.month`).

Closing a quarter freezes its statements. A charge written later whose interval ends at or before the
estate's last closed quarter's end (a reading that arrived late: an offline meter's gateway catching up) is
booked in the first open quarter instead: `meter_charges.booked_period` names it and its ledger
transaction is dated at that quarter's start, so the closed statement's figures (all read from the
ledger by date) cannot move, and the open quarter's statement lists it as 上期补收 (late readings).

Why a closed quarter is "everything before the last closed quarter's end" rather than a set of quarters:
quarters are closed in order (`close_period` refuses otherwise), so one instant per estate says it all,
and the chargers read it in the query they already run (no query per reading).

Concurrency: `close_period` takes ``pg_advisory_xact_lock(PERIOD_LOCK_SPACE, estate)``; every charger takes
the same lock shared after its meter locks (`charging`), so a charge transaction that started before the
close commits before it, and one after sees the quarter closed.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from billing.const import PERIOD_LOCK_SPACE, PeriodStatus
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import BillingPeriod, Estate

_LABEL = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True, slots=True)
class Quarter:
    year: int
    q: int

    @property
    def label(self) -> str:
        return f"{self.year}Q{self.q}"

    def bounds(self, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
        """The estate-local [start, end) of the quarter."""
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        start = datetime(self.year, 3 * self.q - 2, 1, tzinfo=zone)
        year, month = (self.year + 1, 1) if self.q == 4 else (self.year, 3 * self.q + 1)
        end = datetime(year, month, 1, tzinfo=zone)
        return start, end

    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.q == 1 else Quarter(self.year, self.q - 1)

    def months(self) -> tuple[int, int]:
        """First and last month (1–12) of the quarter."""
        return 3 * self.q - 2, 3 * self.q


def parse(label: str) -> Quarter:
    m = _LABEL.match(label.strip().upper())
    if m is None or not 2000 <= int(m.group(1)) <= 2100:  # a plausible year: datetime fails outside 1–9999
        raise InvalidInput(f"a quarter looks like 2026Q4 (2000–2100), not {label!r} / 季度格式应为 2026Q4")
    return Quarter(int(m.group(1)), int(m.group(2)))


def quarter_of(at: datetime, tz: str | ZoneInfo) -> Quarter:
    local = at.astimezone(tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz))
    return Quarter(local.year, (local.month - 1) // 3 + 1)


@dataclass(frozen=True, slots=True)
class Closed:
    """An estate's closed past: charges whose interval ends before `until` are late, booked in `period`."""

    until: datetime  # the end of the latest closed quarter = the start of the first open one
    period: str  # that open quarter's label


def closed_from(until: datetime | None, tz: str) -> Closed | None:
    if until is None:
        return None
    return Closed(until, quarter_of(until, tz).label)


_CLOSED = text(
    "SELECT e.id, e.timezone, (SELECT max(p.ends_at) FROM billing_periods p WHERE p.estate_id = e.id"
    " AND p.status = 'closed') FROM estates e WHERE e.id = ANY(CAST(:e AS int[]))"
)


def closed(session: Session, estate_ids: Collection[int]) -> dict[int, Closed]:
    """Each estate's closed past (estates with no closed quarter are absent), in one query."""
    if not estate_ids:
        return {}
    out = {}
    for estate_id, tz, until in session.execute(_CLOSED, {"e": sorted(estate_ids)}):
        c = closed_from(until, tz)
        if c is not None:
            out[estate_id] = c
    return out


def ensure(session: Session, estate_id: int, quarter: Quarter) -> BillingPeriod:
    """The estate's row for `quarter`, made open if it does not exist yet (race-safe)."""
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound("estate not found / 未找到该小区")
    start, end = quarter.bounds(estate.timezone)
    session.execute(
        pg_insert(BillingPeriod)
        .values(estate_id=estate_id, period=quarter.label, starts_at=start, ends_at=end, status=PeriodStatus.open.value)
        .on_conflict_do_nothing(index_elements=["estate_id", "period"])
    )
    row = session.scalars(
        select(BillingPeriod).where(BillingPeriod.estate_id == estate_id, BillingPeriod.period == quarter.label)
    ).one()
    return row


def lock(session: Session, estate_id: int) -> None:
    """Hold the estate's period lock exclusively until the transaction ends (no charge commits meanwhile)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:s, :e)"), {"s": PERIOD_LOCK_SPACE, "e": estate_id})


def check_closable(session: Session, period: BillingPeriod, now: datetime) -> None:
    """Refuse a quarter that has not ended, is closed already, or has an earlier quarter still open."""
    if period.status == PeriodStatus.closed:
        raise Conflict(f"{period.period} is closed already / 该季度已结账")
    if period.ends_at > now:
        raise Conflict(f"{period.period} has not ended yet / 该季度尚未结束")
    earlier_open = session.scalar(
        select(BillingPeriod.period)
        .where(
            BillingPeriod.estate_id == period.estate_id,
            BillingPeriod.ends_at <= period.starts_at,
            BillingPeriod.status == PeriodStatus.open.value,
        )
        .order_by(BillingPeriod.starts_at)
        .limit(1)
    )
    if earlier_open is not None:
        raise Conflict(f"close {earlier_open} first: quarters close in order / 请先结账 {earlier_open}")


def periods(session: Session, estate_id: int) -> list[BillingPeriod]:
    """The estate's quarters with a row (statements written or closed), newest first."""
    return list(
        session.scalars(
            select(BillingPeriod).where(BillingPeriod.estate_id == estate_id).order_by(BillingPeriod.starts_at.desc())
        )
    )
