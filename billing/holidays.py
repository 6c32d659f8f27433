"""The public-holiday calendar and the hours in which supply may be restricted or suspended.

Domain-defaults §5: restriction (限供) and suspension (停供) never at night, on a weekend or on a public
holiday. China moves working days around holidays (调休): a Saturday or Sunday can be a make-up working
day, and then it is a working day here too. The State Council publishes each year's calendar late in
the year before, so the calendar is data, loaded per year (`load_year`, `steward billing holidays load`),
not code; a year that was never loaded counts weekends only, and `calendar_loaded` lets callers warn.

File formats (one row per day that differs from the plain Monday–Friday week):
  CSV:  day,name,is_workday           2027-01-01,元旦,false
  YAML: [{day: 2027-01-01, name: 元旦, is_workday: false}, …]  (or {days: [...]})
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core import clock
from core.errors import InvalidInput
from storage.models import AuditLog, BillingHoliday

# Night (no restriction or suspension) is 20:00–08:00 estate time: a household must be able to see to
# it the same day, and staff are on duty to restore at once on payment.
DAY_STARTS = time(8, 0)
NIGHT_STARTS = time(20, 0)


@dataclass(frozen=True, slots=True)
class HolidayDay:
    day: date
    name: str
    is_workday: bool  # True: a 调休 make-up working day (usually a Saturday or Sunday)


def _bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "是", "班"):
        return True
    if text in ("false", "0", "no", "n", "否", "休", ""):
        return False
    raise InvalidInput(f"{where}: is_workday must be true or false, not {value!r} / 是否调休上班须为 true 或 false")


def _row(raw: Mapping[str, Any], where: str) -> HolidayDay:
    try:
        value = raw["day"]
        day = value if isinstance(value, date) else date.fromisoformat(str(value).strip())
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{where}: a day as YYYY-MM-DD is required / 日期格式应为 YYYY-MM-DD") from exc
    name = str(raw.get("name") or "").strip()
    if not name or len(name) > 64:
        raise InvalidInput(f"{where}: a name of 1–64 characters is required / 须填写节日名称")
    return HolidayDay(day, name, _bool(raw.get("is_workday", False), where))


def parse(text: str, *, suffix: str) -> list[HolidayDay]:
    """Rows of a CSV (header day,name,is_workday) or YAML calendar file; a bad row names its line or index."""
    if suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or not {"day", "name"} <= {f.strip() for f in reader.fieldnames}:
            raise InvalidInput("the CSV needs a header day,name,is_workday / CSV 表头应为 day,name,is_workday")
        rows = [_row({k.strip(): v for k, v in r.items() if k}, f"line {n}") for n, r in enumerate(reader, start=2)]
    elif suffix.lower() in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"not valid YAML: {exc}") from exc
        if isinstance(doc, dict):
            doc = doc.get("days")
        if not isinstance(doc, list):
            raise InvalidInput("the YAML file is a list of {day, name, is_workday} / YAML 应为日期列表")
        rows = [_row(r if isinstance(r, dict) else {}, f"item {n}") for n, r in enumerate(doc, start=1)]
    else:
        raise InvalidInput(f"unknown calendar file type {suffix!r}: use .csv or .yaml / 仅支持 csv 或 yaml")
    days = [r.day for r in rows]
    if len(set(days)) != len(days):
        raise InvalidInput("a day appears twice / 日期重复")
    return rows


def load_year(session: Session, year: int, days: Iterable[HolidayDay], *, actor: str) -> int:
    """Replace the calendar of `year` with `days` (all must fall in that year); audited. Returns the count."""
    rows = list(days)
    stray = [d.day for d in rows if d.day.year != year]
    if stray:
        raise InvalidInput(f"{stray[0]} is not in {year} / 日期不在 {year} 年内")
    session.execute(delete(BillingHoliday).where(BillingHoliday.day.between(date(year, 1, 1), date(year, 12, 31))))
    now = clock.now()
    session.add_all(BillingHoliday(day=d.day, name=d.name, is_workday=d.is_workday, loaded_at=now) for d in rows)
    session.add(
        AuditLog(actor=actor, action="billing.holidays", object=f"year:{year}", detail={"days": len(rows)}, at=now)
    )
    session.flush()
    return len(rows)


def load_file(session: Session, path: Path, *, actor: str) -> dict[int, int]:
    """Load a calendar file; each year in it replaces that year's calendar. Returns {year: rows}."""
    rows = parse(path.read_text(encoding="utf-8"), suffix=path.suffix)
    if not rows:
        raise InvalidInput("the calendar file is empty / 日历文件为空")
    out = {}
    for year in sorted({r.day.year for r in rows}):
        out[year] = load_year(session, year, [r for r in rows if r.day.year == year], actor=actor)
    return out


def calendar_loaded(session: Session, year: int) -> bool:
    return (
        session.scalar(
            select(BillingHoliday.day).where(BillingHoliday.day.between(date(year, 1, 1), date(year, 12, 31))).limit(1)
        )
        is not None
    )


def calendar_between(session: Session, first: date, last: date) -> dict[date, HolidayDay]:
    rows = session.scalars(select(BillingHoliday).where(BillingHoliday.day.between(first, last)))
    return {r.day: HolidayDay(r.day, r.name, r.is_workday) for r in rows}


def is_working_day(day: date, calendar: Mapping[date, HolidayDay]) -> bool:
    """Monday–Friday unless the calendar makes it a holiday; Saturday/Sunday only as a make-up working day."""
    entry = calendar.get(day)
    if entry is not None:
        return entry.is_workday
    return day.weekday() < 5


def why_not_now(local: datetime, calendar: Mapping[date, HolidayDay]) -> str | None:
    """Why supply may not be restricted or suspended at `local` (estate time): night, weekend, holiday; else None."""
    if local.tzinfo is None:
        raise ValueError("local needs a timezone")
    t = local.timetz().replace(tzinfo=None)
    if t < DAY_STARTS or t >= NIGHT_STARTS:
        return "night"
    entry = calendar.get(local.date())
    if entry is not None and not entry.is_workday:
        return "holiday"
    if entry is None and local.weekday() >= 5:
        return "weekend"
    return None
