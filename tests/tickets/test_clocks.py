"""Issue 14 part 1: every row of domain-defaults §4's two clock tables, with its escalation route, at each of
the INSTANTS (tests/support/clock.py: 00:30, 07:59, 12:00, 20:01, 23:59 and the last minute of a quarter).

The expected times are worked out here from §4 (minutes after receipt, `same_day_due` for "same day"), not
from tickets.sla, and time is an input throughout: tickets are received at the pinned instant and the
escalation run is called at chosen minutes, never at the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.errors import Conflict
from storage.models import NotificationDelivery, Ticket, TicketEvent
from tests.support.clock import INSTANTS, FrozenClock, local_2359_after, pinned, same_day_due
from tests.support.world import Place, insert_alarm, make_estate, make_rule, make_staff
from tickets import service, sla
from tickets.const import PRIORITY_RANK, ClockKind, EscalationRoute
from tickets.escalation import escalate_due
from tickets.from_alarms import open_for_alarms

Due = Callable[[datetime], datetime | None]


def m(n: int) -> timedelta:
    return timedelta(minutes=n)


def after(minutes: int) -> Due:
    return lambda r: r + m(minutes)


def never(_: datetime) -> None:
    return None


H, DAY = 60, 1440
ENGINEERING = {1: "supervisor", 2: "manager"}  # 工程主管 at the breach → 项目经理 + 30 min
SUPERVISOR_ONLY = {1: "supervisor"}  # 工程主管
CUSTOMER_SERVICE = {1: "cs_supervisor", 2: "service_manager"}  # 客服主管 → 服务中心经理
# Short names for the tables below: minutes after receipt, §4's "same day", no such clock, the routes.
A, SD, N, ENG, SUP, CS = after, same_day_due, never, ENGINEERING, SUPERVISOR_ONLY, CUSTOMER_SERVICE


@dataclass(frozen=True)
class Row:
    """One row of a §4 table: the ticket as opened, its clocks and who a breach goes to."""

    name: str
    source: str
    category: str
    priority: str
    clock_kind: str | None
    on_site: Due
    resolve: Due
    feedback: Due
    continuous: bool
    route: dict[int, str]


# §4, first table: resident reports (报修), complaints and patrol findings.
RESIDENT = [
    Row("hot-water-15min", "resident", "hot_water", "normal", None, A(15), A(2 * DAY), N, False, ENG),
    Row("general-20min-2days", "resident", "electrical", "normal", None, A(20), A(2 * DAY), N, False, ENG),
    Row("urgent-continuous", "resident", "water", "urgent", None, A(20), A(4 * H), N, True, ENG),
    Row("minor-same-day", "resident", "water", "minor", None, A(20), SD, N, False, ENG),
    Row("complaint-24h-12days", "complaint", "other", "normal", None, N, A(12 * DAY), A(DAY), False, CS),
    Row("patrol-one-week", "patrol", "civil", "normal", None, N, A(7 * DAY), N, False, ENG),
]  # fmt: skip

# §4, second table: tickets the platform opens by itself take their clock from what was found.
PLATFORM = [
    Row("critical-20min-continuous", "alarm", "fire", "urgent", "critical", A(20), A(4 * H), N, True, ENG),
    Row("alarm-2h-same-day", "alarm", "electrical", "high", "alarm", A(2 * H), SD, N, False, SUP),
    Row("warning-24h-2days", "alarm", "electrical", "minor", "warning", A(DAY), A(2 * DAY), N, False, SUP),
    Row("missed-round-24h-2days", "inspection", "heating", "normal", None, A(DAY), A(2 * DAY), N, False, SUP),
    Row("vacant-water-valve-closed", "alarm", "water", "high", "meter_vacant", SD, SD, N, False, SUP),
    Row("vacant-water-no-valve-2h", "alarm", "water", "high", "meter_vacant_manual", A(2 * H), SD, N, False, SUP),
    Row("meter-anomaly-2days", "alarm", "meter", "normal", "meter", N, A(2 * DAY), N, False, SUP),
]  # fmt: skip

ROWS = RESIDENT + PLATFORM
ROW_IDS = [r.name for r in ROWS]
INSTANT_IDS = list(INSTANTS)


# --- the tables as pure functions, at every instant ---------------------------------------------------------


@pytest.mark.parametrize("at", list(INSTANTS.values()), ids=INSTANT_IDS)
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_each_row_clocks(row: Row, at: datetime) -> None:
    kind = row.clock_kind or service.DEFAULT_CLOCK_KIND.get(row.source)  # type: ignore[call-overload]
    due = sla.due_times(row.category, row.priority, row.source, at, "Asia/Shanghai", clock_kind=kind)
    assert due.on_site == row.on_site(at)
    assert due.resolve == row.resolve(at)
    assert due.feedback == row.feedback(at)
    assert due.continuous is row.continuous
    assert sla.route_levels(sla.escalation_route(row.source, kind)) == row.route


@pytest.mark.parametrize("at", list(INSTANTS.values()), ids=INSTANT_IDS)
def test_platform_clocks_ignore_priority_and_category(at: datetime) -> None:
    """A silent sensor is not a resident at the door: the row decides, not the hot-water 15 minutes."""
    for kind in ClockKind:
        rows = {
            sla.due_times(category, priority, "alarm", at, "Asia/Shanghai", clock_kind=kind)
            for category in ("hot_water", "electrical")
            for priority in PRIORITY_RANK
        }
        assert len(rows) == 1, kind


@pytest.mark.parametrize(
    ("local", "due_local"),
    [
        ((0, 30), (26, 23, 59)),
        ((12, 0), (26, 23, 59)),
        ((19, 59), (26, 23, 59)),
        ((20, 0), (27, 12, 0)),  # received at 20:00 or later: the next day's noon, not 23:59
        ((20, 1), (27, 12, 0)),
        ((23, 59), (27, 12, 0)),
    ],
    ids=lambda v: f"{v[0]:02d}{v[1]:02d}" if len(v) == 2 else f"{v[0]}d{v[1]:02d}{v[2]:02d}",
)
def test_same_day_after_2000_is_next_noon(local: tuple[int, int], due_local: tuple[int, int, int]) -> None:
    sh = INSTANTS["sh-1200"].tzinfo
    received = datetime(2026, 11, 26, *local, tzinfo=sh)
    expected = datetime(2026, 11, due_local[0], due_local[1], due_local[2], tzinfo=sh)
    assert sla.due_times("water", "minor", "resident", received, "Asia/Shanghai").resolve == expected
    assert sla.due_times("water", "high", "alarm", received, "Asia/Shanghai", clock_kind="alarm").resolve == expected
    vacant = sla.due_times("water", "high", "alarm", received, "Asia/Shanghai", clock_kind="meter_vacant")
    assert vacant.on_site == vacant.resolve == expected


def test_same_day_after_2000_crosses_the_year() -> None:
    at = INSTANTS["sh-q4-end-2359"]  # 2026-12-31 23:59 local
    due = sla.due_times("water", "minor", "resident", at, "Asia/Shanghai").resolve
    assert due == datetime(2027, 1, 1, 12, 0, tzinfo=at.tzinfo)


@pytest.mark.parametrize("at", list(INSTANTS.values()), ids=INSTANT_IDS)
def test_callback_row_same_day_for_hot_water_else_24h(at: datetime) -> None:
    """§4 callback row (回访): the same day for hot water, within 24 h otherwise."""
    assert sla.callback_due("hot_water", at, "Asia/Shanghai") == local_2359_after(at)
    assert sla.callback_due("electrical", at, "Asia/Shanghai") == at + m(DAY)


def test_minor_does_not_rank_below_general() -> None:
    """小修 is due the same day, 一般 within 2 days: minor ranks above normal (raising, board order)."""
    assert PRIORITY_RANK["urgent"] > PRIORITY_RANK["high"] > PRIORITY_RANK["minor"] > PRIORITY_RANK["normal"]
    from dashboards.tickets_view import PRIORITY_ORDER

    assert sorted(PRIORITY_RANK, key=PRIORITY_ORDER.__getitem__) == ["urgent", "high", "minor", "normal"]
    for at in INSTANTS.values():  # and its deadline is indeed the tighter one at every hour
        minor = sla.due_times("water", "minor", "resident", at, "Asia/Shanghai").resolve
        general = sla.due_times("water", "normal", "resident", at, "Asia/Shanghai").resolve
        assert minor is not None
        assert general is not None
        assert minor < general


# --- escalation routes through the worker's escalate_due, at every instant ------------------------------------


@pytest.fixture
def t0(at_instant: FrozenClock) -> datetime:
    return at_instant()


def open_row(session: Session, place: Place, row: Row) -> Ticket:
    return service.open_ticket(
        session,
        estate_id=place.estate_id,
        source=row.source,
        category=row.category,
        priority=row.priority,
        title=f"§4 {row.name}",
        received_by="system" if row.source in ("alarm", "inspection") else "s",
        received_at=clock.now(),
        reporter_phone="13800000000" if row.source in ("resident", "complaint") else None,
        clock_kind=row.clock_kind,
    )


def mine(result: list[tuple[int, int]], ticket: Ticket) -> list[int]:
    """This test's escalations (the run escalates every breached ticket in the shared database)."""
    return [level for tid, level in result if tid == ticket.id]


def escalated(session: Session, ticket: Ticket) -> list[tuple[str, int, str]]:
    rows = session.scalars(
        select(TicketEvent.detail)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.action == "escalated")
        .order_by(TicketEvent.id)
    )
    return [(d["clock"], d["level"], d["notify_role"]) for d in rows]


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_each_row_escalates_on_its_route(session: Session, t0: datetime, row: Row) -> None:
    place = make_estate(session)
    t = open_row(session, place, row)
    assert (t.on_site_due_at, t.resolve_due_at, t.feedback_due_at) == (
        row.on_site(t0),
        row.resolve(t0),
        row.feedback(t0),
    )
    # The first clocks to breach (on site, feedback, resolve: a vacant-unit ticket's two fall together).
    dues = {"on_site": row.on_site(t0), "feedback": row.feedback(t0), "resolve": row.resolve(t0)}
    first = min(d for d in dues.values() if d is not None)
    breaching = sorted(c for c, d in dues.items() if d == first)
    assert mine(escalate_due(session, first - timedelta(seconds=1)), t) == []
    escalate_due(session, first)
    assert escalated(session, t) == [(c, 1, row.route[1]) for c in breaching]
    escalate_due(session, first + m(30))  # the step: level 2 where the route has one, nothing more otherwise
    assert escalated(session, t) == [(c, level, row.route[level]) for level in sorted(row.route) for c in breaching]
    assert t.escalation_level == max(row.route)


# Critical alarms keep the 20-minute clock (§4); every other platform row with an on-site clock is checked.
@pytest.mark.parametrize(
    "row", [r for r in PLATFORM if r.on_site(INSTANTS["sh-1200"]) and r.clock_kind != "critical"], ids=lambda r: r.name
)
def test_platform_tickets_do_not_escalate_on_the_resident_20_and_50_minutes(
    session: Session, t0: datetime, row: Row
) -> None:
    """The issue's complaint: a silent sensor or low power factor escalated at 20 and 50 minutes, day and night."""
    place = make_estate(session)
    t = open_row(session, place, row)
    assert mine(escalate_due(session, t0 + m(20)), t) == []
    assert mine(escalate_due(session, t0 + m(50)), t) == []
    assert escalated(session, t) == []


def test_complaint_notices_go_to_the_customer_service_line(session: Session, t0: datetime) -> None:
    """客服主管 has no staff account (no such role yet): the group message and the log name them; the
    服务中心经理 notice mails the estate's 项目经理 account; 工程主管 hears nothing of a complaint."""
    place = make_estate(session)
    from storage.models import StaffUser

    for role in ("supervisor", "manager"):
        user = session.get(StaffUser, make_staff(session, place, role))
        assert user is not None
        user.email = f"{role}-{place.code}@example.com"
    session.flush()
    complaint = next(r for r in RESIDENT if r.source == "complaint")
    t = open_row(session, place, complaint)
    escalate_due(session, t0 + m(DAY + 30))
    rows = session.scalars(
        select(NotificationDelivery)
        .where(NotificationDelivery.key.like(f"ticket:{t.id}:%"))
        .order_by(NotificationDelivery.id)
    ).all()
    level1 = [(d.channel, d.recipient) for d in rows if ":feedback:1:" in d.key]
    level2 = [(d.channel, d.recipient) for d in rows if ":feedback:2:" in d.key]
    assert sorted(level1) == [("log", "role:cs_supervisor"), ("wecom_robot", "role:cs_supervisor")]
    assert ("email", f"manager-{place.code}@example.com") in level2
    assert all(f"supervisor-{place.code}" not in d.recipient for d in rows)
    assert all("客服主管" in d.subject for d in rows if ":feedback:1:" in d.key)
    assert all("服务中心经理" in d.subject for d in rows if ":feedback:2:" in d.key)


def test_routes_are_named() -> None:
    assert sla.escalation_route("complaint", None) is EscalationRoute.customer_service
    assert sla.escalation_route("resident", None) is EscalationRoute.engineering
    assert sla.escalation_route("alarm", "critical") is EscalationRoute.engineering
    for kind in ClockKind:
        if kind is not ClockKind.critical:
            assert sla.escalation_route("alarm", kind) is EscalationRoute.engineering_supervisor


# --- alarms: the row by severity / anomaly, re-derived when the priority rises ----------------------------------


@pytest.mark.parametrize("at", list(INSTANTS.values()), ids=INSTANT_IDS)
def test_a_warning_ticket_that_turns_critical_gets_the_critical_clock_from_then(session: Session, at: datetime) -> None:
    place = make_estate(session)
    conn = session.connection()
    # One job per device (the policy's group), so the later critical alarm on another point joins the ticket.
    rule = make_rule(session, ticket_policy={"min_severity": "warning", "group": "winding"})
    with pinned(at) as frozen:
        open_for_alarms(conn, [insert_alarm(conn, rule, place, severity="warning", at=at)])
        t = session.scalars(select(Ticket).where(Ticket.estate_id == place.estate_id)).one()
        assert (t.clock_kind, t.priority) == ("warning", "minor")
        assert (t.on_site_due_at, t.resolve_due_at) == (at + m(DAY), at + m(2 * DAY))
        assert mine(escalate_due(session, at + m(50)), t) == []

        rise = frozen.advance(m(3 * H))
        critical = insert_alarm(conn, rule, place, severity="critical", subject="point:crit", at=rise)
        open_for_alarms(conn, [critical])
    session.refresh(t)
    # Twenty minutes from when it became critical, not a breach three hours old; work is continuous.
    assert (t.clock_kind, t.priority) == ("critical", "urgent")
    assert (t.on_site_due_at, t.resolve_due_at) == (rise + m(20), rise + m(4 * H))
    raised = session.scalars(
        select(TicketEvent.detail).where(TicketEvent.ticket_id == t.id, TicketEvent.action == "priority_raised")
    ).one()
    assert (raised["from"], raised["to"], raised["clock_kind"]) == ("minor", "urgent", "critical")
    # … and now on the critical route: 工程主管 at the breach, 项目经理 30 minutes later.
    escalate_due(session, rise + m(50))
    assert escalated(session, t) == [("on_site", 1, "supervisor"), ("on_site", 2, "manager")]


def test_an_alarm_turning_critical_never_moves_a_clock_later(session: Session) -> None:
    at = INSTANTS["sh-2001"]
    place = make_estate(session)
    conn = session.connection()
    rule = make_rule(session, ticket_policy={"group": "winding"})
    with pinned(at) as frozen:
        open_for_alarms(conn, [insert_alarm(conn, rule, place, severity="alarm", at=at)])
        t = session.scalars(select(Ticket).where(Ticket.estate_id == place.estate_id)).one()
        assert (t.on_site_due_at, t.resolve_due_at) == (at + m(2 * H), same_day_due(at))  # 22:01; noon tomorrow
        rise = frozen.advance(m(110))  # 21:51: critical's 20 minutes would be 22:11, later than 22:01
        open_for_alarms(conn, [insert_alarm(conn, rule, place, severity="critical", subject="point:c", at=rise)])
    session.refresh(t)
    assert t.clock_kind == "critical"
    assert (t.on_site_due_at, t.resolve_due_at) == (at + m(2 * H), rise + m(4 * H))


@pytest.mark.parametrize(
    ("severity", "params", "device", "kind"),
    [
        ("critical", None, "sensor", "critical"),
        ("alarm", None, "sensor", "alarm"),
        ("warning", None, "sensor", "warning"),
        ("alarm", {"anomaly": "vacant_flow"}, "valve", "meter_vacant"),
        ("alarm", {"anomaly": "vacant_flow"}, "plain", "meter_vacant_manual"),
        ("warning", {"anomaly": "reverse_energy"}, "plain", "meter"),
        ("warning", {"anomaly": "stuck"}, "plain", "meter"),
        ("alarm", {"anomaly": "night_leak"}, "plain", "meter"),
        ("alarm", {"anomaly": "building_balance"}, "plain", "meter"),
        ("warning", {"anomaly": "reset_or_replacement"}, "plain", "meter"),
    ],
    ids=lambda v: v if isinstance(v, str) else (v or {}).get("anomaly", "-") if not isinstance(v, str) else v,
)
def test_alarm_tickets_take_their_row(
    session: Session, severity: str, params: dict[str, str] | None, device: str, kind: str
) -> None:
    place = make_estate(session)
    conn = session.connection()
    device_id = {"sensor": place.sensor_id, "valve": place.valve_meter_id, "plain": place.plain_meter_id}[device]
    rule = make_rule(session, params=params, ticket_policy={"min_severity": "warning"})
    at = INSTANTS["sh-1200"]
    with pinned(at):
        open_for_alarms(conn, [insert_alarm(conn, rule, place, severity=severity, device_id=device_id, at=at)])
    t = session.scalars(select(Ticket).where(Ticket.estate_id == place.estate_id)).one()
    assert t.clock_kind == kind
    expected = sla.platform_due_times(kind, at, "Asia/Shanghai")
    assert (t.on_site_due_at, t.resolve_due_at) == (expected.on_site, expected.resolve)


# --- patrol findings: a week unless a manager extends it -----------------------------------------------------


def test_a_manager_extends_a_patrol_finding(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    patrol = next(r for r in RESIDENT if r.source == "patrol")
    t = open_row(session, place, patrol)
    week = t0 + m(7 * DAY)
    assert t.resolve_due_at == week
    service.extend_patrol(session, t, "chen", due_at=t0 + m(10 * DAY), reason="等厂家配件", at=t0 + m(DAY))
    assert t.resolve_due_at == t0 + m(10 * DAY)
    assert mine(escalate_due(session, week), t) == []
    escalate_due(session, t0 + m(10 * DAY))
    assert escalated(session, t) == [("resolve", 1, "supervisor")]
    [ev] = session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == t.id, TicketEvent.action == "extended"))
    assert (ev.actor, ev.detail["reason"]) == ("chen", "等厂家配件")
    assert datetime.fromisoformat(ev.detail["from"]) == week


def test_only_patrol_findings_are_extended_and_only_later(session: Session, t0: datetime) -> None:
    place = make_estate(session)
    general = open_row(session, place, RESIDENT[1])
    with pytest.raises(Conflict):
        service.extend_patrol(session, general, "chen", due_at=t0 + m(10 * DAY), reason="x")
    patrol = open_row(session, place, next(r for r in RESIDENT if r.source == "patrol"))
    with pytest.raises(Conflict):
        service.extend_patrol(session, patrol, "chen", due_at=t0 + m(6 * DAY), reason="x")  # earlier than the week
