"""Each meter's consumption per estate-local day (`energy_meter_days`), folded in from `meter_readings`.

The energy reports (facility/energy_queries.py) read these rows, never the raw registers: 90 days of
15-minute readings of a few thousand meters is tens of millions of rows, a month of daily rows a few
tens of thousands. The maths is billing's (facility.meters): each interval between two consecutive usable
readings is classified by `consumption` — normal, rollover (counted across the wrap), or a fall that is
not a rollover (a reset or a replaced meter). Such a fall counts nothing until a person records the old
meter's final and the new meter's initial register (billing's hold confirmation, `meter_replacements`);
then `replaced_volume` counts it, as billing charges it. Until then the day row lists the interval in
`held_from`, and the report says how many intervals are missing rather than guessing.

An interval counts on the estate-local day its later reading falls in (billing books a charge in the
month its interval ends in, the same rule). Per meter the last folded reading is the cursor, as billing's
`billing_cursors`: the next run goes on from there. A reading that arrives later with an earlier time
changes nothing, because registers are cumulative: its volume is already inside the interval spanning it
(only which side of midnight a sliver of it counts on could differ).

Two sums follow the day rows in the same transaction, so the report reads a few rows whatever the estate's
size: `energy_building_days` (per day, utility, building and role), rewritten for every (estate, day) a run
touched, and `energy_meter_months` (per meter and month, the top consumers and vacant units), moved by what
each day row moved.

Cost: per run, the held rows waiting for a replacement record (a partial index), then per chunk of meters
their cursors in one query and their new readings in one more (at most `PER_METER` readings a meter and
`READINGS_PER_RUN` a run; the next run continues, `Refresh.more`), the walk in Python, one upsert. The worker
runs it every few minutes (worker/jobs.py `energy`), and again as soon as its other jobs had their turn while
a run says there is more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from facility.meters import Reading, consumption, replaced_volume, usable
from storage.models import Device, EnergyMeterDay

# The utilities the reports cover, in report order: electricity (kWh), cold water and hot water (m³).
METER_KINDS = ("electricity_meter", "cold_water_meter", "hot_water_meter")
CHUNK = 100  # meters per round of queries
PER_METER = 3000  # readings folded per meter and run: a month of 15-minute readings; the next run goes on
# Readings folded per run (whole chunks, so a little more): the first run after an upgrade has the whole history
# to fold (21.6 M readings at 10,000 households × 90 days hourly, minutes of work, bench/billing.py), and the
# worker runs its jobs one after another: a run of a few seconds, repeated at once (worker/runner.py `more`),
# keeps the watchdog and the rounds on time meanwhile.
READINGS_PER_RUN = 250_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_CURSORS = text(
    """
    SELECT t.d AS device_id, dv.estate_id, dv.register_max, dv.resolution, dv.multiplier, e.timezone,
           c.day, c.volume, c.held_from, c.last_ts, c.last_register
    FROM unnest(CAST(:d AS int[])) AS t(d)
    JOIN devices dv ON dv.id = t.d
    JOIN estates e ON e.id = dv.estate_id
    LEFT JOIN LATERAL (
      SELECT r.day, r.volume, r.held_from, r.last_ts, r.last_register FROM energy_meter_days r
      WHERE r.device_id = t.d ORDER BY r.day DESC LIMIT 1
    ) c ON true
    ORDER BY t.d
    """
)
_READINGS = text(
    """
    SELECT t.d AS device_id, m.ts, m.register
    FROM unnest(CAST(:d AS int[]), CAST(:since AS timestamptz[])) AS t(d, since)
    CROSS JOIN LATERAL (
      SELECT r.ts, r.register FROM meter_readings r
      WHERE r.device_id = t.d AND r.ts > t.since AND r.ts <= :up_to ORDER BY r.ts LIMIT :per_meter
    ) m
    ORDER BY t.d, m.ts
    """
)
# Confirmed holds (billing's: the old meter's final and the new one's initial register, recorded by a person).
_CONFIRMED = text(
    """
    SELECT h.device_id, h.from_ts, h.to_ts, h.from_register, h.to_register,
           r.old_final_register, r.new_initial_register
    FROM billing_holds h JOIN meter_replacements r ON r.hold_id = h.id
    WHERE h.device_id = ANY(CAST(:d AS int[])) AND h.status = 'confirmed'
    """
)
_DAY_FIELDS = ("volume", "held_from", "last_ts", "last_register", "updated_at")
_UPSERT_DAYS = insert(EnergyMeterDay)
_UPSERT_DAYS = _UPSERT_DAYS.on_conflict_do_update(
    index_elements=["device_id", "day"], set_={k: _UPSERT_DAYS.excluded[k] for k in _DAY_FIELDS}
)
_HELD_ROWS = (
    "SELECT r.device_id, r.estate_id, r.day, r.volume, r.held_from, dv.resolution, dv.multiplier "
    "FROM energy_meter_days r "
    "JOIN devices dv ON dv.id = r.device_id WHERE cardinality(r.held_from) > 0"
)


# The per-building sums of the (estate, day) pairs a run touched, rewritten from their day rows: households
# (unit meters) in their unit's building, master meters in the building their attrs name (none: the estate).
_BUILDING_DAYS_DELETE = text(
    "DELETE FROM energy_building_days s USING unnest(CAST(:e AS int[]), CAST(:d AS date[])) AS t(e, d) "
    "WHERE s.estate_id = t.e AND s.day = t.d"
)
_BUILDING_DAYS_INSERT = text(
    """
    INSERT INTO energy_building_days (estate_id, day, kind, building_id, master, volume, held)
    SELECT r.estate_id, r.day, dv.kind, COALESCE(u.building_id, b.id), dv.unit_id IS NULL,
           sum(r.volume), sum(cardinality(r.held_from))
    FROM unnest(CAST(:e AS int[]), CAST(:d AS date[])) AS t(e, d)
    JOIN energy_meter_days r ON r.estate_id = t.e AND r.day = t.d
    JOIN devices dv ON dv.id = r.device_id
    LEFT JOIN units u ON u.id = dv.unit_id
    LEFT JOIN buildings b ON dv.unit_id IS NULL AND b.estate_id = dv.estate_id AND b.code = dv.attrs->>'building'
    WHERE dv.unit_id IS NOT NULL OR dv.attrs->>'master_of' = dv.kind
    GROUP BY 1, 2, 3, 4, 5
    """
)
# A meter's month moves by what its day rows moved (a day's new volume minus its old one).
_MONTHS = text(
    """
    INSERT INTO energy_meter_months (device_id, month, estate_id, volume)
    SELECT * FROM unnest(CAST(:d AS int[]), CAST(:m AS date[]), CAST(:e AS int[]), CAST(:v AS numeric[]))
    ON CONFLICT (device_id, month) DO UPDATE SET volume = energy_meter_months.volume + excluded.volume
    """
)


class _Touched:
    """What a run changed: the (estate, day) pairs to re-sum per building, and each meter's month moves."""

    def __init__(self) -> None:
        self.days: set[tuple[int, date]] = set()
        self.months: dict[tuple[int, date], tuple[int, Decimal]] = {}  # (device, month) → (estate, delta)

    def moved(self, device_id: int, estate_id: int, day: date, delta: Decimal) -> None:
        self.days.add((estate_id, day))
        if delta:
            key = (device_id, date(day.year, day.month, 1))
            self.months[key] = (estate_id, self.months.get(key, (estate_id, Decimal(0)))[1] + delta)

    def write(self, session: Session) -> None:
        if self.months:
            keys = sorted(self.months)
            session.execute(
                _MONTHS,
                {
                    "d": [k[0] for k in keys],
                    "m": [k[1] for k in keys],
                    "e": [self.months[k][0] for k in keys],
                    "v": [self.months[k][1] for k in keys],
                },
            )
        if self.days:
            pairs = sorted(self.days)
            args = {"e": [p[0] for p in pairs], "d": [p[1] for p in pairs]}
            session.execute(_BUILDING_DAYS_DELETE, args)
            session.execute(_BUILDING_DAYS_INSERT, args)


@dataclass(frozen=True, slots=True)
class Confirmed:
    to_ts: datetime
    from_register: Decimal
    to_register: Decimal
    old_final: Decimal
    new_initial: Decimal


@dataclass
class Refresh:
    meters: int = 0
    readings: int = 0
    days: int = 0  # day rows written
    confirmed: int = 0  # held intervals counted now that their replacement was recorded
    more: bool = False  # a meter had more than PER_METER new readings or the run reached its cap: run again


@dataclass
class _Day:
    volume: Decimal
    held: list[datetime] = field(default_factory=list)
    last: Reading | None = None


def meters(session: Session, estate_id: int | None = None) -> list[int]:
    """The meters the reports cover (every electricity, cold- and hot-water meter), in id order."""
    stmt = select(Device.id).where(Device.kind.in_(METER_KINDS)).order_by(Device.id)
    if estate_id is not None:
        stmt = stmt.where(Device.estate_id == estate_id)
    return list(session.scalars(stmt))


def _confirmed(session: Session, ids: Sequence[int]) -> dict[tuple[int, datetime], Confirmed]:
    return {
        (r.device_id, r.from_ts): Confirmed(
            r.to_ts, r.from_register, r.to_register, r.old_final_register, r.new_initial_register
        )
        for r in session.execute(_CONFIRMED, {"d": list(ids)})
    }


def _count_confirmed(session: Session, estate_id: int | None, now: datetime, touched: _Touched) -> int:
    """Held intervals of earlier runs whose replacement has been recorded since: counted on their day now."""
    sql = _HELD_ROWS + (" AND r.estate_id = :e" if estate_id is not None else "")
    rows = session.execute(text(sql), {"e": estate_id}).all()
    if not rows:
        return 0
    confirmed = _confirmed(session, sorted({r.device_id for r in rows}))
    counted = 0
    for r in rows:
        volume, still = Decimal(r.volume), []
        for start in r.held_from:
            c = confirmed.get((r.device_id, start))
            if c is None:
                still.append(start)
                continue
            volume += replaced_volume(
                c.from_register,
                c.to_register,
                c.old_final,
                c.new_initial,
                resolution=r.resolution,
                multiplier=r.multiplier or Decimal(1),
            )
            counted += 1
        if len(still) != len(r.held_from):
            touched.moved(r.device_id, r.estate_id, r.day, volume - Decimal(r.volume))
            session.execute(
                text(
                    "UPDATE energy_meter_days SET volume = :v, held_from = CAST(:h AS timestamptz[]), "
                    "updated_at = :now WHERE device_id = :d AND day = :day"
                ),
                {"v": volume, "h": still, "now": now, "d": r.device_id, "day": r.day},
            )
    return counted


def refresh(
    session: Session, now: datetime, *, estate_id: int | None = None, max_readings: int = READINGS_PER_RUN
) -> Refresh:
    """Fold the covered meters' readings up to ``now`` into their day rows, until ``max_readings`` are folded
    (``more`` then says the next run goes on: the cursors make it resume); flushes, never commits."""
    touched = _Touched()
    result = Refresh(confirmed=_count_confirmed(session, estate_id, now, touched))
    ids = meters(session, estate_id)
    zones: dict[str, ZoneInfo] = {}
    for i in range(0, len(ids), CHUNK):
        if result.readings >= max_readings:
            result.more = True
            break
        chunk = ids[i : i + CHUNK]
        cursors = session.execute(_CURSORS, {"d": chunk}).all()
        since = [c.last_ts if c.last_ts is not None else _EPOCH for c in cursors]
        readings = session.execute(
            _READINGS, {"d": [c.device_id for c in cursors], "since": since, "up_to": now, "per_meter": PER_METER}
        ).all()
        if not readings:
            continue
        confirmed = _confirmed(session, sorted({r.device_id for r in readings}))
        by_device = {d: [(r.ts, r.register) for r in rows] for d, rows in groupby(readings, key=lambda r: r.device_id)}
        out: list[dict[str, Any]] = []
        for c in cursors:
            new = by_device.get(c.device_id)
            if not new:
                continue
            result.meters += 1
            result.readings += len(new)
            result.more |= len(new) >= PER_METER
            tz = zones.setdefault(c.timezone, ZoneInfo(c.timezone))
            days = _walk(c, new, tz, confirmed)
            for day, acc in days.items():
                assert acc.last is not None
                before = Decimal(c.volume) if c.last_ts is not None and day == c.day else Decimal(0)
                touched.moved(c.device_id, c.estate_id, day, acc.volume - before)
                out.append(
                    {
                        "device_id": c.device_id,
                        "day": day,
                        "estate_id": c.estate_id,
                        "volume": acc.volume,
                        "held_from": acc.held,
                        "last_ts": acc.last.ts,
                        "last_register": acc.last.register,
                        "updated_at": now,
                    }
                )
        if out:
            # An executemany: SQLAlchemy sends the rows in pages of "insertmanyvalues" (1,000 rows, well inside
            # PostgreSQL's 65,535 bind parameters a statement) with one compiled statement; a multi-VALUES insert of
            # the whole chunk (a first run writes 100 meters × 90 days) was past that limit and compiled anew for
            # every chunk (a fifth of the backfill's time, bench/billing.py).
            session.execute(_UPSERT_DAYS, out)
        result.days += len(out)
    touched.write(session)
    session.flush()
    return result


def _walk(
    cursor: Any, new: list[tuple[datetime, Decimal]], tz: ZoneInfo, confirmed: dict[tuple[int, datetime], Confirmed]
) -> dict[date, _Day]:
    """One meter's new readings after its cursor, as day rows (the cursor's own day carried on)."""
    register_max, resolution = cursor.register_max, cursor.resolution
    multiplier = cursor.multiplier or Decimal(1)
    days: dict[date, _Day] = {}
    prev: Reading | None = None
    if cursor.last_ts is not None:
        prev = Reading(cursor.last_ts, cursor.last_register)
        days[cursor.day] = _Day(Decimal(cursor.volume), list(cursor.held_from), prev)
    for ts, register in new:
        curr = Reading(ts, register)
        day = ts.astimezone(tz).date()
        if prev is None:  # the meter's first usable reading: the baseline, nothing counted yet
            if usable(curr, register_max=register_max):
                prev = curr
                days[day] = _Day(Decimal(0), [], curr)
            continue
        c = consumption(prev, curr, register_max=register_max, resolution=resolution, multiplier=multiplier)
        if c is None:
            continue  # an unusable reading (a misread register): skipped, as billing skips it
        acc = days.setdefault(day, _Day(Decimal(0)))
        if c.billable:
            acc.volume += c.volume
        else:
            record = confirmed.get((cursor.device_id, prev.ts))
            if record is not None and record.to_ts == curr.ts:
                acc.volume += replaced_volume(
                    prev.register,
                    curr.register,
                    record.old_final,
                    record.new_initial,
                    resolution=resolution,
                    multiplier=multiplier,
                )
            else:
                acc.held.append(prev.ts)
        acc.last = curr
        prev = curr
    return {d: acc for d, acc in days.items() if acc.last is not None}
