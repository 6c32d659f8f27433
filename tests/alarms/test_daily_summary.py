"""The 18:30 daily summary (alarms/daily_summary.py, alarms/daily_summary_notices.py) under a controlled clock.

Sending: not at 18:29, at 18:30 estate time once (a second run that evening sends nothing), a worker back at 19:10
still sends, the next morning sends nothing for the day before, the next evening sends again; estates in two time
zones each at their own 18:30. Content: a seeded day of tickets, complaints, rounds, alarms and callbacks, counted
by hand here, and the Chinese message that says them; through the real SMTP and robot servers once.

The database is shared with modules that commit estates of their own: every check looks at this test's estates only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from alarms.daily_summary import compose
from alarms.daily_summary_notices import GROUP, SOURCE, delivery_key, send_due
from notifications.channels import EMAIL, LOG, WECOM_ROBOT, Channel, SmtpChannel, WeComRobotChannel
from notifications.service import dispatch_due
from storage.models import (
    DailySummary,
    Estate,
    InspectionRound,
    NotificationDelivery,
    RoundSchedule,
    StaffEstate,
    StaffUser,
    Ticket,
)
from tests.support.notify_servers import RobotServer, SmtpServer
from tests.support.world import Place, insert_alarm, make_estate, make_rule, make_staff
from tickets import service
from worker.jobs import DAILY_SUMMARY_LOCK, LOCK_NAMESPACE, daily_summary_job, default_jobs

SH = ZoneInfo("Asia/Shanghai")
URUMQI = ZoneInfo("Asia/Urumqi")  # UTC+6: its 18:30 is 20:30 in Shanghai
D = date(2026, 11, 26)


def at(day: date, hh: int, mm: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime.combine(day, time(hh, mm), tz)


def estate_in(session: Session, tz: ZoneInfo = SH) -> Place:
    place = make_estate(session)
    estate = session.get(Estate, place.estate_id)
    assert estate is not None
    estate.timezone = tz.key
    session.flush()
    return place


def staff(session: Session, place: Place, role: str, email: str | None) -> None:
    user = StaffUser(username=f"{role}-{uuid.uuid4().hex[:8]}", password_hash="x", role=role, active=True, email=email)
    session.add(user)
    session.flush()
    session.add(StaffEstate(user_id=user.id, estate_id=place.estate_id))
    session.flush()


def mine(sent: list[tuple[int, date]], *places: Place) -> list[tuple[int, date]]:
    ids = {p.estate_id for p in places}
    return sorted(s for s in sent if s[0] in ids)


def deliveries(session: Session, place: Place, day: date = D) -> list[NotificationDelivery]:
    return list(
        session.scalars(
            select(NotificationDelivery)
            .where(NotificationDelivery.key == delivery_key(place.estate_id, day))
            .order_by(NotificationDelivery.id)
        )
    )


def records(session: Session, place: Place) -> list[date]:
    return list(
        session.scalars(
            select(DailySummary.day).where(DailySummary.estate_id == place.estate_id).order_by(DailySummary.day)
        )
    )


# --- when it is sent -------------------------------------------------------------------------------------------


def test_not_at_1829_at_1830_once_and_not_again_that_evening(session: Session) -> None:
    place = estate_in(session)
    staff(session, place, "supervisor", "zhuguan@example.cn")
    staff(session, place, "manager", "jingli@example.cn")
    staff(session, place, "steward", "guanjia@example.cn")
    staff(session, place, "engineer", "gongcheng@example.cn")  # not a department head: not mailed
    staff(session, place, "steward", None)  # no address

    assert mine(send_due(session, at(D, 18, 29)), place) == []
    assert deliveries(session, place) == []
    assert records(session, place) == []

    assert mine(send_due(session, at(D, 18, 30)), place) == [(place.estate_id, D)]
    sent = deliveries(session, place)
    assert sorted((d.channel, d.recipient) for d in sent) == [
        (EMAIL, "guanjia@example.cn"),
        (EMAIL, "jingli@example.cn"),
        (EMAIL, "zhuguan@example.cn"),
        (LOG, GROUP),
        (WECOM_ROBOT, GROUP),
    ]
    assert {d.source for d in sent} == {SOURCE}
    assert {d.estate_id for d in sent} == {place.estate_id}
    assert {d.next_attempt_at for d in sent} == {at(D, 18, 30)}  # due at once: the dispatcher sends it within seconds
    assert records(session, place) == [D]

    for later in (at(D, 18, 31), at(D, 19, 10), at(D, 23, 59)):
        assert mine(send_due(session, later), place) == []
    assert len(deliveries(session, place)) == 5


def test_a_worker_back_at_1910_still_sends_and_the_next_day_sends_again(session: Session) -> None:
    place = estate_in(session)
    assert mine(send_due(session, at(D, 12, 0)), place) == []  # the worker ran at noon, then was down until 19:10
    assert mine(send_due(session, at(D, 19, 10)), place) == [(place.estate_id, D)]
    assert mine(send_due(session, at(D + timedelta(days=1), 8, 0)), place) == []
    assert mine(send_due(session, at(D + timedelta(days=1), 18, 30)), place) == [
        (place.estate_id, D + timedelta(days=1))
    ]
    assert records(session, place) == [D, D + timedelta(days=1)]
    assert len(deliveries(session, place, D + timedelta(days=1))) == 2  # log and group robot: nobody has an address


def test_a_worker_down_all_evening_does_not_send_yesterday_the_next_morning(session: Session) -> None:
    place = estate_in(session)
    assert mine(send_due(session, at(D, 18, 0)), place) == []
    # Down from 18:00 until the next morning: the evening's summary is missed, not sent late for the wrong day.
    assert mine(send_due(session, at(D + timedelta(days=1), 0, 5)), place) == []
    assert mine(send_due(session, at(D + timedelta(days=1), 9, 0)), place) == []
    assert records(session, place) == []
    assert deliveries(session, place) == []


def test_estates_in_two_time_zones_each_at_their_own_1830(session: Session) -> None:
    shanghai, urumqi = estate_in(session, SH), estate_in(session, URUMQI)
    assert mine(send_due(session, at(D, 18, 30, SH)), shanghai, urumqi) == [(shanghai.estate_id, D)]
    assert at(D, 18, 29, URUMQI) == at(D, 20, 29, SH)
    assert mine(send_due(session, at(D, 18, 29, URUMQI)), shanghai, urumqi) == []
    assert mine(send_due(session, at(D, 18, 30, URUMQI)), shanghai, urumqi) == [(urumqi.estate_id, D)]
    # 00:30 in Shanghai is still 22:30 of the day before in Urumqi: its summary of that day is done, nothing is new.
    assert mine(send_due(session, at(D + timedelta(days=1), 0, 30, SH)), shanghai, urumqi) == []
    subject = next(d.subject for d in deliveries(session, urumqi) if d.channel == LOG)
    assert subject.endswith(f"{D.isoformat()}（截至 18:30）")  # local times in the message


def test_the_job_runs_under_its_own_lock_with_the_default_jobs(session: Session) -> None:
    assert DAILY_SUMMARY_LOCK == LOCK_NAMESPACE | 0xD5
    [job] = [j for j in default_jobs() if j.name == "daily_summary"]
    assert (job.lock_key, job.period_s) == (DAILY_SUMMARY_LOCK, 60.0)
    place = estate_in(session)
    assert (place.estate_id, D) in daily_summary_job(session, at(D, 18, 30))  # type: ignore[operator]
    assert records(session, place) == [D]


# --- what it says ----------------------------------------------------------------------------------------------


@dataclass
class Day:
    place: Place
    numbers: dict[str, str]


def _ticket(session: Session, place: Place, key: str, received: datetime, **kw: str) -> Ticket:
    t = service.open_ticket(
        session,
        estate_id=place.estate_id,
        source=kw.get("source", "resident"),
        category="water",
        priority=kw.get("priority", "normal"),
        title=kw.get("title", f"报修 {key}"),
        received_by="steward",
        received_at=received,
        reporter_phone="13800000000",
    )
    # The test sets every clock itself, so what is past due at 18:30 is decided here, not by the SLA tables.
    t.on_site_due_at = received + timedelta(days=3)
    t.resolve_due_at = received + timedelta(days=5)
    t.feedback_due_at = received + timedelta(days=1) if t.source == "complaint" else None
    session.flush()
    return t


def _work(session: Session, t: Ticket, engineer: int, start: datetime, *, resolve: bool) -> None:
    service.dispatch(session, t, engineer, "steward", at=start)
    service.accept(session, t, "engineer", at=start + timedelta(minutes=5))
    service.arrive_on_site(session, t, "engineer", at=start + timedelta(minutes=20))
    if resolve:
        service.resolve(session, t, "engineer", work_done="换阀芯", at=start + timedelta(hours=1))


def seed_day(session: Session) -> Day:
    """One Shanghai estate's 26 November, and a little of the day before and the evening after."""
    place = estate_in(session)
    engineer = make_staff(session, place, "engineer")
    prev = D - timedelta(days=1)
    n: dict[str, str] = {}

    t1 = _ticket(session, place, "t1", at(D, 9), priority="normal")  # open, dispatched
    service.dispatch(session, t1, engineer, "steward", at=at(D, 9, 10))
    t2 = _ticket(session, place, "t2", at(D, 10), priority="urgent", title="电梯困人")  # open, on-site clock past due
    t2.on_site_due_at = at(D, 10, 20)
    t3 = _ticket(session, place, "t3", at(D, 8), priority="minor")  # done, called back and closed today
    _work(session, t3, engineer, at(D, 8, 10), resolve=True)
    service.record_callback(session, t3, "steward", "phone", 5, at=at(D, 14))
    service.close(session, t3, "steward", at=at(D, 15))
    t4 = _ticket(session, place, "t4", at(prev, 10), priority="normal")  # yesterday's, still open
    t5 = _ticket(session, place, "t5", at(prev, 9), priority="urgent")  # yesterday's, closed yesterday
    service.close(session, t5, "steward", reason="重复报修", at=at(prev, 9, 30))
    t6 = _ticket(session, place, "t6", at(D, 8, 30), priority="normal", title="厨房漏水")  # resolved, callback late
    _work(session, t6, engineer, at(D, 8, 40), resolve=True)
    t6.callback_due_at = at(D, 17)
    t7 = _ticket(session, place, "t7", at(D, 9, 30), priority="high")  # resolved, callback due tomorrow
    _work(session, t7, engineer, at(D, 9, 40), resolve=True)
    t7.callback_due_at = at(D + timedelta(days=1), 12)
    t8 = _ticket(session, place, "t8", at(D, 19), priority="urgent")  # after 18:30: not in the 18:30 summary
    c1 = _ticket(session, place, "c1", at(D, 11), source="complaint", title="噪音投诉")
    c2 = _ticket(session, place, "c2", at(prev, 8), source="complaint", title="保洁投诉")  # feedback clock past due
    c2.feedback_due_at = at(D, 8)
    session.flush()
    n.update(
        {
            k: t.number
            for k, t in {
                "t1": t1,
                "t2": t2,
                "t3": t3,
                "t4": t4,
                "t6": t6,
                "t7": t7,
                "t8": t8,
                "c1": c1,
                "c2": c2,
            }.items()
        }
    )

    power = RoundSchedule(
        estate_id=place.estate_id,
        room_id=place.room_id,
        code=f"lv_{uuid.uuid4().hex[:6]}",
        name_zh="配电房巡检",
        name_en="Power room round",
        interval_minutes=120,
        anchor=at(D, 0),
    )
    # A customer-service round (alarms/service_rounds.py): of the estate, no room; it shows as its own group.
    desk = RoundSchedule(
        estate_id=place.estate_id,
        room_id=None,
        kind="estate_patrol",
        role="steward",
        code=f"xs_{uuid.uuid4().hex[:6]}",
        name_zh="客服巡查",
        name_en="Customer-service round",
        interval_minutes=240,
        anchor=at(D, 0),
    )
    session.add_all([power, desk])
    session.flush()
    rounds = [
        (power, at(D, 8), "satisfied"),
        (power, at(D, 10), "satisfied"),
        (power, at(D, 12), "missed"),
        (power, at(prev, 12), "missed"),  # yesterday's
        (desk, at(D, 8), "done"),
        (desk, at(D, 16), "open"),
    ]
    for schedule, start, status in rounds:
        session.add(
            InspectionRound(
                schedule_id=schedule.id,
                estate_id=place.estate_id,
                room_id=schedule.room_id,
                kind=schedule.kind,
                window_start=start,
                window_end=start + timedelta(minutes=schedule.interval_minutes),
                status=status,
            )
        )
    rule = make_rule(session)
    conn = session.connection()
    insert_alarm(conn, rule, place, severity="alarm", subject=f"t:{uuid.uuid4().hex}", at=at(D, 9))
    insert_alarm(conn, rule, place, severity="warning", subject=f"t:{uuid.uuid4().hex}", at=at(D, 10), cleared=True)
    insert_alarm(conn, rule, place, severity="critical", subject=f"t:{uuid.uuid4().hex}", at=at(prev, 22))
    insert_alarm(conn, rule, place, severity="warning", subject=f"t:{uuid.uuid4().hex}", at=at(D, 19))  # after 18:30
    session.flush()
    return Day(place, n)


@pytest.fixture
def day(session: Session) -> Day:
    return seed_day(session)


def test_the_figures_count_the_seeded_day(session: Session, day: Day) -> None:
    estate = session.get(Estate, day.place.estate_id)
    assert estate is not None
    f = compose(session, estate, D, at(D, 18, 30))
    assert (f.start, f.end) == (at(D, 0), at(D, 18, 30))
    assert (f.tickets.opened, f.tickets.closed, f.tickets.open) == (5, 1, 5)  # t1 t2 t3 t6 t7; t3; t1 t2 t4 t6 t7
    assert f.tickets.opened_by_priority == {"urgent": 1, "high": 1, "normal": 2, "minor": 1}
    assert f.tickets.open_by_priority == {"urgent": 1, "high": 1, "normal": 3, "minor": 0}
    assert [(b.number, b.clocks) for b in f.tickets.breached] == [
        (day.numbers["t2"], ("on_site",)),
        (day.numbers["t6"], ("callback",)),
    ]
    assert (f.complaints.opened, f.complaints.closed, f.complaints.open) == (1, 0, 2)
    assert [(b.number, b.clocks) for b in f.complaints.breached] == [(day.numbers["c2"], ("feedback",))]
    assert [(g.name_zh, g.total, g.by_status) for g in f.rounds] == [  # by schedule code
        ("配电房巡检", 3, {"satisfied": 2, "done": 0, "missed": 1, "manual_due": 0, "open": 0}),
        ("客服巡查", 2, {"satisfied": 0, "done": 1, "missed": 0, "manual_due": 0, "open": 1}),
    ]
    assert f.rounds_total == {"satisfied": 2, "done": 1, "missed": 1, "manual_due": 0, "open": 1}
    assert f.alarms_raised == {"critical": 0, "alarm": 1, "warning": 1}
    assert f.alarms_open == {"critical": 1, "alarm": 1, "warning": 0}
    assert (f.callbacks.done, f.callbacks.due, f.callbacks.overdue) == (1, 2, 1)
    assert [w.number for w in f.callbacks.waiting] == [day.numbers["t6"], day.numbers["t7"]]

    # The whole day, read the next morning: t8 and the 19:00 warning count now, t2's clocks as they stood at midnight.
    whole = compose(session, estate, D, at(D + timedelta(days=1), 8))
    assert whole.end == at(D + timedelta(days=1), 0)
    assert (whole.tickets.opened, whole.tickets.open) == (6, 6)
    assert whole.alarms_raised == {"critical": 0, "alarm": 1, "warning": 2}


def test_the_message_says_the_day_in_chinese(session: Session, day: Day) -> None:
    staff(session, day.place, "manager", "jingli@example.cn")
    assert mine(send_due(session, at(D, 18, 30)), day.place) == [(day.place.estate_id, D)]
    sent = {d.channel: d for d in deliveries(session, day.place)}
    estate = session.get(Estate, day.place.estate_id)
    assert estate is not None
    mail, group = sent[EMAIL], sent[WECOM_ROBOT]
    assert mail.recipient == "jingli@example.cn"
    assert mail.subject == f"【每日汇总】{estate.name} 2026-11-26（截至 18:30）"
    text = mail.body
    for line in (
        "各位领导、同事：",
        f"{estate.name}2026年11月26日（00:00—18:30）工作汇总如下，请审阅。",
        "今日新增 5 单（紧急 1、较急 1、一般 2、小修 1），今日关闭 1 单；"
        "截至 18:30 未关闭 5 单（紧急 1、较急 1、一般 3）。",
        "已超时 2 单：",
        f"1. {day.numbers['t2']} 电梯困人 · 紧急 · 到场时限（应于 11-26 10:20 前）",
        f"2. {day.numbers['t6']} 厨房漏水 · 一般 · 回访时限（应于 11-26 17:00 前）",
        "今日新增 1 件（一般 1），今日办结 0 件；截至 18:30 未办结 2 件（一般 2）。",
        f"1. {day.numbers['c2']} 保洁投诉 · 一般 · 投诉反馈时限（应于 11-26 08:00 前）",
        "配电房巡检：共 3 次，遥测达标 2、未巡检 1。",
        "客服巡查：共 2 次，人工巡检完成 1、进行中 1。",
        "合计：共 5 次，遥测达标 2、人工巡检完成 1、未巡检 1、进行中 1。",
        "今日新增报警 2 条（报警 1、预警 1）；未消除 2 条（紧急 1、报警 1）。",
        "今日完成回访 1 次；待回访 2 单，其中已超时 1 单。",
        f"详情见平台“每日汇总”页面：/summary/daily?estate={estate.code}&date=2026-11-26",
        f"{estate.name} 客服中心",
    ):
        assert line in text, line
    assert day.numbers["t8"] not in text  # received at 19:00, after the summary
    assert f"**{estate.name} 每日汇总** 2026-11-26（截至 18:30）" in group.body
    assert "未巡检 1 次" in group.body
    assert day.numbers["t2"] in group.body
    assert day.numbers["c2"] in group.body
    assert sent[LOG].body == text
    # The record keeps the figures as sent.
    record = session.get(DailySummary, (day.place.estate_id, D))
    assert record is not None
    assert record.sent_at == at(D, 18, 30)
    assert record.counts["tickets"]["opened"] == 5
    assert record.counts["tickets"]["breached"] == [day.numbers["t2"], day.numbers["t6"]]
    assert record.counts["rounds_total"]["missed"] == 1
    assert record.counts["callbacks"] == {"done": 1, "due": 2, "overdue": 1}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def robot() -> Iterator[RobotServer]:
    server = RobotServer().start()
    yield server
    server.stop()


def test_the_summary_reaches_the_real_smtp_and_robot_servers_once(
    session: Session, smtp_server: SmtpServer, robot: RobotServer
) -> None:
    place = estate_in(session)
    staff(session, place, "supervisor", "zhuguan@example.cn")
    send_due(session, at(D, 18, 30))
    # Deliveries other modules committed (and other estates' summaries) are not this test's to send.
    session.execute(delete(NotificationDelivery).where(NotificationDelivery.key != delivery_key(place.estate_id, D)))
    factory = sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False)
    channels: dict[str, Channel] = {
        EMAIL: SmtpChannel("127.0.0.1", smtp_server.port, sender="steward@wuye.example.cn"),
        WECOM_ROBOT: WeComRobotChannel(robot.url),
    }
    assert dispatch_due(factory, channels, at(D, 18, 30, SH) + timedelta(seconds=10)).sent == 2
    send_due(session, at(D, 18, 45))
    assert dispatch_due(factory, channels, at(D, 18, 45, SH) + timedelta(seconds=10)).sent == 0
    assert len(smtp_server.received) == 1
    envelope, mail = smtp_server.received[0]
    assert envelope.rcpt_tos == ["zhuguan@example.cn"]
    assert mail["Subject"].startswith("【每日汇总】")
    assert "一、报修工单" in mail.get_content()
    assert len(robot.posts) == 1
    assert robot.posts[0]["msgtype"] == "markdown"
    assert "每日汇总" in robot.posts[0]["markdown"]["content"]
