"""The delivery queue: idempotent enqueue, retry with backoff, gave_up, at-least-once across a crash.

Every dispatch runs at a time the test gives (`now`); nothing reads the wall clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidInput
from notifications import queries
from notifications.channels import EMAIL, LOG, WECOM_ROBOT, Message, SmtpChannel, WeComRobotChannel
from notifications.service import LEASE, backoff, dispatch_due, enqueue
from storage.models import NotificationDelivery
from tests.support.clock import INSTANTS
from tests.support.notify_servers import RobotServer, SmtpServer
from worker.jobs import NOTIFICATIONS_LOCK, Job, notifications_job
from worker.runner import Worker

T0 = INSTANTS["sh-2359"]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def queue(session: Session, key: str = "notice:1", channel: str = WECOM_ROBOT, recipient: str = "role:manager") -> int:
    return enqueue(
        session,
        key=key,
        channel=channel,
        recipient=recipient,
        subject="热水续费通知",
        body="余额不足，请续费",
        source="billing_notice",
        at=T0,
    )


def row(session: Session, delivery_id: int) -> NotificationDelivery:
    found = session.get(NotificationDelivery, delivery_id, populate_existing=True)
    assert found is not None
    return found


def test_enqueue_is_idempotent_per_key_channel_recipient(session: Session) -> None:
    first = queue(session)
    assert queue(session) == first
    other_recipient = queue(session, recipient="role:supervisor")
    other_channel = queue(session, channel=EMAIL, recipient="a@b.cn")
    assert len({first, other_recipient, other_channel}) == 3
    assert session.scalar(select(func.count()).select_from(NotificationDelivery)) == 3
    d = row(session, first)
    assert (d.status, d.attempts, d.next_attempt_at, d.created_at) == ("pending", 0, T0, T0)


def test_enqueue_refuses_bad_input(session: Session) -> None:
    with pytest.raises(InvalidInput):
        queue(session, channel="sms")
    with pytest.raises(InvalidInput):
        queue(session, key="")
    with pytest.raises(InvalidInput):
        queue(session, key="k" * 201)


def test_robot_errors_are_retried_with_backoff_then_sent_once(
    session: Session, factory: sessionmaker[Session], robot: RobotServer
) -> None:
    robot.script += [(200, {"errcode": 93000, "errmsg": "invalid webhook url"}), (500, {})]
    channels = {WECOM_ROBOT: WeComRobotChannel(robot.url)}
    d = queue(session)
    assert dispatch_due(factory, channels, T0).failed == 1
    got = row(session, d)
    assert (got.status, got.attempts, got.next_attempt_at) == ("failed", 1, T0 + minutes(1))
    assert got.last_error is not None
    assert "93000" in got.last_error
    assert dispatch_due(factory, channels, T0 + minutes(0.5)).failed == 0  # backing off
    assert len(robot.posts) == 1
    assert dispatch_due(factory, channels, T0 + minutes(1)).failed == 1  # HTTP 500
    got = row(session, d)
    assert (got.status, got.attempts, got.next_attempt_at) == ("failed", 2, T0 + minutes(3))
    assert got.last_error is not None
    assert "HTTP 500" in got.last_error
    assert dispatch_due(factory, channels, T0 + minutes(2.9)).sent == 0
    assert dispatch_due(factory, channels, T0 + minutes(3)).sent == 1
    got = row(session, d)
    assert (got.status, got.attempts, got.sent_at, got.last_error) == ("sent", 3, T0 + minutes(3), None)
    assert len(robot.posts) == 3
    # Sent is final: neither another run nor enqueueing the same notice again sends it twice.
    assert queue(session) == d
    assert dispatch_due(factory, channels, T0 + minutes(100)).sent == 0
    assert len(robot.posts) == 3
    assert robot.posts[-1] == {"msgtype": "markdown", "markdown": {"content": "### 热水续费通知\n余额不足，请续费"}}


def test_backoff_doubles_from_a_minute_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [minutes(1), minutes(2), minutes(4), minutes(8)]
    assert backoff(30) == minutes(60)
    assert backoff(30, cap=minutes(10)) == minutes(10)


def test_gives_up_after_max_attempts(session: Session, factory: sessionmaker[Session], robot: RobotServer) -> None:
    robot.script += [(500, {})] * 10
    channels = {WECOM_ROBOT: WeComRobotChannel(robot.url)}
    d = queue(session)
    now = T0
    for attempt in range(1, 4):
        result = dispatch_due(factory, channels, now, max_attempts=3)
        assert (result.failed, result.gave_up) == ((1, 0) if attempt < 3 else (0, 1))
        now = row(session, d).next_attempt_at
    got = row(session, d)
    assert (got.status, got.attempts) == ("gave_up", 3)
    dispatch_due(factory, channels, T0 + timedelta(days=1), max_attempts=3)
    assert len(robot.posts) == 3


class Crash(BaseException):
    """The process dies in the middle of a send (not an Exception: nothing catches it)."""


class SendsThenCrashes:
    name = LOG

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.crash = True

    def send(self, message: Message) -> None:
        self.sent.append(message)
        if self.crash:
            raise Crash


def test_a_crash_between_send_and_record_sends_again_after_the_lease(
    session: Session, factory: sessionmaker[Session]
) -> None:
    channel = SendsThenCrashes()
    d = queue(session, channel=LOG)
    with pytest.raises(Crash):
        dispatch_due(factory, {LOG: channel}, T0)
    got = row(session, d)  # the claim was committed before the send: the attempt is on record
    assert (got.status, got.attempts, got.next_attempt_at) == ("pending", 1, T0 + LEASE)
    assert got.last_error is not None
    assert got.last_error.startswith("in flight: attempt 1")
    channel.crash = False
    assert dispatch_due(factory, {LOG: channel}, T0 + LEASE - minutes(1)).sent == 0  # the lease still holds
    assert dispatch_due(factory, {LOG: channel}, T0 + LEASE).sent == 1
    got = row(session, d)
    assert (got.status, got.attempts, got.last_error) == ("sent", 2, None)
    assert len(channel.sent) == 2  # at least once: a duplicate, never a loss


def test_unconfigured_channels_wait(session: Session, factory: sessionmaker[Session], smtp_server: SmtpServer) -> None:
    mail = queue(session, channel=EMAIL, recipient="li@example.cn")
    robot_row = queue(session)
    smtp = {EMAIL: SmtpChannel("127.0.0.1", smtp_server.port, sender="steward@wuye.example.cn")}
    assert dispatch_due(factory, smtp, T0).sent == 1
    assert row(session, mail).status == "sent"
    assert row(session, robot_row).status == "pending"  # no robot configured: left for when it is
    assert smtp_server.received[0][1]["Subject"] == "热水续费通知"


def test_two_dispatchers_never_send_one_row(session: Session, factory: sessionmaker[Session]) -> None:
    ids = [queue(session, key=f"n:{i}", channel=LOG) for i in range(5)]
    channel = SendsThenCrashes()
    channel.crash = False
    assert dispatch_due(factory, {LOG: channel}, T0, limit=2).sent == 2
    assert dispatch_due(factory, {LOG: channel}, T0, limit=10).sent == 3
    assert dispatch_due(factory, {LOG: channel}, T0).sent == 0
    assert len(channel.sent) == 5
    assert {row(session, i).status for i in ids} == {"sent"}


def test_queries_filter_by_status_and_source(session: Session, factory: sessionmaker[Session]) -> None:
    a = queue(session, key="a", channel=LOG)
    b = enqueue(session, key="b", channel=LOG, recipient="x", subject="s", body="b", source="ticket_escalation", at=T0)
    channel = SendsThenCrashes()
    channel.crash = False
    enqueue(session, key="c", channel=EMAIL, recipient="c@x.cn", subject="s", body="b", source="billing_notice", at=T0)
    dispatch_due(factory, {LOG: channel}, T0)
    sent = queries.list_deliveries(session, status="sent")
    assert {r.id for r in sent} >= {a, b}
    billing = queries.list_deliveries(session, source="billing_notice")
    assert {r.key for r in billing} == {"a", "c"}
    pending = queries.list_deliveries(session, source="billing_notice", status="pending")
    assert [(r.key, r.channel) for r in pending] == [("c", EMAIL)]
    assert queries.status_counts(session) == {"pending": 1, "sent": 2, "failed": 0, "gave_up": 0}
    assert queries.list_deliveries(session, estate_ids=[]) == []
    with pytest.raises(InvalidInput):
        queries.list_deliveries(session, status="lost")


def test_the_worker_job_sends_under_its_lock(session: Session, factory: sessionmaker[Session]) -> None:
    channel = SendsThenCrashes()
    channel.crash = False
    d = queue(session, channel=LOG)
    job = Job("notifications", 10.0, NOTIFICATIONS_LOCK, notifications_job(factory, {LOG: channel}))
    assert Worker(factory, [job]).run_once(T0) == {"notifications": True}
    assert row(session, d).status == "sent"
    assert [m.subject for m in channel.sent] == ["热水续费通知"]
