"""The ticket lifecycle against PostgreSQL: timestamps, events, transitions, numbers, source keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import Ticket, TicketEvent
from tests.support.world import T0, Place, make_estate, make_staff
from tickets import service


def m(n: int) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    clock.set_clock(lambda: T0)
    yield
    clock.reset_clock()


@pytest.fixture
def place(session: Session) -> Place:
    return make_estate(session)


def report(session: Session, place: Place, **kw: object) -> Ticket:
    values: dict[str, object] = {
        "estate_id": place.estate_id,
        "source": "resident",
        "category": "hot_water",
        "priority": "normal",
        "title": "热水不热",
        "received_by": "steward-1",
        "unit_id": place.unit_id,
        "reporter_name": "张三丰",
        "reporter_phone": "13812345678",
    }
    values.update(kw)
    return service.open_ticket(session, **values)  # type: ignore[arg-type]


def actions(session: Session, ticket: Ticket) -> list[tuple[str, str | None, str | None]]:
    return [(e.action, e.from_status, e.to_status) for e in service.events(session, ticket.id)]


def test_full_lifecycle_records_every_step(session: Session, place: Place) -> None:
    engineer = make_staff(session, place)
    t = report(session, place)
    assert t.number.startswith("GD20261126-")
    assert len(t.number) == len("GD20261126-0001")
    assert (t.status, t.received_at, t.on_site_due_at) == ("received", T0, T0 + m(15))
    assert t.resolve_due_at == T0 + timedelta(days=2)

    service.dispatch(session, t, engineer, "steward-1", at=T0 + m(1))
    service.accept(session, t, "eng", at=T0 + m(2))
    service.arrive_on_site(session, t, "eng", at=T0 + m(12))
    service.resolve(
        session,
        t,
        "eng",
        work_done="更换温控阀",
        parts="温控阀 x1",
        labour_minutes=45,
        resident_signoff=True,
        at=T0 + m(60),
    )
    # Hot water: callback the same local day (23:59 Shanghai = 15:59 UTC).
    assert t.callback_due_at == datetime(2026, 11, 26, 15, 59, tzinfo=UTC)
    service.record_callback(session, t, "steward-1", "in_person", 5, "满意", at=T0 + m(120))
    service.close(session, t, "steward-1", at=T0 + m(121))

    assert (t.assignee_id, t.dispatched_by, t.dispatched_at) == (engineer, "steward-1", T0 + m(1))
    assert (t.accepted_at, t.on_site_at, t.resolved_at) == (T0 + m(2), T0 + m(12), T0 + m(60))
    assert (t.work_done, t.parts, t.labour_minutes, t.resident_signoff) == ("更换温控阀", "温控阀 x1", 45, True)
    assert (t.callback_by, t.callback_channel, t.satisfaction, t.callback_at) == (
        "steward-1",
        "in_person",
        5,
        T0 + m(120),
    )
    assert (t.status, t.closed_at) == ("closed", T0 + m(121))
    assert actions(session, t) == [
        ("opened", None, "received"),
        ("dispatched", "received", "dispatched"),
        ("accepted", "dispatched", "accepted"),
        ("on_site", "accepted", "on_site"),
        ("resolved", "on_site", "resolved"),
        ("callback", "resolved", "callback_done"),
        ("closed", "callback_done", "closed"),
    ]
    assert [e.at for e in service.events(session, t.id)][-1] == T0 + m(121)


@pytest.mark.parametrize(
    ("steps", "bad"),
    [
        ([], "accept"),
        ([], "resolve"),
        ([], "callback"),
        (["dispatch"], "resolve"),
        (["dispatch", "accept", "on_site"], "close"),
        (["dispatch", "accept", "on_site", "resolve"], "on_site"),
        (["dispatch", "accept"], "reopen"),
    ],
)
def test_invalid_transitions_are_conflicts(session: Session, place: Place, steps: list[str], bad: str) -> None:
    engineer = make_staff(session, place)
    t = report(session, place)
    do = {
        "dispatch": lambda: service.dispatch(session, t, engineer, "s"),
        "accept": lambda: service.accept(session, t, "e"),
        "on_site": lambda: service.arrive_on_site(session, t, "e"),
        "resolve": lambda: service.resolve(session, t, "e", work_done="done"),
        "callback": lambda: service.record_callback(session, t, "s", "phone", 4),
        "close": lambda: service.close(session, t, "s"),
        "reopen": lambda: service.reopen(session, t, "s", "漏水"),
    }
    for step in steps:
        do[step]()
    before = t.status
    with pytest.raises(Conflict):
        do[bad]()
    assert t.status == before


def test_resident_tickets_need_a_callback_before_closing_alarm_tickets_do_not(session: Session, place: Place) -> None:
    engineer = make_staff(session, place)
    for source, phone, closes in (("resident", "13812345678", False), ("manual", None, True)):
        t = report(session, place, source=source, reporter_phone=phone, reporter_name=None)
        service.dispatch(session, t, engineer, "s")
        service.arrive_on_site(session, t, "e")  # straight from dispatched counts as accepted
        assert t.accepted_at == t.on_site_at
        service.resolve(session, t, "e", work_done="修好")
        if closes:
            assert t.callback_due_at is None
            service.close(session, t, "s")
        else:
            with pytest.raises(Conflict):
                service.close(session, t, "s")


def test_cancelling_an_unstarted_ticket_needs_a_reason(session: Session, place: Place) -> None:
    t = report(session, place)
    with pytest.raises(Conflict):
        service.close(session, t, "s")
    service.close(session, t, "s", reason="业主重复报修")
    assert actions(session, t)[-1] == ("cancelled", "received", "closed")


def test_numbers_run_per_day(session: Session, place: Place) -> None:
    a, b = report(session, place), report(session, place)
    assert int(b.number.split("-")[1]) == int(a.number.split("-")[1]) + 1
    next_day = report(session, place, received_at=T0 + timedelta(days=1))
    assert next_day.number.startswith("GD20261127-")


def test_a_taken_source_key_returns_the_open_ticket(session: Session, place: Place) -> None:
    first = report(session, place, source="inspection", source_key="round:42", reporter_phone=None)
    again = report(session, place, source="inspection", source_key="round:42", reporter_phone=None)
    assert again.id == first.id
    service.close(session, first, "s", reason="巡检已完成")
    third = report(session, place, source="inspection", source_key="round:42", reporter_phone=None)
    assert third.id != first.id


def test_reopen_goes_back_to_the_assignee_and_restarts_the_clocks(session: Session, place: Place) -> None:
    engineer = make_staff(session, place)
    t = report(session, place, category="electrical")
    service.dispatch(session, t, engineer, "s")
    service.arrive_on_site(session, t, "e")
    service.resolve(session, t, "e", work_done="复位")
    service.record_callback(session, t, "s", "phone", 2, "还是跳闸")
    later = T0 + timedelta(hours=5)
    service.reopen(session, t, "s", "仍然跳闸", at=later)
    assert (t.status, t.reopened_count, t.resolved_at, t.callback_at) == ("dispatched", 1, None, None)
    assert (t.on_site_due_at, t.resolve_due_at) == (later + m(20), later + timedelta(days=2))
    assert actions(session, t)[-1] == ("reopened", "callback_done", "dispatched")


def test_reopening_a_closed_ticket_whose_key_is_taken_is_a_conflict(session: Session, place: Place) -> None:
    old = report(session, place, source="inspection", source_key="round:7", reporter_phone=None)
    service.close(session, old, "s", reason="误报")
    new = report(session, place, source="inspection", source_key="round:7", reporter_phone=None)
    assert new.id != old.id
    with pytest.raises(Conflict):
        service.reopen(session, old, "s", "重新处理")
    service.close(session, new, "s", reason="合并")
    service.reopen(session, old, "s", "重新处理")
    assert old.status == "received"


def test_warranty_routing_moves_the_resolve_clock_to_the_developers_due_date(session: Session, place: Place) -> None:
    t = report(session, place, category="civil")
    due = T0 + timedelta(days=10)
    service.route_to_warranty(session, t, "s", party="开发商客服部", due_at=due, ref="LXD-001")
    assert (t.warranty_party, t.warranty_due_at, t.warranty_ref, t.resolve_due_at) == (
        "开发商客服部",
        due,
        "LXD-001",
        due,
    )
    assert actions(session, t)[-1] == ("warranty_routed", "received", "received")
    with pytest.raises(Conflict):
        service.route_to_warranty(session, t, "s", party="开发商", due_at=T0 - m(1))


def test_complaint_feedback_stops_its_clock(session: Session, place: Place) -> None:
    c = report(session, place, source="complaint", category="other", title="夜间噪音")
    assert (c.feedback_due_at, c.resolve_due_at, c.on_site_due_at) == (T0 + m(1440), T0 + timedelta(days=12), None)
    service.record_feedback(session, c, "s", "已联系施工方", at=T0 + m(300))
    service.record_feedback(session, c, "s", "施工方已整改", at=T0 + m(900))
    assert c.feedback_at == T0 + m(300)
    with pytest.raises(Conflict):
        service.record_feedback(session, report(session, place), "s", "不是投诉")


def test_comments_and_bad_input(session: Session, place: Place) -> None:
    t = report(session, place)
    event = service.add_comment(session, t, "s", "业主下午在家")
    assert (event.action, event.detail) == ("comment", {"text": "业主下午在家"})
    with pytest.raises(InvalidInput):
        report(session, place, category="plumbing")
    with pytest.raises(InvalidInput):
        service.record_callback(session, t, "s", "phone", 6)
    with pytest.raises(NotFound):
        service.get(session, 2_000_000_000)


def test_dispatch_only_to_active_staff_of_the_estate(session: Session, place: Place) -> None:
    other = make_estate(session)
    outsider = make_staff(session, other)
    t = report(session, place)
    with pytest.raises(NotFound):
        service.dispatch(session, t, outsider, "s")
    with pytest.raises(NotFound):
        service.dispatch(session, t, 2_000_000_000, "s")
    first, second = make_staff(session, place), make_staff(session, place, "supervisor")
    service.dispatch(session, t, first, "s")
    service.dispatch(session, t, second, "s")  # re-dispatch
    last = session.scalars(
        select(TicketEvent).where(TicketEvent.ticket_id == t.id).order_by(TicketEvent.id.desc())
    ).first()
    assert last is not None
    assert last.detail["previous_assignee_id"] == first
