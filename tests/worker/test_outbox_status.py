"""Outbox status: expired marked once, sent on PUBACK, resent after the ack timeout with the same command_id,
failed after N sends with an alarm (and its ticket), acknowledged by the device's ack; the list read for pages.

A scripted publisher stands in for the broker (tests/worker/test_outbox.py covers real Mosquitto); times are
given to each run, nothing reads the wall clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from alarms.commands import COMMAND_RULE
from ingest.writer import OUTBOX_ACK_SQL
from storage.models import Alarm, AlarmRuleRow, Outbox, Ticket
from storage.outbox_reads import command_status_counts, list_commands
from tests.support.clock import INSTANTS
from tests.support.world import Place, make_estate
from worker.jobs import OUTBOX_LOCK, Job, on_raised_hook
from worker.outbox import OutboxDispatcher
from worker.runner import Worker

T0 = INSTANTS["sh-1200"]


def s(n: float) -> timedelta:
    return timedelta(seconds=n)


class Broker:
    """Answers each publish with a PUBACK (or not, while `ok` is False); records what it was given."""

    connected = True

    def __init__(self) -> None:
        self.ok = True
        self.published: list[dict[str, object]] = []

    def publish_batch(self, messages: Sequence[tuple[str, bytes]], timeout: float) -> list[bool]:
        self.published += [json.loads(p) for _, p in messages]
        return [self.ok] * len(messages)


@pytest.fixture
def factory(session: Session) -> sessionmaker[Session]:
    # Other modules commit outbox rows to the shared database; this transaction (rolled back) starts without them.
    session.execute(delete(Outbox))
    return sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def place(session: Session) -> Place:
    return make_estate(session)


def command(session: Session, place: Place, *, expires_at: datetime | None = None) -> int:
    row = Outbox(
        device_id=place.valve_meter_id,
        topic=f"steward/{place.code}/down/M/valve",
        payload={"action": "close", "reason": "restriction"},
        created_at=T0,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row.id


def state(session: Session, cid: int) -> Outbox:
    row = session.get(Outbox, cid, populate_existing=True)
    assert row is not None
    return row


def worker(factory: sessionmaker[Session], broker: Broker, **kw: object) -> Worker:
    dispatcher = OutboxDispatcher(broker, on_raised=on_raised_hook(), **kw)  # type: ignore[arg-type]
    return Worker(factory, [Job("outbox", 2.0, OUTBOX_LOCK, dispatcher)])


def ack(session: Session, cid: int, device_id: int, at: datetime) -> None:
    """What ingest does with the device's ``applied`` ack (ingest/writer.py OUTBOX_ACK_SQL)."""
    session.execute(
        text(
            "UPDATE outbox SET acked_at = :at, status = 'acknowledged', next_attempt_at = NULL "
            "WHERE id = :id AND device_id = :d AND acked_at IS NULL"
        ),
        {"at": at, "id": cid, "d": device_id},
    )


def test_sent_on_puback_resent_until_acknowledged(
    session: Session, factory: sessionmaker[Session], place: Place
) -> None:
    broker = Broker()
    cid = command(session, place, expires_at=T0 + timedelta(hours=1))
    w = worker(factory, broker, ack_timeout_s=60)
    w.run_once(T0)
    row = state(session, cid)
    assert (row.status, row.attempts, row.sent_at, row.next_attempt_at) == ("sent", 1, T0, T0 + s(60))
    w.run_once(T0 + s(59))
    assert len(broker.published) == 1  # still within the ack timeout
    w.run_once(T0 + s(60))  # no ack: resent, same command id
    row = state(session, cid)
    assert (row.status, row.attempts, row.sent_at, row.next_attempt_at) == ("sent", 2, T0, T0 + s(120))
    assert row.last_error == "no ack within 60 s; resent"
    assert [p["command_id"] for p in broker.published] == [str(cid), str(cid)]
    ack(session, cid, place.valve_meter_id, T0 + s(70))
    w.run_once(T0 + s(500))
    row = state(session, cid)
    assert (row.status, row.attempts, row.acked_at) == ("acknowledged", 2, T0 + s(70))
    assert len(broker.published) == 2


def test_never_acknowledged_fails_after_n_sends_and_raises_one_alarm_with_a_ticket(
    session: Session, factory: sessionmaker[Session], place: Place
) -> None:
    broker = Broker()
    first, second = command(session, place), command(session, place)
    w = worker(factory, broker, ack_timeout_s=60, max_attempts=3)
    for n in range(3):
        w.run_once(T0 + s(60 * n))
    assert {state(session, c).status for c in (first, second)} == {"sent"}
    assert len(broker.published) == 6
    w.run_once(T0 + s(180))  # the third send's ack deadline passed
    for c in (first, second):
        row = state(session, c)
        assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
        assert row.last_error == "no ack after 3 sends"
    alarms = list(
        session.scalars(
            select(Alarm).join(AlarmRuleRow, AlarmRuleRow.id == Alarm.rule_id).where(AlarmRuleRow.code == COMMAND_RULE)
        )
    )
    assert len(alarms) == 1  # one per device, however many of its commands failed
    alarm = alarms[0]
    assert (alarm.device_id, alarm.estate_id, alarm.state, alarm.raised_at) == (
        place.valve_meter_id,
        place.estate_id,
        "active",
        T0 + s(180),
    )
    assert alarm.detail["reason"] == "failed"
    assert alarm.detail["outbox_id"] == first
    assert alarm.ticket_id is not None
    ticket = session.get(Ticket, alarm.ticket_id)
    assert ticket is not None
    assert ticket.priority == "high"
    w.run_once(T0 + s(1000))
    assert len(broker.published) == 6  # failed is final
    # A late ack still counts: the device did apply it.
    ack(session, first, place.valve_meter_id, T0 + s(1001))
    assert state(session, first).status == "acknowledged"


def refuse(session: Session, cid: int, device_id: int, at: datetime, answer: str, reason: str | None) -> None:
    """What ingest does with a device's answer other than "applied": the writer's own statement."""
    session.connection().exec_driver_sql(
        OUTBOX_ACK_SQL,
        {"at": at, "ids": [cid], "devices": [device_id], "statuses": [answer], "reasons": [reason]},
    )


@pytest.mark.parametrize(("answer", "reason"), [("rejected", None), ("expired", None), ("rejected", "version_gap")])
def test_a_refused_command_is_closed_never_resent_expired_or_given_up(
    session: Session, factory: sessionmaker[Session], place: Place, answer: str, reason: str | None
) -> None:
    broker = Broker()
    cid = command(session, place, expires_at=T0 + s(300))
    w = worker(factory, broker, ack_timeout_s=60, max_attempts=2)
    w.run_once(T0)
    refuse(session, cid, place.valve_meter_id, T0 + s(5), answer, reason)
    for n in range(1, 8):  # past the ack deadline, the last try and the expiry
        w.run_once(T0 + s(60 * n))
    row = state(session, cid)
    assert (row.status, row.last_error, row.acked_at, row.attempts) == ("refused", reason or answer, T0 + s(5), 1)
    assert (row.expired_at, row.next_attempt_at) == (None, None)
    assert len(broker.published) == 1
    assert session.scalar(select(Alarm.id).where(Alarm.device_id == place.valve_meter_id)) is None
    ack(session, cid, place.valve_meter_id, T0 + s(500))  # a later "applied": the first answer stands
    assert state(session, cid).status == "refused"
    assert command_status_counts(session, estate_ids=[place.estate_id])["refused"] == 1
    [listed] = list_commands(session, estate_ids=[place.estate_id], status="refused")
    assert (listed.id, listed.last_error) == (cid, reason or answer)


def test_no_puback_backs_off_and_the_last_try_fails(
    session: Session, factory: sessionmaker[Session], place: Place
) -> None:
    broker = Broker()
    broker.ok = False
    cid = command(session, place)
    w = worker(factory, broker, max_attempts=2)
    w.run_once(T0)
    row = state(session, cid)
    assert (row.status, row.attempts, row.next_attempt_at, row.sent_at) == ("pending", 1, T0 + s(2), None)
    assert row.last_error == "no PUBACK from the broker"
    w.run_once(T0 + s(1))
    assert len(broker.published) == 1
    w.run_once(T0 + s(2))
    row = state(session, cid)
    assert (row.status, row.attempts) == ("failed", 2)
    assert session.scalar(select(Alarm.detail).where(Alarm.device_id == place.valve_meter_id)) is not None


def test_expired_is_marked_once_and_alarms_only_if_it_was_sent(
    session: Session, factory: sessionmaker[Session], place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Broker()
    never_sent = command(session, place, expires_at=T0 - s(1))
    sent = command(session, place, expires_at=T0 + s(30))
    w = worker(factory, broker, ack_timeout_s=60)
    w.run_once(T0)
    assert state(session, never_sent).status == "expired"
    assert state(session, never_sent).expired_at == T0
    assert [p["command_id"] for p in broker.published] == [str(sent)]
    assert session.scalar(select(Alarm.id).where(Alarm.device_id == place.valve_meter_id)) is None
    w.run_once(T0 + s(30))
    row = state(session, sent)
    assert (row.status, row.expired_at, row.attempts) == ("expired", T0 + s(30), 1)
    detail = session.scalar(select(Alarm.detail).where(Alarm.device_id == place.valve_meter_id))
    assert detail is not None
    assert (detail["outbox_id"], detail["reason"]) == (sent, "expired")
    caplog.clear()
    w.run_once(T0 + s(90))
    assert "expired" not in caplog.text  # marked and logged once
    assert len(broker.published) == 1


def test_list_commands_for_the_pages(session: Session, factory: sessionmaker[Session], place: Place) -> None:
    other = make_estate(session)
    broker = Broker()
    mine = command(session, place)
    gone = command(session, place, expires_at=T0 - s(1))
    theirs = command(session, other)
    worker(factory, broker).run_once(T0)
    rows = list_commands(session, estate_ids=[place.estate_id])
    assert {r.id: r.status for r in rows} == {mine: "sent", gone: "expired"}
    assert rows[0].command == "valve"
    assert rows[0].estate_id == place.estate_id
    assert [r.id for r in list_commands(session, estate_ids=[other.estate_id], status="sent")] == [theirs]
    counts = command_status_counts(session, estate_ids=[place.estate_id, other.estate_id])
    assert counts == {"pending": 0, "sent": 2, "acknowledged": 0, "refused": 0, "expired": 1, "failed": 0}


@pytest.mark.parametrize(("answer", "status"), [("expired", "expired"), ("applied", "acknowledged")])
def test_a_late_answer_to_an_expired_command(
    session: Session, factory: sessionmaker[Session], place: Place, answer: str, status: str
) -> None:
    """Matrix M18: a stale copy reaches the device after the outbox marked the row 'expired'. The device drops it
    ("expired"): the row stays 'expired', the answer recorded. A late "applied" still says what the device did."""
    broker = Broker()
    cid = command(session, place, expires_at=T0 + s(30))
    w = worker(factory, broker, ack_timeout_s=60)
    w.run_once(T0)
    w.run_once(T0 + s(30))
    assert state(session, cid).status == "expired"
    refuse(session, cid, place.valve_meter_id, T0 + s(45), answer, None)
    w.run_once(T0 + s(600))
    row = state(session, cid)
    assert (row.status, row.acked_at, row.expired_at, row.attempts) == (status, T0 + s(45), T0 + s(30), 1)
    if answer == "expired":
        assert row.last_error == "expired"
    assert len(broker.published) == 1  # never published again
