"""Customer-service rounds against PostgreSQL: windows (half-week, week, calendar quarter across a year), tasks per
kind, the sample's and the visits' rotation, done and missed, a finding's ticket.

Time is driven explicitly (`evaluate_*(session, now)`); `record_task` reads `core.clock`, pinned by `FrozenClock`.
T0 (tests/rounds/conftest.py) is Thursday 2026-11-26 08:00 Shanghai: its week began Monday 11-23 00:00, its
half-week ends at Thursday 12:00. Every test runs in a rolled-back transaction with an estate of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.install import install_rule_packs
from alarms.rounds import (
    ROUND_MISSED_RULE,
    RoundsResult,
    RoundTimeError,
    RoundTransitionError,
    ensure_round_rule,
    evaluate_rounds,
)
from alarms.service_round_defaults import HALF_WEEK_MINUTES, WEEK_MINUTES
from alarms.service_rounds import (
    Finding,
    ServiceRoundsResult,
    ensure_service_schedules,
    evaluate_service_rounds,
    monday_midnight,
    next_quarter,
    quarter_window,
    record_task,
    share_of,
    task_subjects,
    visit_share_pct,
    windows_to_create,
)
from core import clock
from core.errors import InvalidInput
from storage.models import Alarm, AlarmRuleRow, InspectionRound, RoundSchedule, RoundTask, Ticket
from tests.rounds.conftest import SH, T0
from tests.support.clock import FrozenClock
from tests.support.service_rounds import Households, households_estate
from worker.jobs import rounds_job

MON = datetime(2026, 11, 23, 0, 0, tzinfo=SH)


@pytest.fixture
def pin() -> Iterator[FrozenClock]:
    frozen = FrozenClock(T0)
    clock.set_clock(frozen)
    yield frozen
    clock.reset_clock()


@pytest.fixture
def est(session: Session) -> Households:
    h = households_estate(session)
    ensure_service_schedules(session, h.estate_id, now=T0)
    return h


def schedule(h: Households, kind: str) -> RoundSchedule:
    return h.session.scalars(
        select(RoundSchedule).where(RoundSchedule.estate_id == h.estate_id, RoundSchedule.kind == kind)
    ).one()


def rounds_of(h: Households, kind: str) -> list[InspectionRound]:
    h.session.expire_all()
    return list(
        h.session.scalars(
            select(InspectionRound)
            .where(InspectionRound.schedule_id == schedule(h, kind).id)
            .order_by(InspectionRound.window_start)
        )
    )


def count_rounds(h: Households) -> int:
    h.session.expire_all()
    return len(h.session.scalars(select(InspectionRound.id).where(InspectionRound.estate_id == h.estate_id)).all())


def tasks_of(h: Households, rnd: InspectionRound) -> list[RoundTask]:
    return list(h.session.scalars(select(RoundTask).where(RoundTask.round_id == rnd.id).order_by(RoundTask.id)))


def local(rnd: InspectionRound) -> tuple[datetime, datetime]:
    return rnd.window_start.astimezone(SH), rnd.window_end.astimezone(SH)


# --- windows --------------------------------------------------------------------------------------------------


def test_quarter_windows_follow_the_local_calendar_across_the_year() -> None:
    q4 = (datetime(2026, 10, 1, tzinfo=SH), datetime(2027, 1, 1, tzinfo=SH))
    q1 = (datetime(2027, 1, 1, tzinfo=SH), datetime(2027, 4, 1, tzinfo=SH))
    assert quarter_window(datetime(2026, 12, 31, 23, 59, tzinfo=SH), "Asia/Shanghai") == q4
    assert quarter_window(datetime(2027, 1, 1, 0, 0, tzinfo=SH), "Asia/Shanghai") == q1
    # 2026-12-31 16:30 UTC is already New Year's Day in Shanghai: the local calendar decides.
    assert quarter_window(datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "Asia/Shanghai") == q1
    assert quarter_window(datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "UTC")[0] == datetime(2026, 10, 1, tzinfo=UTC)
    assert next_quarter(datetime(2026, 10, 1, tzinfo=SH)) == datetime(2027, 1, 1, tzinfo=SH)
    assert next_quarter(datetime(2027, 1, 1, tzinfo=SH)) == datetime(2027, 4, 1, tzinfo=SH)
    assert quarter_window(datetime(2026, 8, 15, 12, tzinfo=SH), "Asia/Shanghai")[0] == datetime(2026, 7, 1, tzinfo=SH)


def test_week_and_half_week_windows_start_monday_local() -> None:
    assert monday_midnight(T0, "Asia/Shanghai") == MON
    # Sunday 23:30 local is still the week before; Monday 00:30 local (Sunday 16:30 UTC) is the new week.
    assert monday_midnight(datetime(2026, 11, 29, 23, 30, tzinfo=SH), "Asia/Shanghai") == MON
    assert monday_midnight(datetime(2026, 11, 29, 16, 30, tzinfo=UTC), "Asia/Shanghai") == MON + timedelta(days=7)
    half = partial(windows_to_create, calendar=None, anchor=MON, minutes=HALF_WEEK_MINUTES, tz="Asia/Shanghai")
    assert half(now=T0, last_start=None) == [(MON, datetime(2026, 11, 26, 12, 0, tzinfo=SH))]
    thursday_noon = datetime(2026, 11, 26, 12, 0, tzinfo=SH)
    assert half(now=thursday_noon, last_start=None) == [(thursday_noon, MON + timedelta(days=7))]
    # After downtime: the windows since the last round, at most 7 days' worth before the current one (as equipment).
    got = half(now=datetime(2026, 12, 2, 9, 0, tzinfo=SH), last_start=MON - timedelta(days=14))
    assert [w[0].astimezone(SH) for w in got] == [
        MON,
        datetime(2026, 11, 26, 12, 0, tzinfo=SH),
        datetime(2026, 11, 30, 0, 0, tzinfo=SH),
    ]
    quarter = partial(windows_to_create, calendar="quarter", anchor=MON, minutes=0, tz="Asia/Shanghai")
    assert quarter(now=T0, last_start=datetime(2026, 10, 1, tzinfo=SH)) == []
    assert quarter(now=datetime(2027, 1, 1, 0, 1, tzinfo=SH), last_start=datetime(2026, 10, 1, tzinfo=SH)) == [
        (datetime(2027, 1, 1, tzinfo=SH), datetime(2027, 4, 1, tzinfo=SH))
    ]


def test_default_schedules_are_installed_once_with_their_roles(session: Session) -> None:
    h = households_estate(session, vacant=0, renovating=0, occupied=0)
    assert ensure_service_schedules(session, h.estate_id, now=T0) == 5
    assert ensure_service_schedules(session, h.estate_id, now=T0 + timedelta(days=30)) == 0  # idempotent
    rows = {s.kind: s for s in session.scalars(select(RoundSchedule).where(RoundSchedule.estate_id == h.estate_id))}
    assert {k: (s.role, s.interval_minutes, s.calendar, s.room_id) for k, s in rows.items()} == {
        "vacant_units": ("engineer", 0, "quarter", None),
        "renovation_check": ("engineer", HALF_WEEK_MINUTES, None, None),
        "renovation_sample": ("supervisor", WEEK_MINUTES, None, None),
        "household_visits": ("steward", WEEK_MINUTES, None, None),
        "estate_patrol": ("steward", WEEK_MINUTES, None, None),
    }
    assert {s.anchor.astimezone(SH) for s in rows.values()} == {MON}
    # The estate import and the demo install them through the rule packs, next to the equipment schedules.
    other = households_estate(session, vacant=0, renovating=0, occupied=0)
    install_rule_packs(session)
    assert session.scalar(
        select(RoundSchedule.id).where(
            RoundSchedule.estate_id == other.estate_id, RoundSchedule.kind == "estate_patrol"
        )
    )


# --- tasks ----------------------------------------------------------------------------------------------------


def test_each_round_gets_its_tasks(est: Households) -> None:
    res = evaluate_service_rounds(est.session, T0)
    assert res.created >= 5  # (other estates' committed schedules would count too)
    assert count_rounds(est) == 5
    counts = {
        kind: len(tasks_of(est, rounds_of(est, kind)[0]))
        for kind in ("vacant_units", "renovation_check", "renovation_sample", "household_visits", "estate_patrol")
    }
    # 3 vacant, 6 renovating, ceil(20 % of 6) = 2, ceil(2 % of 120) = 3, one task per building (2).
    assert counts == {
        "vacant_units": 3,
        "renovation_check": 6,
        "renovation_sample": 2,
        "household_visits": 3,
        "estate_patrol": 2,
    }
    assert res.tasks >= sum(counts.values())
    vacant = rounds_of(est, "vacant_units")[0]
    assert local(vacant) == (datetime(2026, 10, 1, tzinfo=SH), datetime(2027, 1, 1, tzinfo=SH))
    assert {t.unit_id for t in tasks_of(est, vacant)} == set(est.vacant)
    assert {t.building_id for t in tasks_of(est, rounds_of(est, "estate_patrol")[0])} == set(est.buildings)
    assert local(rounds_of(est, "renovation_check")[0]) == (MON, datetime(2026, 11, 26, 12, 0, tzinfo=SH))
    assert local(rounds_of(est, "household_visits")[0]) == (MON, MON + timedelta(days=7))
    # Idempotent: the same windows are not created twice.
    evaluate_service_rounds(est.session, T0 + timedelta(minutes=1))
    assert count_rounds(est) == 5
    # Thursday noon: the second renovation check of the week, with every renovating unit again.
    evaluate_service_rounds(est.session, datetime(2026, 11, 26, 12, 0, tzinfo=SH))
    assert count_rounds(est) == 6
    second = rounds_of(est, "renovation_check")[1]
    assert local(second)[0] == datetime(2026, 11, 26, 12, 0, tzinfo=SH)
    assert {t.unit_id for t in tasks_of(est, second)} == set(est.renovating)


def test_shares_round_up_and_the_visit_share_is_the_estates(session: Session) -> None:
    assert [share_of(n, visit_share_pct(None)) for n in (0, 1, 50, 51, 100, 120)] == [0, 1, 1, 2, 2, 3]
    assert share_of(4, visit_share_pct({"service_rounds": {"visit_share_pct": 20}})) == 1
    assert visit_share_pct({"service_rounds": {"visit_share_pct": "2.5"}}) == visit_share_pct(
        {"service_rounds": {"visit_share_pct": 2.5}}
    )
    for bad in (-1, 101, "many", True, float("nan")):
        with pytest.raises(InvalidInput):
            visit_share_pct({"service_rounds": {"visit_share_pct": bad}})
    h = households_estate(session, occupied=120, policy={"service_rounds": {"visit_share_pct": 5}})
    units, _ = task_subjects(session, h.estate_id, "household_visits", {"service_rounds": {"visit_share_pct": 5}})
    assert units == h.occupied[:6]


def test_a_round_with_nothing_to_do_is_done_at_once(session: Session) -> None:
    h = households_estate(
        session, vacant=0, renovating=0, occupied=10, policy={"service_rounds": {"visit_share_pct": 0}}
    )
    ensure_service_schedules(session, h.estate_id, now=T0)
    res = evaluate_service_rounds(session, T0)
    assert res.nothing_due >= 4  # no vacant or renovating unit, visits at 0 %
    done = {
        k: rounds_of(h, k)[0] for k in ("vacant_units", "renovation_check", "renovation_sample", "household_visits")
    }
    assert {(r.status, r.satisfied_by) for r in done.values()} == {("done", "no_tasks")}
    assert rounds_of(h, "estate_patrol")[0].status == "open"
    # Never missed: a done round is not looked at again.
    ensure_round_rule(session)
    evaluate_rounds(session, datetime(2027, 2, 1, tzinfo=SH))
    assert {r.status for r in (rounds_of(h, k)[0] for k in done)} == {"done"}


def _do_all(h: Households, rnd: InspectionRound, at: datetime) -> None:
    for t in tasks_of(h, rnd):
        if t.status == "pending":
            record_task(h.session, t.id, performed_by="steward-user", performed_at=at)


def test_sample_and_visits_rotate_deterministically(est: Households, pin: FrozenClock) -> None:
    first, again = (task_subjects(est.session, est.estate_id, "renovation_sample", None)[0] for _ in range(2))
    assert first == again == est.renovating[:2]  # never sampled: by unit id
    picked: list[list[int]] = []
    visited: list[list[int]] = []
    for week in range(4):
        now = T0 + timedelta(days=7 * week)
        pin.set(now)
        evaluate_service_rounds(est.session, now)
        sample = rounds_of(est, "renovation_sample")[week]
        picked.append([t.unit_id for t in tasks_of(est, sample) if t.unit_id is not None])
        _do_all(est, sample, now)
        visits = rounds_of(est, "household_visits")[week]
        visit_tasks = tasks_of(est, visits)
        visited.append([t.unit_id for t in visit_tasks if t.unit_id is not None])
        # Week 0: one household was not at home (skipped): it is not "visited" but it was asked for already.
        for i, t in enumerate(visit_tasks):
            if week == 0 and i == 0:
                record_task(
                    est.session, t.id, performed_by="steward-user", performed_at=now, skipped=True, notes="不在家"
                )
            else:
                record_task(est.session, t.id, performed_by="steward-user", performed_at=now)
    r = est.renovating
    # Every renovating unit once in three weeks, then the one sampled longest ago again.
    assert picked == [r[0:2], r[2:4], r[4:6], r[0:2]]
    o = est.occupied
    # The household not at home in week 0 is asked for again first (补访), then the rotation goes on.
    assert visited == [o[0:3], [o[0], o[3], o[4]], o[5:8], o[8:11]]


# --- done, missed, findings -----------------------------------------------------------------------------------


def test_round_done_when_every_task_is_recorded(est: Households, pin: FrozenClock) -> None:
    evaluate_service_rounds(est.session, T0)
    patrol = rounds_of(est, "estate_patrol")[0]
    a, b = tasks_of(est, patrol)
    pin.set(T0 + timedelta(hours=1))
    record_task(est.session, a.id, performed_by="steward-user", notes="正常")
    assert rounds_of(est, "estate_patrol")[0].status == "open"
    record_task(est.session, b.id, performed_by="steward-user", performed_at=T0 + timedelta(minutes=50))
    patrol = rounds_of(est, "estate_patrol")[0]
    assert (patrol.status, patrol.satisfied_by, patrol.performed_at) == ("done", "manual", T0 + timedelta(hours=1))
    with pytest.raises(RoundTransitionError):
        record_task(est.session, a.id, performed_by="steward-user")
    # A service round is never decided by telemetry (an equipment round's step): its window end changes nothing.
    evaluate_service_rounds(est.session, T0)
    vacant = rounds_of(est, "renovation_check")[0]
    evaluate_rounds(est.session, vacant.window_end + timedelta(minutes=1))
    assert rounds_of(est, "renovation_check")[0].status == "open"


def test_record_checks(est: Households, pin: FrozenClock) -> None:
    evaluate_service_rounds(est.session, T0)
    task = tasks_of(est, rounds_of(est, "renovation_check")[0])[0]
    with pytest.raises(RoundTimeError):
        record_task(est.session, task.id, performed_by="x", performed_at=MON - timedelta(minutes=1))
    with pytest.raises(RoundTimeError):
        record_task(est.session, task.id, performed_by="x", performed_at=T0 + timedelta(hours=1))
    with pytest.raises(InvalidInput):
        record_task(est.session, task.id, performed_by="x", skipped=True)  # a reason is needed
    with pytest.raises(InvalidInput):
        record_task(est.session, task.id, performed_by="x", skipped=True, notes="无人", finding=Finding("漏水"))
    with pytest.raises(InvalidInput):
        record_task(est.session, task.id, performed_by="  ")
    assert tasks_of(est, rounds_of(est, "renovation_check")[0])[0].status == "pending"


def test_missed_round_alarm_and_late_record(est: Households, pin: FrozenClock) -> None:
    ensure_round_rule(est.session)
    evaluate_service_rounds(est.session, T0)
    patrol = rounds_of(est, "estate_patrol")[0]
    end = patrol.window_end
    # Inside the day of grace after the week: still open.
    evaluate_rounds(est.session, end + timedelta(hours=23))
    assert rounds_of(est, "estate_patrol")[0].status == "open"
    res = evaluate_rounds(est.session, end + timedelta(hours=24))
    assert res.missed >= 1
    patrol = rounds_of(est, "estate_patrol")[0]
    assert patrol.status == "missed"
    alarm = est.session.scalars(
        select(Alarm)
        .join(AlarmRuleRow, AlarmRuleRow.id == Alarm.rule_id)
        .where(AlarmRuleRow.code == ROUND_MISSED_RULE, Alarm.subject == f"round:{patrol.schedule_id}")
    ).one()
    assert (alarm.state, alarm.ticket_id, alarm.room_id, alarm.estate_id) == ("active", None, None, est.estate_id)
    assert alarm.detail["kind"] == "estate_patrol"
    assert patrol.alarm_id == alarm.id
    # Done late: the round is done and the schedule's alarm clears.
    pin.set(end + timedelta(hours=30))
    _do_all(est, patrol, end + timedelta(hours=29))
    assert rounds_of(est, "estate_patrol")[0].status == "done"
    est.session.refresh(alarm)
    assert alarm.state == "cleared"


def test_a_finding_opens_a_ticket(est: Households, pin: FrozenClock) -> None:
    evaluate_service_rounds(est.session, T0)
    task = tasks_of(est, rounds_of(est, "renovation_check")[0])[0]
    record_task(
        est.session, task.id, performed_by="engineer-user", finding=Finding("卫生间防水层被破坏，需停工整改", "civil")
    )
    est.session.refresh(task)
    assert (task.status, task.outcome) == ("done", "finding")
    ticket = est.session.get(Ticket, task.ticket_id)
    assert ticket is not None
    assert (ticket.source, ticket.category, ticket.unit_id, ticket.estate_id) == (
        "patrol",
        "civil",
        task.unit_id,
        est.estate_id,
    )
    assert ticket.title.startswith("装修巡查发现问题：")
    assert "卫生间防水层被破坏" in ticket.title
    assert "记录人 engineer-user" in ticket.description
    assert ticket.source_key == f"round_task:{task.id}"
    # A household's complaint heard on a visit is a complaint ticket (24 h feedback clock).
    visit = tasks_of(est, rounds_of(est, "household_visits")[0])[0]
    record_task(
        est.session, visit.id, performed_by="steward-user", finding=Finding("楼道夜间噪音", "other", complaint=True)
    )
    est.session.refresh(visit)
    complaint = est.session.get(Ticket, visit.ticket_id)
    assert complaint is not None
    assert (complaint.source, complaint.category) == ("complaint", "other")
    assert complaint.title.startswith("管家走访 住户投诉")
    assert complaint.feedback_due_at is not None
    # An unknown category is refused and nothing is recorded.
    other = tasks_of(est, rounds_of(est, "renovation_check")[0])[1]
    with pytest.raises(InvalidInput):
        record_task(est.session, other.id, performed_by="engineer-user", finding=Finding("x", "plumbing"))


def test_the_worker_rounds_job_runs_both(est: Households) -> None:
    result = rounds_job(None)(est.session, T0)
    assert isinstance(result, tuple)
    equipment, service = result
    assert isinstance(equipment, RoundsResult)
    assert isinstance(service, ServiceRoundsResult)
    assert service.created >= 5
    assert count_rounds(est) == 5
