"""Tickets opened from alarms inside the ingest transaction: policy, attach, overrides, valve commands, races."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from alarms.store import NewAlarm, clear_open, insert_alarms
from core import clock
from storage.models import Alarm, AlarmRuleOverride, Outbox, TicketEvent
from tests.support.clock import same_day_due
from tests.support.world import T0, Place, insert_alarm, make_estate, make_rule, tickets_of
from tickets import service
from tickets.from_alarms import open_for_alarms

NOW = T0 + timedelta(minutes=3)  # ingest handles the batch a little after the device raised it


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    clock.set_clock(lambda: NOW)
    yield
    clock.reset_clock()


@pytest.fixture
def place(session: Session) -> Place:
    return make_estate(session)


def ticket_of_alarm(session: Session, alarm_id: int) -> int | None:
    return session.scalar(select(Alarm.ticket_id).where(Alarm.id == alarm_id).execution_options(populate_existing=True))


def test_a_warning_opens_nothing(session: Session, place: Place) -> None:
    rule = make_rule(session)
    a = insert_alarm(session.connection(), rule, place, severity="warning")
    assert open_for_alarms(session.connection(), [a]) == []
    assert tickets_of(session, place.estate_id) == []


def test_an_alarm_opens_one_ticket_with_sla_from_now(session: Session, place: Place) -> None:
    rule = make_rule(session)
    a = insert_alarm(session.connection(), rule, place)
    ids = open_for_alarms(session.connection(), [a])
    [t] = tickets_of(session, place.estate_id)
    assert ids == [t.id]
    assert (t.source, t.source_key, t.status, t.received_by) == (
        "alarm",
        f"alarm:{rule}:device:{place.sensor_id}",
        "received",
        "system",
    )
    assert (t.priority, t.category) == ("high", "electrical")  # alarm → high; power room → electrical
    assert t.title == "绕组温度过高 — 1号变压器"
    # §4's platform table, alarm level: on site within the shift (2 h), done the same day (10:03 local → 23:59).
    assert (t.clock_kind, t.received_at, t.on_site_due_at, t.resolve_due_at) == (
        "alarm",
        NOW,
        NOW + timedelta(hours=2),
        same_day_due(NOW),
    )
    assert (t.device_id, t.room_id) == (place.sensor_id, place.room_id)
    assert ticket_of_alarm(session, a) == t.id
    events = service.events(session, t.id)
    assert [(e.action, e.actor, e.detail["alarm_id"]) for e in events] == [("opened", "system", a)]


def test_critical_is_urgent(session: Session, place: Place) -> None:
    rule = make_rule(session)
    open_for_alarms(session.connection(), [insert_alarm(session.connection(), rule, place, severity="critical")])
    [t] = tickets_of(session, place.estate_id)
    assert t.priority == "urgent"


def test_a_repeat_episode_attaches_while_the_ticket_is_open(session: Session, place: Place) -> None:
    conn = session.connection()
    rule = make_rule(session)
    first = insert_alarm(conn, rule, place)
    open_for_alarms(conn, [first])
    clear_open(conn, rule, [f"device:{place.sensor_id}"], T0 + timedelta(minutes=5))
    second = insert_alarm(conn, rule, place, severity="critical", at=T0 + timedelta(minutes=9))
    open_for_alarms(conn, [second])
    [t] = tickets_of(session, place.estate_id)
    assert ticket_of_alarm(session, first) == ticket_of_alarm(session, second) == t.id
    # The repeat came back critical: the ticket it joined becomes urgent (its clocks can only shorten).
    assert [e.action for e in service.events(session, t.id)] == ["opened", "alarm_attached", "priority_raised"]
    session.refresh(t)
    assert t.priority == "urgent"

    # Once that ticket is closed, the next episode opens a new one.
    service.close(session, t.id, "s", reason="已处理")
    clear_open(conn, rule, [f"device:{place.sensor_id}"], T0 + timedelta(minutes=10))
    third = insert_alarm(conn, rule, place, at=T0 + timedelta(minutes=20))
    open_for_alarms(conn, [third])
    assert len(tickets_of(session, place.estate_id)) == 2


def test_several_alarms_of_one_batch_share_their_ticket(session: Session, place: Place) -> None:
    conn = session.connection()
    rule = make_rule(session)
    a = insert_alarm(conn, rule, place, subject="point:1")
    b = insert_alarm(conn, rule, place, subject="point:2")
    c = insert_alarm(conn, rule, place, subject="point:1", cleared=True)  # an episode seen whole, same subject
    ids = open_for_alarms(conn, [a, b, c])
    assert len(ids) == 2
    assert ticket_of_alarm(session, a) == ticket_of_alarm(session, c)


def test_rules_of_one_group_share_one_ticket_per_device(session: Session, place: Place) -> None:
    """The three winding phases of one transformer running hot are one job for the engineer."""
    conn = session.connection()
    group = {"group": "transformer.winding_temp"}
    phases = [make_rule(session, metric=f"winding_temp_{p}_c", ticket_policy=group) for p in "abc"]
    alarms = [insert_alarm(conn, rule, place, subject=f"point:{i}") for i, rule in enumerate(phases)]
    open_for_alarms(conn, alarms[:1])
    open_for_alarms(conn, alarms[1:])  # the other phases cross in a later batch
    [t] = tickets_of(session, place.estate_id)
    assert t.source_key == f"alarm:transformer.winding_temp:device:{place.sensor_id}"
    assert {ticket_of_alarm(session, a) for a in alarms} == {t.id}
    assert [e.action for e in service.events(session, t.id)] == ["opened", "alarm_attached", "alarm_attached"]


def override(session: Session, rule: int, scope: str, scope_id: int, policy: dict[str, object]) -> None:
    session.add(AlarmRuleOverride(rule_id=rule, scope=scope, scope_id=scope_id, ticket_policy=policy))
    session.flush()


def test_overrides_device_beats_room_beats_estate(session: Session, place: Place) -> None:
    conn = session.connection()
    rule = make_rule(session, ticket_policy={"category": "fire"})
    override(session, rule, "estate", place.estate_id, {"priority": {"alarm": "urgent"}})
    a = insert_alarm(conn, rule, place, subject="s:1")
    open_for_alarms(conn, [a])
    override(session, rule, "room", place.room_id, {"priority": {"alarm": "normal"}, "min_severity": "warning"})
    b = insert_alarm(conn, rule, place, subject="s:2", severity="warning")
    open_for_alarms(conn, [b])
    override(session, rule, "device", place.sensor_id, {"priority": "minor"})
    c = insert_alarm(conn, rule, place, subject="s:3")
    open_for_alarms(conn, [c])
    got = {
        t.source_key.rsplit(":", 1)[1]: (t.priority, t.category)
        for t in tickets_of(session, place.estate_id)
        if t.source_key
    }
    # estate: urgent; room: warnings open, alarm → normal (warning keeps its default, minor); device: minor.
    assert got == {"1": ("urgent", "fire"), "2": ("minor", "fire"), "3": ("minor", "fire")}


def test_vacant_flow_closes_the_valve_where_there_is_one(session: Session, place: Place) -> None:
    conn = session.connection()
    rule = make_rule(
        session,
        kind="meter",
        metric="register",
        room_kind=None,
        device_kind="hot_water_meter",
        params={"anomaly": "vacant_flow"},
        title_zh="空置房用水",
    )
    before = session.scalar(select(Outbox.id).order_by(Outbox.id.desc()).limit(1)) or 0
    with_valve = insert_alarm(conn, rule, place, device_id=place.valve_meter_id)
    without = insert_alarm(conn, rule, place, device_id=place.plain_meter_id)
    open_for_alarms(conn, [with_valve, without])
    rows = session.scalars(select(Outbox).where(Outbox.id > before)).all()
    assert len(rows) == 1
    [cmd] = rows
    valve_ticket = next(t for t in tickets_of(session, place.estate_id) if t.device_id == place.valve_meter_id)
    assert valve_ticket.category == "hot_water"
    assert valve_ticket.unit_id == place.unit_id
    # §4, vacant-unit water: valve closed remotely → on site the same day; no remote valve → within 2 h.
    assert (valve_ticket.clock_kind, valve_ticket.on_site_due_at) == ("meter_vacant", same_day_due(NOW))
    plain_ticket = next(t for t in tickets_of(session, place.estate_id) if t.device_id == place.plain_meter_id)
    assert (plain_ticket.clock_kind, plain_ticket.on_site_due_at) == ("meter_vacant_manual", NOW + timedelta(hours=2))
    assert valve_ticket.resolve_due_at == plain_ticket.resolve_due_at == same_day_due(NOW)
    assert cmd.topic == f"steward/{place.code}/down/{place.code.upper()}-MV/valve"
    assert cmd.expires_at == NOW + timedelta(hours=1)
    p = cmd.payload
    assert (p["v"], p["action"], p["reason"], p["ticket"]) == (1, "close", "vacant_flow", valve_ticket.number)
    assert p["issued_at"] == NOW.isoformat()
    assert p["expires_at"] == (NOW + timedelta(hours=1)).isoformat()
    assert len(p["command_id"]) == 36


def test_two_concurrent_batches_open_one_ticket(fresh_database: str) -> None:
    engine = create_engine(fresh_database)
    try:
        with Session(engine) as s, s.begin():
            place = make_estate(s)
            rule = make_rule(s)
            conn = s.connection()
            # Two episodes of one (rule, subject), neither with a ticket yet (e.g. two ingest processes).
            a = insert_alarm(conn, rule, place, cleared=True)
            b = insert_alarm(conn, rule, place)
        started = threading.Event()
        results: dict[str, list[int]] = {}

        def batch(name: str, alarm: int, wait: bool) -> None:
            if wait:
                started.wait(10)
            with engine.begin() as c:
                results[name] = open_for_alarms(c, [alarm])
                if not wait:
                    started.set()
                    time.sleep(0.5)  # the other batch reaches its insert while this one is uncommitted

        threads = [
            threading.Thread(target=batch, args=("a", a, False)),
            threading.Thread(target=batch, args=("b", b, True)),
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        with Session(engine) as s:
            tickets = tickets_of(s, place.estate_id)
            assert len(tickets) == 1
            assert results == {"a": [tickets[0].id], "b": [tickets[0].id]}
            linked = s.scalars(select(Alarm.ticket_id).where(Alarm.id.in_([a, b]))).all()
            assert linked == [tickets[0].id, tickets[0].id]
            actions = s.scalars(select(TicketEvent.action).where(TicketEvent.ticket_id == tickets[0].id)).all()
            assert sorted(actions) == ["alarm_attached", "opened"]
    finally:
        engine.dispose()


# --- property: at most one open ticket per alarm episode key --------------------------------------------------------

Step = tuple[str, int]  # ("raise" | "clear" | "close", pair index)
steps = st.lists(
    st.tuples(st.sampled_from(["raise", "raise", "clear", "close"]), st.integers(0, 3)), min_size=1, max_size=25
)
severities = st.lists(st.sampled_from(["warning", "alarm", "critical"]), min_size=25, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=steps, sev=severities)
def test_never_two_open_tickets_per_source_key(engine: Engine, program: list[Step], sev: list[str]) -> None:
    with engine.connect() as conn, conn.begin() as tx:
        with Session(bind=conn) as s:
            place = make_estate(s)
            rules = [make_rule(s), make_rule(s)]
        pairs = [(rules[i % 2], f"point:{i // 2}") for i in range(4)]
        at = T0
        for n, (op, i) in enumerate(program):
            rule, subject = pairs[i]
            at += timedelta(minutes=1)
            if op == "raise":
                alarm = NewAlarm(
                    rule_id=rule,
                    subject=subject,
                    estate_id=place.estate_id,
                    severity=sev[n],
                    raised_at=at,
                    device_id=place.sensor_id,
                )
                insert_alarms(conn, [alarm], on_raised=open_for_alarms)
            elif op == "clear":
                clear_open(conn, rule, [subject], at)
            else:
                conn.execute(
                    text("UPDATE tickets SET status = 'closed' WHERE source_key = :k AND status <> 'closed'"),
                    {"k": f"alarm:{rule}:{subject}"},
                )
            counts = conn.execute(
                text(
                    "SELECT source_key, count(*) FROM tickets WHERE estate_id = :e AND status <> 'closed' "
                    "GROUP BY source_key"
                ),
                {"e": place.estate_id},
            ).all()
            assert all(c == 1 for _, c in counts), counts
            # Every open alarm at or above the default threshold has a ticket.
            orphans = conn.execute(
                text(
                    "SELECT count(*) FROM alarms WHERE estate_id = :e AND state <> 'cleared' "
                    "AND severity <> 'warning' AND ticket_id IS NULL"
                ),
                {"e": place.estate_id},
            ).scalar_one()
            assert orphans == 0
        tx.rollback()
