"""Issue 14 part 6 under a pinned clock: in-person callbacks after outages and leaks, the monthly callback
report (figures recomputed here from the callbacks the test makes), and warranty routing to the developer
with the charge-back when the developer misses the due date."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.errors import Conflict
from storage.models import Building, Ticket, TicketChargeback, TicketEvent, Unit
from tests.support.world import T0, Place, make_estate
from tickets import callback_report, service, warranty
from tickets.warranty import Term

SH = ZoneInfo("Asia/Shanghai")


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
        "category": "water",
        "priority": "normal",
        "title": "报修",
        "received_by": "steward-1",
        "unit_id": place.unit_id,
        "reporter_phone": "13812345678",
    }
    values.update(kw)
    return service.open_ticket(session, **values)  # type: ignore[arg-type]


def worked(session: Session, t: Ticket, at: datetime) -> Ticket:
    # Dispatch and accept are test_service's; only the end of the lifecycle matters here.
    t.status = "dispatched"
    service.arrive_on_site(session, t, "eng", at=at)
    service.resolve(session, t, "eng", work_done="修复", at=at + timedelta(minutes=30))
    return t


# --- in-person callback after outages and leaks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "channel", "closes"),
    [
        ("outage", "in_person", True),
        ("outage", "phone", False),
        ("leak", "in_person", True),
        ("leak", "phone", False),
        ("leak", "wechat", False),
        (None, "phone", True),
        (None, "in_person", True),
    ],
)
def test_outages_and_leaks_close_after_an_in_person_callback_only(
    session: Session, place: Place, fault: str | None, channel: str, closes: bool
) -> None:
    t = worked(session, report(session, place, fault=fault), T0 + timedelta(minutes=10))
    at = T0 + timedelta(hours=2)
    if closes:
        service.record_callback(session, t, "li", channel, 5, at=at)
        service.close(session, t, "li", at=at)
        assert (t.status, t.callback_channel) == ("closed", channel)
        return
    with pytest.raises(Conflict, match="上门回访"):
        service.record_callback(session, t, "li", channel, 5, at=at)
    with pytest.raises(Conflict, match="回访"):
        service.close(session, t, "li", at=at)
    service.record_callback(session, t, "li", "in_person", 5, at=at)
    service.close(session, t, "li", at=at)
    assert t.status == "closed"


def test_a_platform_outage_ticket_is_called_back_too(session: Session, place: Place) -> None:
    t = worked(
        session,
        report(session, place, source="manual", reporter_phone=None, category="electrical", fault="outage"),
        T0 + timedelta(minutes=5),
    )
    assert service.needs_callback(t)
    assert t.callback_due_at is not None
    with pytest.raises(Conflict):
        service.close(session, t, "li", at=T0 + timedelta(hours=1))


# --- the monthly callback report -----------------------------------------------------------------------------


def test_monthly_report_figures(session: Session, place: Place) -> None:
    rng = random.Random(14)
    november = date(2026, 11, 1)
    start = datetime(2026, 11, 1, 0, 0, tzinfo=SH)
    made: list[tuple[str, int]] = []
    for i in range(23):
        t = worked(session, report(session, place, title=f"报修 {i}"), start + timedelta(days=i))
        channel = rng.choice(["in_person", "in_person", "in_person", "phone", "sms"])
        sat = rng.choice([5, 5, 5, 4, 3, 2, 1])
        service.record_callback(session, t, "li", channel, sat, at=start + timedelta(days=i, hours=3))
        made.append((channel, sat))
    # Outside the local month: 31 October 23:30 and 1 December 00:10 Shanghai (UTC would count them in).
    for at in (datetime(2026, 10, 31, 23, 30, tzinfo=SH), datetime(2026, 12, 1, 0, 10, tzinfo=SH)):
        t = worked(session, report(session, place), at - timedelta(hours=1))
        service.record_callback(session, t, "li", "phone", 1, at=at)
    # A callback before a reopen still counts; the second callback after it counts as well.
    t = worked(session, report(session, place), start + timedelta(days=25))
    service.record_callback(session, t, "li", "phone", 2, at=start + timedelta(days=25, hours=2))
    made.append(("phone", 2))
    service.reopen(session, t, "li", "又坏了", at=start + timedelta(days=26))
    worked(session, t, start + timedelta(days=26, hours=1))
    service.record_callback(session, t, "li", "in_person", 5, at=start + timedelta(days=26, hours=3))
    made.append(("in_person", 5))
    # Another estate's callbacks are not this estate's.
    other = make_estate(session)
    o = worked(session, report(session, other), start + timedelta(days=2))
    service.record_callback(session, o, "li", "phone", 1, at=start + timedelta(days=2, hours=1))

    r = callback_report.monthly(session, place.estate_id, november)
    total = len(made)
    in_person = sum(c == "in_person" for c, _ in made)
    satisfied = sum(s >= 3 for _, s in made)

    def pct(a: int, b: int) -> Decimal:
        return (Decimal(100 * a) / b).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)

    assert (r.callbacks, r.in_person, r.satisfied) == (total, in_person, satisfied)
    assert r.by_channel["phone"] == sum(c == "phone" for c, _ in made)
    assert r.in_person_pct == pct(in_person, total)
    assert r.satisfaction_pct == pct(satisfied, total)
    assert r.in_person_met == (pct(in_person, total) >= 70)
    assert r.satisfaction_met == (pct(satisfied, total) >= 95)


def test_a_month_without_callbacks_has_no_shares(session: Session, place: Place) -> None:
    r = callback_report.monthly(session, place.estate_id, date(2026, 6, 1))
    assert (r.callbacks, r.in_person_pct, r.satisfaction_pct, r.in_person_met) == (0, None, None, None)


def test_targets_are_met_at_exactly_70_and_95(session: Session, place: Place) -> None:
    start = datetime(2026, 11, 1, 9, 0, tzinfo=SH)
    for i in range(20):
        t = worked(session, report(session, place), start + timedelta(hours=i))
        channel = "in_person" if i < 14 else "phone"  # 14 / 20 = 70 %
        service.record_callback(
            session, t, "li", channel, 1 if i == 0 else 5, at=start + timedelta(hours=i, minutes=50)
        )
    r = callback_report.monthly(session, place.estate_id, date(2026, 11, 1))
    assert (r.in_person_pct, r.satisfaction_pct) == (Decimal("70.0"), Decimal("95.0"))
    assert (r.in_person_met, r.satisfaction_met) == (True, True)


# --- warranty periods ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handover", "term", "end"),
    [
        (date(2024, 6, 1), Term(years=5), date(2029, 6, 1)),
        (date(2024, 2, 29), Term(years=2), date(2026, 2, 28)),
        # Handed over in summer: the 2024/25 and 2025/26 seasons; the warranty ends with 15 March 2026.
        (date(2024, 6, 1), Term(heating_seasons=2), date(2026, 3, 16)),
        # Handed over in the middle of a season: that season is not counted.
        (date(2024, 12, 1), Term(heating_seasons=2), date(2027, 3, 16)),
        (date(2024, 11, 15), Term(heating_seasons=1), date(2025, 3, 16)),
    ],
)
def test_expiry(handover: date, term: Term, end: date) -> None:
    assert warranty.expires_on(handover, term) == end


def test_defaults_and_item_mapping() -> None:
    defaults = {
        "roof_waterproofing": Term(years=5),
        "heating": Term(heating_seasons=2),
        "decoration": Term(years=2),
        "mep": Term(years=2),
    }
    assert defaults == warranty.DEFAULT_TERMS
    assert warranty.item_for("civil", "leak") == "roof_waterproofing"
    assert warranty.item_for("civil", None) == "decoration"
    assert warranty.item_for("heating", None) == "heating"
    assert warranty.item_for("water", "leak") == "mep"
    assert warranty.item_for("lift", None) is None


def _events(session: Session, t: Ticket, action: str) -> list[TicketEvent]:
    return [e for e in service.events(session, t.id) if e.action == action]


@pytest.mark.parametrize(
    ("category", "fault", "handover", "routed"),
    [
        ("civil", "leak", date(2022, 1, 1), True),  # waterproofing: 5 years, to 2027-01-01
        ("civil", None, date(2022, 1, 1), False),  # decoration: 2 years, ended 2024-01-01
        ("civil", None, date(2025, 1, 1), True),
        ("electrical", None, date(2024, 11, 27), True),  # MEP 2 years: covered to 26 Nov 2026 inclusive ...
        ("electrical", None, date(2024, 11, 26), False),  # ... the 2nd anniversary of the handover is past it
        ("heating", None, date(2024, 6, 1), False),  # seasons 24/25 and 25/26: over on 2026-03-16
        ("heating", None, date(2025, 6, 1), True),  # seasons 25/26, 26/27
        ("lift", None, date(2026, 1, 1), False),  # not the developer's warranty
    ],
)
def test_routing_by_item_and_period(
    session: Session, place: Place, category: str, fault: str | None, handover: date, routed: bool
) -> None:
    warranty.set_handover(session, place.estate_id, handover_on=handover, developer="绿苑置业", now=T0)
    t = report(session, place, category=category, fault=fault)
    if not routed:
        assert (t.warranty_party, _events(session, t, "warranty_routed")) == (None, [])
        return
    assert (t.warranty_party, t.warranty_due_at, t.resolve_due_at) == (
        "绿苑置业",
        T0 + timedelta(days=7),
        T0 + timedelta(days=7),
    )
    (e,) = _events(session, t, "warranty_routed")
    assert (e.actor, e.detail["party"], e.detail["automatic"]) == ("system", "绿苑置业", True)


def test_building_handover_beats_the_estates_and_terms_are_editable(session: Session, place: Place) -> None:
    warranty.set_handover(session, place.estate_id, handover_on=date(2020, 1, 1), developer="老开发商", now=T0)
    assert report(session, place, category="electrical").warranty_party is None
    building_id = session.scalar(select(Unit.building_id).where(Unit.id == place.unit_id))
    warranty.set_handover(
        session,
        place.estate_id,
        building_id=building_id,
        handover_on=date(2025, 9, 1),
        developer="二期开发商",
        response_days=3,
        now=T0,
    )
    t = report(session, place, category="electrical")
    assert (t.warranty_party, t.warranty_due_at) == ("二期开发商", T0 + timedelta(days=3))
    # A ticket of another building takes the estate's date.
    b2 = Building(estate_id=place.estate_id, code="2", name="2幢")
    session.add(b2)
    session.flush()
    u2 = Unit(building_id=b2.id, code="2-1-101", floor=1, area_m2=Decimal("80"))
    session.add(u2)
    session.flush()
    assert report(session, place, category="electrical", unit_id=u2.id).warranty_party is None
    # The estate edits MEP down to 1 year: the building's ticket is no longer covered.
    warranty.set_term(session, place.estate_id, "mep", years=1, actor="chen", now=T0)
    assert report(session, place, category="electrical").warranty_party is None
    assert warranty.terms(session, place.estate_id)["mep"] == Term(years=1)


@pytest.mark.parametrize(
    "kw",
    [
        {"priority": "urgent"},  # flooding, power loss: engineering works at once
        {"source": "complaint"},
        {"source": "alarm", "reporter_phone": None},
    ],
)
def test_urgent_complaints_and_platform_tickets_are_not_routed(session: Session, place: Place, kw: dict) -> None:
    warranty.set_handover(session, place.estate_id, handover_on=date(2026, 1, 1), developer="绿苑置业", now=T0)
    assert report(session, place, category="electrical", **kw).warranty_party is None


def test_a_missed_due_date_bills_the_developer_once(session: Session, place: Place) -> None:
    warranty.set_handover(session, place.estate_id, handover_on=date(2026, 1, 1), developer="绿苑置业", now=T0)
    late = report(session, place, category="electrical")
    done = report(session, place, category="electrical")
    due = T0 + timedelta(days=7)
    # The developer repairs `done` in time.
    done.status = "dispatched"
    service.arrive_on_site(session, done, "dev", at=due - timedelta(hours=2))
    service.resolve(session, done, "dev", work_done="开发商维修", at=due - timedelta(hours=1))

    assert warranty.charge_missed(session, due - timedelta(seconds=1)) == []
    assert warranty.charge_missed(session, due) == [late.id]
    assert warranty.charge_missed(session, due + timedelta(minutes=1)) == []  # once
    rows = warranty.chargebacks(session, [place.estate_id])
    assert [(c.ticket_id, c.party, c.warranty_item, c.due_at, c.missed_at) for c in rows] == [
        (late.id, "绿苑置业", "mep", due, due)
    ]
    (e,) = _events(session, late, "warranty_missed")
    assert e.detail["chargeback_id"] == rows[0].id
    assert session.scalar(select(TicketChargeback.id).where(TicketChargeback.ticket_id == done.id)) is None
