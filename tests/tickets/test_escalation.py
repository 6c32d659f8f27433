"""SLA escalation: supervisor at the breach minute, manager after the step, once per clock, safe with two workers.

Every test runs at each of the INSTANTS (tests/support/clock.py), received at that instant (``t0``)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core import clock
from storage.models import Ticket, TicketEvent
from tests.support.clock import FrozenClock, local_2359_after, same_day_due
from tests.support.world import Place, make_estate, make_staff
from tickets import service
from tickets.escalation import escalate_due


def m(n: int) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture(autouse=True)
def t0(at_instant: FrozenClock) -> datetime:
    """When the tickets are received: the instant, at which `core.clock` is pinned."""
    return at_instant()


def open_general(session: Session, place: Place, **kw: object) -> Ticket:
    values: dict[str, object] = {
        "estate_id": place.estate_id,
        "source": "manual",
        "category": "electrical",
        "priority": "normal",
        "title": "照明故障",
        "received_by": "s",
        "received_at": clock.now(),
    }
    values.update(kw)
    return service.open_ticket(session, **values)  # type: ignore[arg-type]


def mine(result: list[tuple[int, int]], ticket: Ticket) -> list[int]:
    return [level for tid, level in result if tid == ticket.id]


def escalations(session: Session, ticket: Ticket) -> list[dict[str, object]]:
    rows = session.scalars(
        select(TicketEvent.detail)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.action == "escalated")
        .order_by(TicketEvent.id)
    )
    return [dict(r) for r in rows]


def test_on_site_breach_escalates_to_supervisor_at_the_minute_then_manager(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    t = open_general(session, place)  # on site due t0+20
    assert mine(escalate_due(session, t0 + m(19) + timedelta(seconds=59)), t) == []
    assert mine(escalate_due(session, t0 + m(20)), t) == [1]
    assert (t.escalation_level, t.escalated_at) == (1, t0 + m(20))
    assert mine(escalate_due(session, t0 + m(20)), t) == []  # idempotent at the same minute
    assert mine(escalate_due(session, t0 + m(49)), t) == []
    assert mine(escalate_due(session, t0 + m(50)), t) == [2]
    assert mine(escalate_due(session, t0 + m(51)), t) == []
    assert t.escalation_level == 2
    details = escalations(session, t)
    assert [(d["clock"], d["level"], d["notify_role"]) for d in details] == [
        ("on_site", 1, "supervisor"),
        ("on_site", 2, "manager"),
    ]
    assert details[1]["breached_at"] == (t0 + m(50)).astimezone(UTC).isoformat()


def test_the_step_is_per_estate_and_urgent_escalates_at_its_breach(session: Session, t0: datetime) -> None:
    place = make_estate(session, policy={"sla": {"escalation_step_minutes": 10}})
    t = open_general(session, place, priority="urgent")  # on site due t0+20
    assert mine(escalate_due(session, t0 + m(20)), t) == [1]
    assert mine(escalate_due(session, t0 + m(30)), t) == [2]


def test_a_late_run_escalates_both_levels_at_once(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    t = open_general(session, place)
    assert mine(escalate_due(session, t0 + m(120)), t) == [1, 2]


def test_resolved_and_closed_clocks_stop(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    engineer = make_staff(session, place)
    t = open_general(session, place)
    service.dispatch(session, t, engineer, "s", at=t0 + m(1))
    service.arrive_on_site(session, t, "e", at=t0 + m(10))
    assert mine(escalate_due(session, t0 + m(25)), t) == []  # on site in time
    # The resolve clock (2 days) breaches next; then the callback clock is off: manual tickets have none.
    assert mine(escalate_due(session, t0 + timedelta(days=2)), t) == [1]
    assert escalations(session, t)[-1]["clock"] == "resolve"
    service.resolve(session, t, "e", work_done="修好", at=t0 + timedelta(days=2, minutes=5))
    assert mine(escalate_due(session, t0 + timedelta(days=5)), t) == []


def test_callback_and_complaint_feedback_clocks(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    engineer = make_staff(session, place)
    r = open_general(session, place, source="resident", reporter_phone="13800000000")
    service.dispatch(session, r, engineer, "s", at=t0)
    service.arrive_on_site(session, r, "e", at=t0 + m(5))
    service.resolve(session, r, "e", work_done="修好", at=t0 + m(30))
    assert r.callback_due_at == t0 + m(30) + timedelta(hours=24)
    assert mine(escalate_due(session, t0 + m(30) + timedelta(hours=24)), r) == [1]
    assert escalations(session, r)[-1]["clock"] == "callback"

    c = open_general(session, place, source="complaint", category="other")
    assert mine(escalate_due(session, t0 + m(1439)), c) == []
    assert mine(escalate_due(session, t0 + m(1440)), c) == [1]
    assert escalations(session, c)[-1]["clock"] == "feedback"


def test_a_minor_repair_breaches_at_its_same_day_deadline(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    engineer = make_staff(session, place)
    t = open_general(session, place, category="water", priority="minor")
    due = same_day_due(t0)  # 23:59 local of the day received; from 20:00 on, the next day's noon
    assert t.resolve_due_at == due
    assert t0 < due <= t0 + timedelta(days=1)
    service.dispatch(session, t, engineer, "s", at=t0)
    service.arrive_on_site(session, t, "e", at=t0 + m(5))
    assert mine(escalate_due(session, due - timedelta(seconds=1)), t) == []
    assert mine(escalate_due(session, due), t) == [1]
    assert escalations(session, t)[-1]["clock"] == "resolve"


def test_a_hot_water_callback_is_due_by_2359_local_of_the_day_resolved(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    engineer = make_staff(session, place)
    r = open_general(session, place, source="resident", category="hot_water", reporter_phone="13800000000")
    service.dispatch(session, r, engineer, "s", at=t0)
    service.arrive_on_site(session, r, "e", at=t0 + m(5))
    service.resolve(session, r, "e", work_done="修好", at=t0 + m(30))
    due = local_2359_after(t0 + m(30))
    assert r.callback_due_at == due
    assert mine(escalate_due(session, due - timedelta(seconds=1)), r) == []
    assert mine(escalate_due(session, due), r) == [1]
    assert escalations(session, r)[-1]["clock"] == "callback"


def test_two_workers_at_once_escalate_once(fresh_database: str, t0: datetime) -> None:
    engine = create_engine(fresh_database)
    try:
        with Session(engine) as s, s.begin():
            place = make_estate(s)
            ticket_id = open_general(s, place).id
        now = t0 + m(21)
        first_done, second_done = threading.Event(), threading.Event()
        results: dict[str, list[tuple[int, int]]] = {}

        def first() -> None:
            with Session(engine) as s, s.begin():
                results["first"] = escalate_due(s, now)
                first_done.set()
                second_done.wait(10)  # hold the row locks while the second worker runs

        def second() -> None:
            first_done.wait(10)
            with Session(engine) as s, s.begin():
                results["second"] = escalate_due(s, now)
            second_done.set()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        assert results == {"first": [(ticket_id, 1)], "second": []}
        with Session(engine) as s:
            assert escalate_due(s, now) == []  # and after the first committed, nothing is left to do
            count = s.scalars(select(TicketEvent.id).where(TicketEvent.action == "escalated")).all()
            assert len(count) == 1
    finally:
        engine.dispose()
