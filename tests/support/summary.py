"""A day of its own for the daily-summary page and API tests in the shared, committed worlds (tests/api and
tests/dashboards).

The day is long past (2016-03-15, Asia/Shanghai), before any other ticket of those worlds; what stays open that
evening is closed the next day, so the worlds' boards and alarm lists gain nothing open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alarms.rounds import ensure_default_schedules, ensure_round_rule
from alarms.store import NewAlarm, insert_alarms
from storage.models import Estate, InspectionRound, RoundSchedule
from tests.support.clock import SH
from tickets import service

DAY = date(2016, 3, 15)


def at(hh: int, mm: int = 0, *, days: int = 0) -> datetime:
    return datetime.combine(DAY + timedelta(days=days), time(hh, mm), SH)


@dataclass(frozen=True)
class SummaryDay:
    breached_id: int
    breached_number: str
    closed_number: str
    complaint_number: str
    schedule_name: str
    room_id: int
    missed_round_id: int


_seeded: dict[tuple[str, str], SummaryDay] = {}


def seed_summary_day(engine: Engine, estate: str) -> SummaryDay:
    """Two repair tickets (an urgent one past its on-site clock that evening, closed the next day; a normal one
    closed the same day), a complaint, a satisfied and a missed round, an alarm raised and cleared. Once per world."""
    key = (engine.url.render_as_string(hide_password=True), estate)
    if key in _seeded:
        return _seeded[key]
    with Session(engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == estate)).one()

        burst = service.open_ticket(
            s,
            estate_id=estate_id,
            source="resident",
            category="water",
            priority="urgent",
            title="汇总页 水管爆裂",
            received_by="steward-user",
            received_at=at(9),
        )
        burst.on_site_due_at = at(9, 20)
        burst.resolve_due_at = at(18, days=1)
        service.close(s, burst, "steward-user", reason="业主自行处理", at=at(10, days=1))
        tap = service.open_ticket(
            s,
            estate_id=estate_id,
            source="resident",
            category="water",
            priority="normal",
            title="汇总页 龙头滴水",
            received_by="steward-user",
            received_at=at(10),
        )
        tap.on_site_due_at, tap.resolve_due_at = at(22), at(22, days=2)
        service.close(s, tap, "steward-user", reason="重复报修", at=at(16))
        complaint = service.open_ticket(
            s,
            estate_id=estate_id,
            source="complaint",
            category="other",
            priority="normal",
            title="汇总页 噪音投诉",
            received_by="steward-user",
            received_at=at(11),
        )
        complaint.on_site_due_at, complaint.resolve_due_at = at(12, days=1), at(22, days=2)
        complaint.feedback_due_at = at(11, days=1)
        service.close(s, complaint, "steward-user", reason="已协调", at=at(9, days=1))

        ensure_default_schedules(s, estate_id)
        schedule = s.scalars(
            select(RoundSchedule)
            .where(RoundSchedule.estate_id == estate_id, RoundSchedule.room_id.is_not(None))  # an equipment round
            .order_by(RoundSchedule.code)
            .limit(1)
        ).one()
        rounds = []
        for start, status in ((at(8), "satisfied"), (at(10), "missed")):
            r = InspectionRound(
                schedule_id=schedule.id,
                estate_id=estate_id,
                room_id=schedule.room_id,
                window_start=start,
                window_end=start + timedelta(hours=2),
                status=status,
            )
            s.add(r)
            rounds.append(r)
        rule_id = ensure_round_rule(s)  # the missed round's alarm, raised and cleared that day
        insert_alarms(
            s.connection(),
            [
                NewAlarm(
                    rule_id=rule_id,
                    subject=f"summary:{uuid.uuid4().hex}",
                    estate_id=estate_id,
                    severity="alarm",
                    raised_at=at(12, 30),
                    cleared_at=at(14, 30),
                )
            ],
        )
        s.flush()
        day = SummaryDay(
            breached_id=int(burst.id),
            breached_number=burst.number,
            closed_number=tap.number,
            complaint_number=complaint.number,
            schedule_name=schedule.name_zh,
            room_id=schedule.room_id,
            missed_round_id=int(rounds[1].id),
        )
    _seeded[key] = day
    return day
