"""Escalation notices: one WeCom group message naming the role, e-mail to that role's staff on the estate,
each escalation announced once; sent through the real SMTP and robot servers by the dispatcher.

Every test runs at each of the INSTANTS (tests/support/clock.py); tickets are received at that instant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core import clock
from notifications.channels import EMAIL, LOG, WECOM_ROBOT, Channel, SmtpChannel, WeComRobotChannel
from notifications.service import dispatch_due
from storage.models import Estate, NotificationDelivery, StaffEstate, StaffUser, Ticket
from tests.support.clock import FrozenClock
from tests.support.notify_servers import RobotServer, SmtpServer
from tests.support.world import Place, make_estate
from tickets import service
from tickets.escalation import escalate_due


def m(n: int) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture(autouse=True)
def t0(at_instant: FrozenClock) -> datetime:
    return at_instant()


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


@pytest.fixture
def factory(session: Session) -> sessionmaker[Session]:
    return sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False)


def staff(
    session: Session, place: Place | None, role: str, email: str | None, *, active: bool = True, head: bool = False
) -> StaffUser:
    user = StaffUser(
        username=f"{role}-{email or 'none'}-{place.estate_id if place else 'hq'}-{active}",
        password_hash="x",
        role=role,
        active=active,
        email=email,
        all_estates=head,
    )
    session.add(user)
    session.flush()
    if place is not None:
        session.add(StaffEstate(user_id=user.id, estate_id=place.estate_id))
        session.flush()
    return user


def open_ticket(session: Session, place: Place) -> Ticket:
    return service.open_ticket(
        session,
        estate_id=place.estate_id,
        source="manual",
        category="electrical",
        priority="normal",
        title="配电房照明故障",
        received_by="s",
        received_at=clock.now(),
    )


def deliveries(session: Session, ticket: Ticket) -> list[NotificationDelivery]:
    return list(
        session.scalars(
            select(NotificationDelivery)
            .where(NotificationDelivery.key.like(f"ticket:{ticket.id}:%"))
            .order_by(NotificationDelivery.id)
        )
    )


def test_each_escalation_queues_one_group_message_and_mails_the_role_on_the_estate(
    session: Session, t0: datetime
) -> None:
    place, elsewhere = make_estate(session), make_estate(session)
    staff(session, place, "supervisor", "zhu@example.cn")
    staff(session, place, "supervisor", None)  # no address: not mailed
    staff(session, place, "supervisor", "old@example.cn", active=False)
    staff(session, place, "engineer", "eng@example.cn")  # another role
    staff(session, elsewhere, "supervisor", "other@example.cn")  # another estate
    staff(session, None, "supervisor", "hq@example.cn", head=True)  # head office sees every estate
    staff(session, place, "manager", "jingli@example.cn")
    t = open_ticket(session, place)  # on site due t0+20

    escalate_due(session, t0 + m(20))
    first = deliveries(session, t)
    assert sorted((d.channel, d.recipient) for d in first) == [
        (EMAIL, "hq@example.cn"),
        (EMAIL, "zhu@example.cn"),
        (LOG, "role:supervisor"),
        (WECOM_ROBOT, "role:supervisor"),
    ]
    assert {d.source for d in first} == {"ticket_escalation"}
    assert {d.estate_id for d in first} == {place.estate_id}
    assert {d.status for d in first} == {"pending"}
    assert {d.next_attempt_at for d in first} == {t0 + m(20)}

    escalate_due(session, t0 + m(21))  # nothing new
    assert len(deliveries(session, t)) == 4

    escalate_due(session, t0 + m(50))  # level 2: the manager
    second = deliveries(session, t)[4:]
    assert sorted((d.channel, d.recipient) for d in second) == [
        (EMAIL, "jingli@example.cn"),
        (LOG, "role:manager"),
        (WECOM_ROBOT, "role:manager"),
    ]


def test_the_notice_says_who_what_where_and_when_in_chinese(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    estate = session.get(Estate, place.estate_id)
    assert estate is not None
    t = open_ticket(session, place)
    escalate_due(session, t0 + m(20))
    group = next(d for d in deliveries(session, t) if d.channel == WECOM_ROBOT)
    due_local = (t0 + m(20)).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    assert group.subject == f"【工单升级】{t.number} 到场时限已超时，请工程主管跟进"
    assert "@工程主管" in group.body
    assert t.number in group.body
    assert "配电房照明故障" in group.body
    assert estate.name in group.body
    assert f"到场时限（应于 {due_local} 前）" in group.body


def test_escalation_reaches_the_real_smtp_and_robot_servers(
    session: Session, factory: sessionmaker[Session], smtp_server: SmtpServer, robot: RobotServer, t0: datetime
) -> None:
    place = make_estate(session)
    staff(session, place, "supervisor", "zhu@example.cn")
    t = open_ticket(session, place)
    escalate_due(session, t0 + m(20))
    # Tickets other test modules committed escalate too; send only this ticket's (rolled back with the test).
    session.execute(delete(NotificationDelivery).where(NotificationDelivery.key.not_like(f"ticket:{t.id}:%")))
    robot.script.append((200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
    channels: dict[str, Channel] = {
        EMAIL: SmtpChannel("127.0.0.1", smtp_server.port, sender="steward@wuye.example.cn"),
        WECOM_ROBOT: WeComRobotChannel(robot.url),
    }
    first = dispatch_due(factory, channels, t0 + m(20))
    assert (first.sent, first.failed) == (1, 1)  # the mail went; the robot was rate-limited
    assert dispatch_due(factory, channels, t0 + m(21)).sent == 1  # one minute later
    assert dispatch_due(factory, channels, t0 + m(60)).sent == 0  # and never again
    assert len(smtp_server.received) == 1
    envelope, mail = smtp_server.received[0]
    assert envelope.rcpt_tos == ["zhu@example.cn"]
    assert mail["Subject"] == f"【工单升级】{t.number} 到场时限已超时，请工程主管跟进"
    assert "工程主管您好" in mail.get_content()
    assert len(robot.posts) == 2
    assert robot.posts[0] == robot.posts[1]
    assert robot.posts[1]["msgtype"] == "markdown"
    assert t.number in robot.posts[1]["markdown"]["content"]
    assert {d.channel: d.status for d in deliveries(session, t)} == {EMAIL: "sent", WECOM_ROBOT: "sent", LOG: "pending"}
