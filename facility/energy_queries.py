"""The energy and water report of an estate for a month (issue 15 §4), read from `energy_meter_days`.

Per utility (electricity kWh, cold and hot water m³) and building: the households' total (Σ of the unit
meters), the building's master meter where it has one (`attrs.master_of` = the utility, `attrs.building`
= the building; a master without a building is the estate's), the loss between them (线损 / 漏损:
master − Σ units, and its rate over the master), the same total last month (环比) and in the same month
last year (同比); each day's totals; the vacant units that used anything; the top consumers.

A month still running is compared over the same days: this month's 1st to today against the 1st to the
same day of last month and of last year's month (a half month against a whole one says nothing).
The figures come from the rollup's sums (facility/energy_rollup.py): per building and day
(`energy_building_days`: totals, daily figures, 环比 and 同比 over any window) and per meter and month
(`energy_meter_months`: top consumers and vacant units), a few thousand rows at most for an estate of
thousands of meters, whatever the history behind them.
"""

from __future__ import annotations

import calendar
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


# The building sums (energy_building_days, kept by the rollup): every window's figures per utility, building
# and role (households or master meters), tens of rows a day whatever the estate's size.
_SUMS = text(
    """
    SELECT kind, building_id, master,
      coalesce(sum(volume) FILTER (WHERE day >= :a0 AND day < :a1), 0) AS cur,
      coalesce(sum(volume) FILTER (WHERE day >= :p0 AND day < :p1), 0) AS prev,
      coalesce(sum(volume) FILTER (WHERE day >= :y0 AND day < :y1), 0) AS ly,
      coalesce(sum(held) FILTER (WHERE day >= :a0 AND day < :a1), 0) AS held
    FROM energy_building_days
    WHERE estate_id = :e AND ((day >= :a0 AND day < :a1) OR (day >= :p0 AND day < :p1) OR (day >= :y0 AND day < :y1))
    GROUP BY 1, 2, 3
    """
)
_DAILY = text(
    "SELECT day, kind, building_id, master, volume FROM energy_building_days "
    "WHERE estate_id = :e AND day >= :a0 AND day < :a1"
)
# The month's households (energy_meter_months, one row a meter): the TOP_N largest of each utility and every
# vacant unit that used anything. A month still running holds its days up to today, the report's window.
_UNITS = text(
    """
    WITH per_unit AS (
      SELECT d.kind, d.unit_id, sum(mm.volume) AS v,
             row_number() OVER (PARTITION BY d.kind ORDER BY sum(mm.volume) DESC, d.unit_id) AS rank
      FROM energy_meter_months mm JOIN devices d ON d.id = mm.device_id
      WHERE mm.estate_id = :e AND mm.month = :month AND d.unit_id IS NOT NULL
      GROUP BY 1, 2
    )
    SELECT p.kind, p.unit_id, u.code AS unit_code, b.code AS building_code, u.occupancy, p.v, p.rank
    FROM per_unit p JOIN units u ON u.id = p.unit_id JOIN buildings b ON b.id = u.building_id
    WHERE p.v > 0 AND (p.rank <= :top OR u.occupancy = 'vacant')
    ORDER BY p.kind, p.rank
    """
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

    def keys(kind: str, building_id: int | None, master: bool) -> list[tuple[str, int | None]]:
        # Households count in their building's figures and in the estate's; a master only where it stands.
        return [(kind, building_id), (kind, None)] if building_id is not None and not master else [(kind, building_id)]

    for r in session.execute(_SUMS, params):
        for key in keys(r.kind, r.building_id, r.master):
            a = acc.setdefault(key, _Acc())
            if r.master:
                a.master = (a.master or Decimal(0)) + Decimal(r.cur)
            else:
                a.units += Decimal(r.cur)
                a.previous += Decimal(r.prev)
                a.last_year += Decimal(r.ly)
                a.held += int(r.held)
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
    daily: dict[tuple[date, str, int | None], list[Decimal | None]] = {}
    for r in session.execute(_DAILY, {k: params[k] for k in ("e", "a0", "a1")}):
        for kind, building_id in keys(r.kind, r.building_id, r.master):
            d = daily.setdefault((r.day, kind, building_id), [Decimal(0), None])
            if r.master:
                d[1] = (d[1] or Decimal(0)) + Decimal(r.volume)
            else:
                d[0] = (d[0] or Decimal(0)) + Decimal(r.volume)
    days = tuple(
        DayUsage(day, kind, building_id, v[0] or Decimal(0), v[1])
        for (day, kind, building_id), v in sorted(daily.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0))
    )
    vacant: list[UnitUsage] = []
    top: list[UnitUsage] = []
    for r in session.execute(_UNITS, {"e": estate.id, "month": w.month, "top": TOP_N}):
        u = UnitUsage(r.kind, r.unit_id, r.unit_code, r.building_code, r.occupancy, Decimal(r.v))
        if r.rank <= TOP_N:
            top.append(u)
        if r.occupancy == "vacant":
            vacant.append(u)
    top.sort(key=lambda u: METER_KINDS.index(u.kind))  # stable: each utility's ranking stays in order
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
