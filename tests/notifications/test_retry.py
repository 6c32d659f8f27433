""" "Retry now" on the deliveries page: a given-up delivery is due again at once (audited) and the dispatcher sends
it on its next run; sent or pending ones are refused. Recipients are masked by role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict, NotFound
from core.roles import Role
from notifications import policy, queries
from notifications.channels import WECOM_ROBOT, WeComRobotChannel
from notifications.service import dispatch_due, enqueue, retry_now
from storage.models import AuditLog, NotificationDelivery
from tests.support.clock import INSTANTS
from tests.support.notify_servers import RobotServer

T0 = INSTANTS["sh-2359"]


def row(session: Session, delivery_id: int) -> NotificationDelivery:
    found = session.get(NotificationDelivery, delivery_id, populate_existing=True)
    assert found is not None
    return found


def test_a_given_up_delivery_is_sent_again_after_retry_now(
    session: Session, factory: sessionmaker[Session], robot: RobotServer
) -> None:
    robot.script += [(500, {})] * 2
    channels = {WECOM_ROBOT: WeComRobotChannel(robot.url)}
    d = enqueue(
        session,
        key="retry:1",
        channel=WECOM_ROBOT,
        recipient="role:manager",
        subject="工单超时升级",
        body="…",
        source="ticket_escalation",
        at=T0,
    )
    now = T0
    for _ in range(2):
        dispatch_due(factory, channels, now, max_attempts=2)
        now = row(session, d).next_attempt_at
    assert (row(session, d).status, row(session, d).attempts) == ("gave_up", 2)
    with pytest.raises(Conflict):  # pending: the dispatcher has it already
        retry_now(session, enqueue_pending(session), actor="li.manager", now=T0)
    later = T0 + timedelta(hours=3)
    retry_now(session, d, actor="li.manager", now=later)
    got = row(session, d)
    assert (got.status, got.next_attempt_at, got.attempts) == ("failed", later, 2)  # attempts kept: the record holds
    audit = session.scalars(
        select(AuditLog).where(AuditLog.action == "notification.retry", AuditLog.object == f"notification_delivery:{d}")
    ).one()
    assert (audit.actor, audit.detail["status"], audit.detail["attempts"]) == ("li.manager", "gave_up", 2)
    result = dispatch_due(factory, channels, later, max_attempts=2)  # the robot answers ok now
    assert result.sent == 2  # the retried one and the pending one queued above
    assert row(session, d).status == "sent"
    assert len(robot.posts) == 4
    with pytest.raises(Conflict):
        retry_now(session, d, actor="li.manager", now=later)  # sent: nothing to retry
    with pytest.raises(NotFound):
        retry_now(session, 2_000_000_000, actor="li.manager", now=later)


def enqueue_pending(session: Session) -> int:
    return enqueue(
        session, key="retry:2", channel=WECOM_ROBOT, recipient="role:x", subject="s", body="b", source="x", at=T0
    )


def test_recipients_are_masked_for_roles_that_do_not_manage_staff() -> None:
    assert policy.shown_recipient("wang.daming@example.com", Role.engineer) == "w***@example.com"
    assert policy.shown_recipient("wang.daming@example.com", Role.manager) == "wang.daming@example.com"
    assert policy.shown_recipient("13812345678", Role.billing_clerk) == "138****5678"
    assert policy.shown_recipient("role:engineer", Role.engineer) == "role:engineer"


def test_deliveries_page_is_paged_and_filtered(session: Session) -> None:
    ids = [
        enqueue(
            session,
            key=f"page:{i}",
            channel=WECOM_ROBOT if i % 2 else "email",
            recipient=f"r{i}@example.com",
            subject="s",
            body="b",
            source="ticket_escalation",
            at=T0 + timedelta(minutes=i),
            estate_id=None,
        )
        for i in range(5)
    ]
    page = queries.deliveries_page(session, channel="email", limit=2, offset=0, source="ticket_escalation")
    emails = [i for n, i in enumerate(ids) if n % 2 == 0]
    assert page.total >= 3
    assert [r.id for r in page.items][:2] == sorted(emails, reverse=True)[:2]
    assert {r.channel for r in page.items} == {"email"}
    assert queries.deliveries_page(session, channel="email", estate_ids=[]).total == 0
