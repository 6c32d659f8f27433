"""The energy and water report of an estate for a month (issue 15 §4), read from `energy_meter_days`.

Per utility (electricity kWh, cold and hot water m³) and building: the households' total (Σ of the unit
meters), the building's master meter where it has one (`attrs.master_of` = the utility, `attrs.building`
= the building; a master without a building is the estate's), the loss between them (线损 / 漏损:
master − Σ units, and its rate over the master), the same total last month (环比) and in the same month
last year (同比); each day's totals; the vacant units that used anything; the top consumers.

A month still running is compared over the same days: this month's 1st to today against the 1st to the
same day of last month and of last year's month (a half month against a whole one says nothing).
Every figure is a SQL aggregate over the day rows (one row per meter and day): the month's rows in one pass
grouped two ways, last month's and last year's in another, each an index-only range scan of
ix_energy_meter_days_estate_id_day, whatever the history behind them.
"""

from __future__ import annotations

import calendar
import heapq
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from facility.energy_rollup import METER_KINDS
from storage.models import Estate

UNITS = {"electricity_meter": "kWh", "cold_water_meter": "m³", "hot_water_meter": "m³"}
TOP_N = 10
_PCT = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Window:
    start: date
    end: date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True, slots=True)
class Windows:
    month: date  # the 1st
    current: Window
    previous: Window  # last month, over the same days when the month is still running
    last_year: Window  # the same month a year ago, likewise
    partial: bool  # the month is still running: the windows end today (inclusive)


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def add_months(d: date, n: int) -> date:
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def _month_end(d: date) -> date:
    return add_months(d, 1)


def windows(month: date, today: date) -> Windows:
    """The report's windows for ``month`` seen on ``today`` (estate-local)."""
    month = month_start(month)
    end = _month_end(month)
    partial = month <= today < end
    days = (today - month).days + 1 if partial else None

    def cut(start: date) -> Window:
        full = _month_end(start)
        return Window(start, full if days is None else min(full, start + timedelta(days=days)))

    current = Window(month, end if days is None else month + timedelta(days=days))
    return Windows(month, current, cut(add_months(month, -1)), cut(add_months(month, -12)), partial)


def _pct(now: Decimal, then: Decimal) -> Decimal | None:
    if then <= 0:
        return None
    return ((now - then) * 100 / then).quantize(_PCT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class BuildingUsage:
    """One utility of one building (building_id None: the whole estate) over the report's windows."""

    kind: str
    building_id: int | None
    building_code: str | None
    building_name: str | None
    units: Decimal  # Σ of the households' meters
    master: Decimal | None  # the master meter(s); None: the building has none for this utility
    previous: Decimal  # Σ households, last month's window
    last_year: Decimal  # Σ households, last year's window
    held: int  # intervals not counted: a register fell without a rollover and no replacement is recorded

    @property
    def loss(self) -> Decimal | None:
        return None if self.master is None else self.master - self.units

    @property
    def loss_rate(self) -> Decimal | None:
        """线损率 / 漏损率 in %: (master − Σ units) / master."""
        if self.master is None or self.master <= 0:
            return None
        return ((self.master - self.units) * 100 / self.master).quantize(_PCT, rounding=ROUND_HALF_UP)

    @property
    def mom(self) -> Decimal | None:
        """环比 in %."""
        return _pct(self.units, self.previous)

    @property
    def yoy(self) -> Decimal | None:
        """同比 in %."""
        return _pct(self.units, self.last_year)


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    kind: str
    building_id: int | None
    units: Decimal
    master: Decimal | None


@dataclass(frozen=True, slots=True)
class UnitUsage:
    kind: str
    unit_id: int
    unit_code: str
    building_code: str
    occupancy: str
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Building:
    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class EnergyReport:
    estate_id: int
    windows: Windows
    kinds: tuple[str, ...]  # the utilities the estate meters, in report order
    buildings: tuple[Building, ...]
    usage: tuple[BuildingUsage, ...]  # per kind: each building, then the estate (building_id None)
    daily: tuple[DayUsage, ...]
    vacant: tuple[UnitUsage, ...]
    top: tuple[UnitUsage, ...]  # per kind, at most TOP_N, largest first
    as_of: datetime | None  # when the day rows were last brought up to date

    def of(self, kind: str, building_id: int | None) -> BuildingUsage | None:
        return next((u for u in self.usage if u.kind == kind and u.building_id == building_id), None)

    def days(self) -> list[date]:
        w = self.windows.current
        return [w.start + timedelta(days=i) for i in range(w.days)]


# Which meter is what: a household's (unit_id set) in its unit's building, or a master of its utility in
# the building its attrs name (none: the estate's). Other meters of these kinds (a plant's) are left out.
# MATERIALIZED: classified once per meter (a few thousand rows), not once per day row joined to it; the
# utility as its position in :kinds (an integer), so grouping a month of rows hashes integers rather than
# sorting text in the database's collation.
_METERS = """
    m AS MATERIALIZED (
      SELECT d.id, array_position(CAST(:kinds AS text[]), d.kind::text) AS k, d.unit_id,
             COALESCE(u.building_id, b.id) AS building_id, (d.unit_id IS NULL) AS master
      FROM devices d
      LEFT JOIN units u ON u.id = d.unit_id
      LEFT JOIN buildings b ON d.unit_id IS NULL AND b.estate_id = d.estate_id AND b.code = d.attrs->>'building'
      WHERE d.estate_id = :e AND d.kind = ANY(CAST(:kinds AS text[]))
        AND (d.unit_id IS NOT NULL OR d.attrs->>'master_of' = d.kind)
    )
"""
# The month's day rows in one pass, grouped twice: per day (the daily figures, and the month's totals
# summed from them) and per household (the top consumers and the vacant units).
_CURRENT = text(
    "WITH"
    + _METERS
    + """
    SELECT m.k, m.building_id, m.master, m.unit_id, r.day, sum(r.volume) AS v, GROUPING(r.day) AS per_unit
    FROM energy_meter_days r JOIN m ON m.id = r.device_id
    WHERE r.estate_id = :e AND r.day >= :a0 AND r.day < :a1
    GROUP BY GROUPING SETS ((m.k, m.building_id, m.master, r.day), (m.k, m.building_id, m.master, m.unit_id))
    """
)
# Last month's and last year's windows, per building and utility.
_COMPARE = text(
    "WITH"
    + _METERS
    + """
    SELECT m.k, m.building_id, m.master,
      coalesce(sum(r.volume) FILTER (WHERE r.day >= :p0), 0) AS prev,  -- last year's window ends before it
      coalesce(sum(r.volume) FILTER (WHERE r.day < :y1), 0) AS ly
    FROM energy_meter_days r JOIN m ON m.id = r.device_id
    WHERE r.estate_id = :e AND ((r.day >= :p0 AND r.day < :p1) OR (r.day >= :y0 AND r.day < :y1))
    GROUP BY 1, 2, 3
    """
)
# Intervals still waiting for a replacement record (few rows: the partial index ix_energy_meter_days_held).
_HELD = text(
    "WITH"
    + _METERS
    + """
    SELECT m.k, m.building_id, sum(cardinality(r.held_from)) AS n
    FROM energy_meter_days r JOIN m ON m.id = r.device_id
    WHERE cardinality(r.held_from) > 0 AND r.estate_id = :e AND r.day >= :a0 AND r.day < :a1 AND NOT m.master
    GROUP BY 1, 2
    """
)
_UNIT_NAMES = text(
    "SELECT u.id, u.code, u.occupancy, b.code AS building_code FROM units u JOIN buildings b ON b.id = u.building_id "
    "WHERE b.estate_id = :e AND (u.id = ANY(CAST(:ids AS int[])) OR u.occupancy = 'vacant')"
)
_KINDS = text(
    "SELECT DISTINCT kind FROM devices WHERE estate_id = :e AND kind = ANY(CAST(:kinds AS text[])) "
    "AND (unit_id IS NOT NULL OR attrs->>'master_of' = kind)"
)


@dataclass
class _Acc:
    units: Decimal = Decimal(0)
    previous: Decimal = Decimal(0)
    last_year: Decimal = Decimal(0)
    held: int = 0
    master: Decimal | None = None


def estate_today(estate: Estate, now: datetime) -> date:
    return now.astimezone(ZoneInfo(estate.timezone)).date()


def report(session: Session, estate: Estate, month: date, now: datetime) -> EnergyReport:
    """The estate's energy report for ``month`` as of ``now`` (which decides whether the month is running)."""
    w = windows(month, estate_today(estate, now))
    kinds_present = set(session.scalars(_KINDS, {"e": estate.id, "kinds": list(METER_KINDS)}))
    kinds = tuple(k for k in METER_KINDS if k in kinds_present)
    buildings = tuple(
        Building(r.id, r.code, r.name)
        for r in session.execute(
            text("SELECT id, code, name FROM buildings WHERE estate_id = :e ORDER BY code, id"), {"e": estate.id}
        )
    )
    params = {
        "e": estate.id,
        "kinds": list(METER_KINDS),
        "a0": w.current.start,
        "a1": w.current.end,
        "p0": w.previous.start,
        "p1": w.previous.end,
        "y0": w.last_year.start,
        "y1": w.last_year.end,
    }
    acc: dict[tuple[str, int | None], _Acc] = {}
    daily: dict[tuple[date, str, int | None], list[Decimal | None]] = {}
    per_unit: dict[tuple[str, int], Decimal] = {}

    def keys(kind: str, building_id: int | None, master: bool) -> list[tuple[str, int | None]]:
        # Households count in their building's figures and in the estate's; a master only where it stands.
        return [(kind, building_id), (kind, None)] if building_id is not None and not master else [(kind, building_id)]

    current = {k: params[k] for k in ("e", "kinds", "a0", "a1")}
    for r in session.execute(_CURRENT, current):
        v, kind_of = Decimal(r.v), METER_KINDS[r.k - 1]
        if r.per_unit:
            if r.unit_id is not None and not r.master:
                per_unit[(kind_of, r.unit_id)] = per_unit.get((kind_of, r.unit_id), Decimal(0)) + v
            continue
        for kind, building_id in keys(kind_of, r.building_id, r.master):
            a = acc.setdefault((kind, building_id), _Acc())
            d = daily.setdefault((r.day, kind, building_id), [Decimal(0), None])
            if r.master:
                a.master = (a.master or Decimal(0)) + v
                d[1] = (d[1] or Decimal(0)) + v
            else:
                a.units += v
                d[0] = (d[0] or Decimal(0)) + v
    for r in session.execute(_COMPARE, params):
        if r.master:
            continue
        for key in keys(METER_KINDS[r.k - 1], r.building_id, False):
            a = acc.setdefault(key, _Acc())
            a.previous += Decimal(r.prev)
            a.last_year += Decimal(r.ly)
    for r in session.execute(_HELD, current):
        for key in keys(METER_KINDS[r.k - 1], r.building_id, False):
            acc.setdefault(key, _Acc()).held += int(r.n)
    names = {b.id: b for b in buildings}
    usage: list[BuildingUsage] = []
    for kind in kinds:
        for building_id in [*(b.id for b in buildings), None]:
            found = acc.get((kind, building_id))
            if found is None:
                continue
            b = names.get(building_id) if building_id is not None else None
            usage.append(
                BuildingUsage(
                    kind=kind,
                    building_id=building_id,
                    building_code=b.code if b else None,
                    building_name=b.name if b else None,
                    units=found.units,
                    master=found.master,
                    previous=found.previous,
                    last_year=found.last_year,
                    held=found.held,
                )
            )
    days = tuple(
        DayUsage(day, kind, building_id, v[0] or Decimal(0), v[1])
        for (day, kind, building_id), v in sorted(daily.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0))
    )
    # Top consumers per utility (largest first, then unit id), and every vacant unit that used anything.
    top_ids: list[tuple[str, int, Decimal]] = []
    for kind in kinds:
        ranked = heapq.nsmallest(
            TOP_N, ((-v, u) for (k, u), v in per_unit.items() if k == kind and v > 0)
        )  # largest volume first, then the lower unit id
        top_ids.extend((kind, u, -neg) for neg, u in ranked)
    units = {r.id: r for r in session.execute(_UNIT_NAMES, {"e": estate.id, "ids": sorted({u for _, u, _ in top_ids})})}

    def unit_usage(kind: str, unit_id: int, volume: Decimal) -> UnitUsage:
        u = units[unit_id]
        return UnitUsage(kind, unit_id, u.code, u.building_code, u.occupancy, volume)

    top = [unit_usage(k, u, v) for k, u, v in top_ids]
    vacant = [
        unit_usage(k, u, v) for (k, u), v in per_unit.items() if v > 0 and u in units and units[u].occupancy == "vacant"
    ]
    # The rows of the window's last day are the ones each run rewrites: their newest write is the data's age.
    as_of = session.scalar(
        text("SELECT max(updated_at) FROM energy_meter_days WHERE estate_id = :e AND day = :last"),
        {"e": estate.id, "last": w.current.end - timedelta(days=1)},
    )
    return EnergyReport(
        estate_id=estate.id,
        windows=w,
        kinds=kinds,
        buildings=buildings,
        usage=tuple(usage),
        daily=days,
        vacant=tuple(sorted(vacant, key=lambda u: (METER_KINDS.index(u.kind), -u.volume, u.unit_code))),
        top=tuple(top),
        as_of=as_of,
    )


def parse_month(value: str | None, today: date) -> date:
    """``YYYY-MM`` → its 1st; None or empty → this month. ValueError on anything else."""
    if not value:
        return month_start(today)
    year, _, mon = value.partition("-")
    if len(year) != 4 or len(mon) != 2 or not (year.isdigit() and mon.isdigit()):
        raise ValueError("month must be YYYY-MM")
    y, m = int(year), int(mon)
    if not (2000 <= y <= 2100 and 1 <= m <= 12):
        raise ValueError("month must be YYYY-MM")
    calendar.monthrange(y, m)
    return date(y, m, 1)
