"""The holiday calendar (billing/holidays.py) and `steward billing holidays load`.

The calendar rows here are a test fixture, not the official State Council calendar: the product ships
no calendar data, an operator loads each year's published one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from billing import holidays
from core.errors import InvalidInput
from storage.models import AuditLog, BillingHoliday, BillingHouseholdFlag, Building, Estate, Unit

SH = ZoneInfo("Asia/Shanghai")
CSV = """day,name,is_workday
2027-01-01,测试元旦,false
2027-02-06,测试调休上班,true
2027-02-08,测试春节,false
"""
YAML = """
days:
  - {day: 2027-10-01, name: 测试国庆, is_workday: false}
  - {day: 2027-10-09, name: 测试调休上班, is_workday: true}
"""


def test_parse_csv_and_yaml() -> None:
    rows = holidays.parse(CSV, suffix=".csv")
    assert rows == [
        holidays.HolidayDay(date(2027, 1, 1), "测试元旦", False),
        holidays.HolidayDay(date(2027, 2, 6), "测试调休上班", True),
        holidays.HolidayDay(date(2027, 2, 8), "测试春节", False),
    ]
    assert [r.is_workday for r in holidays.parse(YAML, suffix=".yaml")] == [False, True]


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("day,name\n2027-13-01,x\n", ".csv", "line 2"),
        ("day,name,is_workday\n2027-01-01,x,maybe\n", ".csv", "is_workday"),
        ("day,name\n2027-01-01,\n", ".csv", "name"),
        ("when,what\n2027-01-01,x\n", ".csv", "header"),
        ("day,name\n2027-01-01,a\n2027-01-01,b\n", ".csv", "twice"),
        ("- nonsense", ".yaml", "item 1"),
        ("just text", ".yaml", "list"),
        ("{}", ".json", "use .csv or .yaml"),
    ],
)
def test_bad_files_get_clear_errors(text: str, suffix: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        holidays.parse(text, suffix=suffix)


def test_load_year_replaces_that_year_only_and_is_audited(session: Session) -> None:
    holidays.load_year(session, 2026, [holidays.HolidayDay(date(2026, 12, 31), "测试", False)], actor="t")
    assert holidays.load_year(session, 2027, holidays.parse(CSV, suffix=".csv"), actor="zhou") == 3
    assert holidays.load_year(session, 2027, holidays.parse(CSV, suffix=".csv")[:1], actor="zhou") == 1
    days = session.scalars(select(BillingHoliday.day).order_by(BillingHoliday.day)).all()
    assert date(2026, 12, 31) in days
    assert [d for d in days if d.year == 2027] == [date(2027, 1, 1)]
    assert holidays.calendar_loaded(session, 2027)
    assert not holidays.calendar_loaded(session, 2031)
    with pytest.raises(InvalidInput, match="not in 2028"):
        holidays.load_year(session, 2028, [holidays.HolidayDay(date(2027, 5, 1), "x", False)], actor="zhou")
    actors = session.scalars(select(AuditLog.actor).where(AuditLog.action == "billing.holidays")).all()
    assert list(actors).count("zhou") == 2


def test_why_not_now() -> None:
    calendar = {d.day: d for d in holidays.parse(CSV, suffix=".csv")}

    def why(*args: int) -> str | None:
        return holidays.why_not_now(datetime(*args, tzinfo=SH), calendar)  # type: ignore[misc]

    assert why(2027, 1, 4, 10, 0) is None  # a Monday
    assert why(2027, 1, 4, 7, 59) == "night"
    assert why(2027, 1, 4, 8, 0) is None
    assert why(2027, 1, 4, 19, 59) is None
    assert why(2027, 1, 4, 20, 0) == "night"
    assert why(2027, 1, 1, 10, 0) == "holiday"  # a Friday holiday
    assert why(2027, 1, 2, 10, 0) == "weekend"
    assert why(2027, 2, 6, 10, 0) is None  # a Saturday made a working day
    assert why(2027, 2, 6, 21, 0) == "night"
    assert holidays.is_working_day(date(2027, 2, 6), calendar)
    assert not holidays.is_working_day(date(2027, 2, 8), calendar)
    with pytest.raises(ValueError, match="timezone"):
        holidays.why_not_now(datetime(2027, 1, 4, 10, 0), calendar)  # noqa: DTZ001


def test_cli_loads_a_calendar_file(fresh_database: str, tmp_path: Path) -> None:
    path = tmp_path / "holidays-2027.csv"
    path.write_text(CSV, encoding="utf-8")
    env = {**os.environ, "STEWARD_DATABASE_URL": fresh_database}
    out = subprocess.run(
        [sys.executable, "-m", "steward", "billing", "holidays", "load", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "2027" in out.stdout
    assert "3 days" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("day,name\n2027-02-30,x\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "steward", "billing", "holidays", "load", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2
    assert "line 2" in out.stdout
    engine = create_engine(fresh_database.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as s:
            assert s.scalar(select(BillingHoliday.name).where(BillingHoliday.day == date(2027, 2, 6))) == "测试调休上班"
    finally:
        engine.dispose()


def test_cli_switches_restriction_and_flags_a_vulnerable_household(fresh_database: str) -> None:
    env = {**os.environ, "STEWARD_DATABASE_URL": fresh_database}

    def steward(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "steward", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    sample = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"
    assert steward("estate", "import", str(sample)).returncode == 0
    engine = create_engine(fresh_database.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as s:
            unit = s.scalars(
                select(Unit.code)
                .join(Building, Building.id == Unit.building_id)
                .join(Estate, Estate.id == Building.estate_id)
                .where(Estate.code == "lvyuan")
                .order_by(Unit.id)
                .limit(1)
            ).one()
        out = steward("billing", "restriction", "lvyuan", "--on", "--reason", "合同第 8 条；本市未禁止")
        assert out.returncode == 0, out.stderr
        out = steward("billing", "vulnerable", "lvyuan", unit, "--yes", "--reason", "独居老人", "--actor", "wang")
        assert out.returncode == 0, out.stderr
        assert steward("billing", "vulnerable", "lvyuan", "9-9-9999", "--yes", "--reason", "x").returncode == 2
        out = steward("billing", "notices", "lvyuan")
        assert out.returncode == 0, out.stderr
        with Session(engine) as s:
            estate = s.scalars(select(Estate).where(Estate.code == "lvyuan")).one()
            assert estate.policy["supply_restriction_enabled"] is True
            flag = s.scalars(select(BillingHouseholdFlag)).one()
            assert (flag.vulnerable, flag.set_by, flag.reason) == (True, "wang", "独居老人")
            actions = set(s.scalars(select(AuditLog.action).where(AuditLog.action.like("billing.%"))))
            assert {"billing.supply_restriction_switch", "billing.vulnerable"} <= actions
    finally:
        engine.dispose()
