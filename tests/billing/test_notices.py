"""Renewal / restriction / suspension / restoration notices and the legal guards (billing/notices.py).

Each legal guard of domain-defaults §5 has its own test. Time is an input: every evaluation gets its
`now`, and `core.clock` is pinned for what approve/deliver/payments stamp. The calendar used here:
2026-11-30 is a Monday; the days around it are given explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from billing import charging, holidays, notices, service, supply
from billing.const import NoticeKind, NoticeStatus, SupplyState
from core.errors import Conflict
from storage.models import (
    AuditLog,
    BillingNotice,
    BillingSupplyChange,
    Device,
    Estate,
    NotificationDelivery,
    Outbox,
    Resident,
    StaffEstate,
    StaffUser,
)
from tests.billing.factory import Household, add_reading, flat_tariff, make_estate
from tests.support.clock import FrozenClock, pinned

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 1, 0, 0, tzinfo=SH)
DRAFTED = datetime(2026, 11, 11, 10, 0, tzinfo=SH)  # a Wednesday morning: the balance is spent
# What a restriction notice drafted and sent at DRAFTED states: ≥ 15 + 2 days on → Sat 28th → Mon 30th 09:00.
STATED = datetime(2026, 11, 30, 9, 0, tzinfo=SH)


def at(day: int, hh: int, mm: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=SH)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    with pinned(DRAFTED) as clock:
        yield clock


@dataclass
class World:
    estate_id: int
    hh: Household


def spent_household(session: Session, *, enabled: bool = True, valve: bool = True) -> World:
    """A household that used 0.2 m³ (¥5.00) a day for 10 days with nothing paid: balance −¥50.00."""
    estate_id, (hh,) = make_estate(session, 1)
    flat_tariff(session, estate_id, 2500)
    session.execute(update(Device).where(Device.id == hh.device_id).values(has_valve=valve))
    session.add(Resident(unit_id=hh.unit_id, name="张三丰", phone="13800000000", role="owner"))
    for day in range(0, 11):
        add_reading(session, hh.device_id, T0 + timedelta(days=day), Decimal("0.2") * day)
    charging.charge_meter(session, hh.device_id, DRAFTED)
    if enabled:
        estate = session.get(Estate, estate_id)
        assert estate is not None
        estate.policy = {**estate.policy, "supply_restriction_enabled": True}
    session.flush()
    return World(estate_id, hh)


def notices_of(session: Session, account_id: int, kind: NoticeKind | None = None) -> list[BillingNotice]:
    stmt = select(BillingNotice).where(BillingNotice.account_id == account_id).order_by(BillingNotice.id)
    if kind is not None:
        stmt = stmt.where(BillingNotice.kind == kind.value)
    return list(session.scalars(stmt))


def valve_rows(session: Session, device_id: int) -> list[Outbox]:
    return list(session.scalars(select(Outbox).where(Outbox.device_id == device_id).order_by(Outbox.id)))


def send_all(session: Session, frozen: FrozenClock, account_id: int, kind: NoticeKind) -> BillingNotice:
    (notice,) = [n for n in notices_of(session, account_id, kind) if n.status == NoticeStatus.draft.value]
    notices.approve(session, notice.id, actor="li-manager")
    return notices.send(session, notice.id, actor="wang-steward")


def restriction_notice_sent(session: Session, frozen: FrozenClock, world: World) -> BillingNotice:
    frozen.set(DRAFTED)
    notices.evaluate(session, world.estate_id, DRAFTED)
    notice = send_all(session, frozen, world.hh.account_id, NoticeKind.restriction)
    assert notice.effective_at == STATED
    return notice


# --- renewal notices --------------------------------------------------------------------------------------


def test_renewal_notice_below_fifty_yuan_with_the_fields_and_a_number(session: Session, frozen: FrozenClock) -> None:
    estate_id, (hh,) = make_estate(session, 1)
    flat_tariff(session, estate_id, 2500)
    session.add(Resident(unit_id=hh.unit_id, name="李四", phone="1", role="owner"))
    service.record_payment(
        session, account_id=hh.account_id, amount_fen=4_999, method="counter", idempotency_key="n1", actor="zhou"
    )
    result = notices.evaluate(session, estate_id, DRAFTED)
    (notice,) = result.drafted
    assert notice.kind == NoticeKind.renewal
    assert notice.status == NoticeStatus.draft
    assert notice.number == "RS-2026-000001"
    assert notice.template_version == "renewal.v1"
    assert notice.pay_by == date(2026, 11, 18)
    assert notice.balance_fen == 4_999
    body = notice.body
    for expected in ("热水续费通知书", "RS-2026-000001", "2026-11-11", "1-1-101", "李*", "¥49.99", "2026-11-18"):
        assert expected in body, expected
    assert "李四" not in body  # the holder is masked: notices may be posted publicly
    assert "合同约定" in body
    assert "¥25.00/m³" in body
    # Not twice for the same low-balance episode.
    assert notices.evaluate(session, estate_id, DRAFTED + timedelta(hours=1)).drafted == []


def test_renewal_below_30_days_of_use_then_second_below_7_days(session: Session, frozen: FrozenClock) -> None:
    estate_id, (hh,) = make_estate(session, 1)
    flat_tariff(session, estate_id, 2500)
    for day in range(0, 31):  # ¥5.00 a day for 30 days
        add_reading(session, hh.device_id, T0 + timedelta(days=day), Decimal("0.2") * day)
    now = T0 + timedelta(days=30, hours=10)
    frozen.set(now)
    charging.charge_meter(session, hh.device_id, now)
    service.record_payment(  # balance after 30 days of use: 30 000 − 15 000 = ¥150 = 30 days at ¥5 …
        session, account_id=hh.account_id, amount_fen=30_000, method="counter", idempotency_key="n2", actor="zhou"
    )
    assert notices.evaluate(session, estate_id, now).drafted == []  # … exactly 30 days: not below
    service.adjust(session, account_id=hh.account_id, amount_fen=-100, actor="li", reason="test", key="a1")
    (first,) = notices.evaluate(session, estate_id, now).drafted  # 29.8 days
    assert first.kind == NoticeKind.renewal
    assert "约可使用 29.8 天" in first.body
    service.adjust(session, account_id=hh.account_id, amount_fen=-11_500, actor="li", reason="test", key="a2")
    (second,) = notices.evaluate(session, estate_id, now).drafted  # ¥34.00: 6.8 days
    assert second.kind == NoticeKind.renewal_second
    assert "第二次" in second.body
    assert second.number == "RS-2026-000002"
    assert notices.evaluate(session, estate_id, now).drafted == []


def test_a_payment_committed_before_the_evaluation_prevents_the_notice(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    service.record_payment(
        session, account_id=world.hh.account_id, amount_fen=20_000, method="online", idempotency_key="p1", actor="web"
    )
    result = notices.evaluate(session, world.estate_id, DRAFTED)
    assert result.drafted == []
    assert result.changes == []
    assert result.held_back == {}
    assert notices_of(session, world.hh.account_id) == []


def test_a_top_up_that_leaves_the_balance_low_starts_a_new_episode(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session, enabled=False)
    (first,) = notices.evaluate(session, world.estate_id, DRAFTED).drafted
    assert first.kind == NoticeKind.renewal_second
    frozen.set(DRAFTED + timedelta(days=1))
    service.record_payment(
        session, account_id=world.hh.account_id, amount_fen=5_100, method="counter", idempotency_key="p2", actor="z"
    )
    (again,) = notices.evaluate(session, world.estate_id, DRAFTED + timedelta(days=1, hours=1)).drafted
    assert again.kind in (NoticeKind.renewal, NoticeKind.renewal_second)
    assert again.id != first.id


def test_numbers_run_per_estate_and_year(session: Session, frozen: FrozenClock) -> None:
    a = spent_household(session)
    b = spent_household(session)
    got_a = [n.number for n in notices.evaluate(session, a.estate_id, DRAFTED).drafted]
    got_b = [n.number for n in notices.evaluate(session, b.estate_id, DRAFTED).drafted]
    assert got_a == got_b == ["RS-2026-000001", "RS-2026-000002"]  # second renewal + restriction notice
    seq, number = notices.allocate_number(session, a.estate_id, 2027)
    assert (seq, number) == (1, "RS-2027-000001")


# --- the restriction switch and the notice periods --------------------------------------------------------


def test_switch_off_never_restricts_or_suspends_whatever_happens(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session, enabled=False)
    for day in range(0, 60):  # two months of daily evaluations at a working-day hour, balance ever lower
        now = DRAFTED + timedelta(days=day)
        frozen.set(now)
        result = notices.evaluate(session, world.estate_id, now)
        assert result.changes == []
        assert result.held_back == {world.hh.account_id: "switch_off"}
        for n in result.drafted:  # even notices approved and sent change nothing
            notices.approve(session, n.id, actor="li")
            notices.deliver(session, n, actor="li")
    kinds = {n.kind for n in notices_of(session, world.hh.account_id)}
    assert kinds == {NoticeKind.renewal_second.value}
    assert valve_rows(session, world.hh.device_id) == []
    assert supply.state_of(session, world.hh.account_id) == SupplyState.normal
    # A string "true" (a typo in the policy JSON) is not the switch.
    estate = session.get(Estate, world.estate_id)
    assert estate is not None
    estate.policy = {"supply_restriction_enabled": "true"}
    session.flush()
    assert notices.evaluate(session, world.estate_id, at(30, 10)).held_back == {world.hh.account_id: "switch_off"}


def test_restriction_states_its_date_and_waits_for_the_notice_period(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    result = notices.evaluate(session, world.estate_id, DRAFTED)
    kinds = sorted(n.kind for n in result.drafted)
    assert kinds == [NoticeKind.renewal_second.value, NoticeKind.restriction.value]
    (draft,) = notices_of(session, world.hh.account_id, NoticeKind.restriction)
    assert draft.effective_at == STATED
    assert "2026年11月30日 09:00" in draft.body
    assert "限供" in draft.body
    assert result.held_back == {world.hh.account_id: "no_notice"}
    # Drafted or approved is not sent: no restriction, however long it waits.
    late = at(10, 10, month=12)
    assert notices.evaluate(session, world.estate_id, late).held_back == {world.hh.account_id: "notice_not_sent"}
    notices.approve(session, draft.id, actor="li")
    assert notices.evaluate(session, world.estate_id, late).held_back == {world.hh.account_id: "notice_not_sent"}
    assert valve_rows(session, world.hh.device_id) == []


def test_a_notice_sent_less_than_15_days_before_its_date_is_refused(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    notices.evaluate(session, world.estate_id, DRAFTED)
    (draft,) = notices_of(session, world.hh.account_id, NoticeKind.restriction)
    notices.approve(session, draft.id, actor="li")
    frozen.set(STATED - timedelta(days=15, minutes=1) + timedelta(minutes=2))  # 14 days 23:59 ahead
    with pytest.raises(Conflict, match="15"):
        notices.send(session, draft.id, actor="wang")
    notices.cancel(session, draft.id, actor="li", reason="too late to send")
    # The next evaluation drafts a new one with a later date.
    now = frozen.t
    notices.evaluate(session, world.estate_id, now)
    fresh = [n for n in notices_of(session, world.hh.account_id, NoticeKind.restriction) if n.status == "draft"]
    assert len(fresh) == 1
    assert fresh[0].effective_at is not None
    assert fresh[0].effective_at >= now + timedelta(days=15)


def test_nothing_before_the_stated_date_then_restriction_with_a_valve_command(
    session: Session, frozen: FrozenClock
) -> None:
    world = spent_household(session)
    notice = restriction_notice_sent(session, frozen, world)
    for now in (at(27, 10), at(30, 8, 59)):  # a Friday before; the stated Monday before 09:00
        assert notices.evaluate(session, world.estate_id, now).held_back == {world.hh.account_id: "notice_period"}
    assert valve_rows(session, world.hh.device_id) == []
    now = at(30, 9, 30)
    result = notices.evaluate(session, world.estate_id, now)
    (change,) = result.changes
    assert (change.from_state, change.to_state) == (SupplyState.normal, SupplyState.restricted)
    (row,) = valve_rows(session, world.hh.device_id)
    assert row.payload["action"] == "close"
    assert row.payload["reason"] == "billing_restriction"
    assert row.topic.endswith(f"/down/{world.hh.device_code}/valve")
    assert row.expires_at == now + timedelta(hours=1)
    assert row.sent_at is None
    assert list(change.outbox_ids) == [row.id]
    recorded = session.get(BillingSupplyChange, change.change_id)
    assert recorded is not None
    assert recorded.notice_id == notice.id
    assert supply.state_of(session, world.hh.account_id) == SupplyState.restricted
    assert notice.executed_at == now


def test_a_close_command_never_outlives_the_day(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    restriction_notice_sent(session, frozen, world)
    notices.evaluate(session, world.estate_id, at(30, 19, 30))
    (row,) = valve_rows(session, world.hh.device_id)
    assert row.expires_at == at(30, 20, 0)


@pytest.mark.parametrize(("hour", "minute"), [(20, 0), (23, 30), (0, 30), (7, 59)])
def test_never_at_night(session: Session, frozen: FrozenClock, hour: int, minute: int) -> None:
    world = spent_household(session)
    restriction_notice_sent(session, frozen, world)
    now = at(30, hour, minute) if hour >= 20 else at(1, hour, minute, month=12)  # Monday evening / Tuesday dawn
    assert notices.evaluate(session, world.estate_id, now).held_back == {world.hh.account_id: "night"}
    assert valve_rows(session, world.hh.device_id) == []
    assert notices.evaluate(session, world.estate_id, at(1, 8, 0, month=12)).changes  # 08:00 is day


def test_never_on_a_weekend(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    notice = restriction_notice_sent(session, frozen, world)
    # Stated Monday the 30th; a notice whose date fell on a weekend still waits for a working day.
    notice.effective_at = at(28, 9)  # (as if stated for Saturday, sent ≥ 15 days before)
    notice.sent_at = at(28, 9) - timedelta(days=16)
    session.flush()
    for now in (at(28, 10), at(29, 15)):  # Saturday, Sunday
        assert notices.evaluate(session, world.estate_id, now).held_back == {world.hh.account_id: "weekend"}
    assert valve_rows(session, world.hh.device_id) == []
    assert notices.evaluate(session, world.estate_id, at(30, 10)).changes


def test_never_on_a_public_holiday(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    restriction_notice_sent(session, frozen, world)
    holidays.load_year(session, 2026, [holidays.HolidayDay(date(2026, 11, 30), "测试假日", False)], actor="test")
    assert notices.evaluate(session, world.estate_id, at(30, 10)).held_back == {world.hh.account_id: "holiday"}
    assert valve_rows(session, world.hh.device_id) == []
    assert notices.evaluate(session, world.estate_id, at(1, 10, month=12)).changes


def test_a_make_up_working_day_is_a_working_day(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    holidays.load_year(
        session,
        2026,
        [
            holidays.HolidayDay(date(2026, 11, 30), "测试假日", False),
            holidays.HolidayDay(date(2026, 12, 5), "测试调休上班", True),  # a Saturday
        ],
        actor="test",
    )
    # The date a notice states skips holidays too: drafted on the 11th, the Monday 30th is a holiday → Tue 1st.
    notices.evaluate(session, world.estate_id, DRAFTED)
    (draft,) = notices_of(session, world.hh.account_id, NoticeKind.restriction)
    assert draft.effective_at == at(1, 9, month=12)
    notices.approve(session, draft.id, actor="li")
    notices.send(session, draft.id, actor="wang")
    draft.effective_at = at(5, 9, month=12)  # as if it had stated the make-up Saturday
    session.flush()
    result = notices.evaluate(session, world.estate_id, at(5, 10, month=12))
    assert [c.to_state for c in result.changes] == [SupplyState.restricted]
    assert notices.evaluate(session, world.estate_id, at(6, 10, month=12)).held_back  # Sunday the 6th: not again


def test_never_for_a_vulnerable_household(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    restriction_notice_sent(session, frozen, world)
    supply.set_vulnerable(session, world.hh.account_id, True, actor="wang-steward", reason="独居老人，行动不便")
    result = notices.evaluate(session, world.estate_id, at(30, 10))
    assert result.held_back == {world.hh.account_id: "vulnerable"}
    assert result.changes == []
    assert valve_rows(session, world.hh.device_id) == []
    # A resident flagged vulnerable protects the household too.
    supply.set_vulnerable(session, world.hh.account_id, False, actor="wang-steward", reason="家属已同住")
    session.execute(update(Resident).where(Resident.unit_id == world.hh.unit_id).values(vulnerable=True))
    assert notices.evaluate(session, world.estate_id, at(30, 11)).held_back == {world.hh.account_id: "vulnerable"}
    audit = session.execute(
        select(AuditLog.actor, AuditLog.detail).where(AuditLog.action == "billing.vulnerable").order_by(AuditLog.id)
    ).all()
    assert [(a, d["vulnerable"]) for a, d in audit] == [("wang-steward", True), ("wang-steward", False)]


def test_property_fee_arrears_are_no_input_to_the_decision(session: Session, frozen: FrozenClock) -> None:
    """Civil Code §944: the evaluation reads the hot-water account, its notices and supply, the estate's policy
    and the calendar — no property-fee or arrears table at all (this branch has no dunning table; when one
    exists it must never appear in the statements below)."""
    world = spent_household(session)
    restriction_notice_sent(session, frozen, world)
    paid = spent_household(session)  # a household whose hot water is paid up: arrears elsewhere change nothing
    service.record_payment(
        session, account_id=paid.hh.account_id, amount_fen=50_000, method="counter", idempotency_key="pf", actor="z"
    )
    for w in (world, paid):  # property-fee arrears written where the estate keeps its settings are ignored
        estate = session.get(Estate, w.estate_id)
        assert estate is not None
        estate.policy = {**estate.policy, "property_fee_arrears": {"1-1-101": 1_000_000}}
    session.flush()
    allowed = {
        "estates",
        "billing_accounts",
        "meter_charges",
        "payments",
        "billing_notices",
        "billing_supply_states",
        "billing_supply_changes",
        "billing_household_flags",
        "residents",
        "billing_holidays",
        "units",
        "buildings",
        "devices",
        "meter_readings",
        "tariffs",
        "tariff_tiers",
        "outbox",
        "audit_log",
    }
    seen: set[str] = set()

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.update(re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)\b", statement))

    bind = session.connection()
    event.listen(bind, "before_cursor_execute", record)
    try:
        spent = notices.evaluate(session, world.estate_id, at(30, 10))
        ok = notices.evaluate(session, paid.estate_id, at(30, 10))
    finally:
        event.remove(bind, "before_cursor_execute", record)
    assert [c.to_state for c in spent.changes] == [SupplyState.restricted]
    assert ok.changes == []
    assert ok.drafted == []
    assert ok.held_back == {}
    assert seen
    assert seen <= allowed, seen - allowed
    assert not any("fee" in t or "arrear" in t or "dunning" in t for t in seen)


# --- suspension and restoration ---------------------------------------------------------------------------


def restricted(session: Session, frozen: FrozenClock, world: World) -> None:
    restriction_notice_sent(session, frozen, world)
    frozen.set(at(30, 10))
    assert notices.evaluate(session, world.estate_id, at(30, 10)).changes


def test_suspension_only_after_restriction_and_a_notice_three_days_ahead(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    # Before restriction no suspension notice is ever drafted.
    restriction_notice_sent(session, frozen, world)
    assert notices_of(session, world.hh.account_id, NoticeKind.suspension) == []
    frozen.set(at(30, 10))
    notices.evaluate(session, world.estate_id, at(30, 10))  # restricted
    assert notices_of(session, world.hh.account_id, NoticeKind.suspension) == []
    frozen.set(at(30, 10, 5))
    result = notices.evaluate(session, world.estate_id, at(30, 10, 5))
    (draft,) = result.drafted
    # ≥ 3 + 2 days on: Sat 5 Dec → Mon 7 Dec 09:00.
    assert draft.kind == NoticeKind.suspension
    assert draft.effective_at == at(7, 9, month=12)
    assert "停供" in draft.body
    assert "2026年11月30日" in draft.body
    send_all(session, frozen, world.hh.account_id, NoticeKind.suspension)
    assert notices.evaluate(session, world.estate_id, at(4, 10, month=12)).held_back == {
        world.hh.account_id: "notice_period"
    }
    result = notices.evaluate(session, world.estate_id, at(7, 10, month=12))
    assert [c.to_state for c in result.changes] == [SupplyState.suspended]
    rows = valve_rows(session, world.hh.device_id)
    assert [r.payload["reason"] for r in rows] == ["billing_restriction", "billing_suspension"]
    assert notices.evaluate(session, world.estate_id, at(8, 10, month=12)).changes == []  # nothing beyond


def test_restore_on_payment_queues_the_open_command_in_the_same_transaction(
    session: Session, frozen: FrozenClock
) -> None:
    world = spent_household(session)
    restricted(session, frozen, world)
    frozen.set(at(30, 23, 10))  # at night: restoring is never held back
    service.record_payment(
        session, account_id=world.hh.account_id, amount_fen=5_001, method="online", idempotency_key="r1", actor="web"
    )
    assert supply.state_of(session, world.hh.account_id) == SupplyState.normal
    _close, open_ = valve_rows(session, world.hh.device_id)
    assert open_.payload["action"] == "open"
    assert open_.payload["reason"] == "billing_restoration"
    assert open_.created_at == at(30, 23, 10)
    assert open_.expires_at == at(1, 23, 10, month=12)
    (restoration,) = notices_of(session, world.hh.account_id, NoticeKind.restoration)
    assert "恢复" in restoration.body
    assert "2026-11-30 23:10" in restoration.body
    # A payment that leaves the balance at or below zero restores nothing.
    other = spent_household(session)
    restricted(session, frozen, other)
    service.record_payment(
        session, account_id=other.hh.account_id, amount_fen=5_000, method="online", idempotency_key="r2", actor="web"
    )
    assert supply.state_of(session, other.hh.account_id) == SupplyState.restricted
    assert len(valve_rows(session, other.hh.device_id)) == 1


def test_restore_on_any_credit_at_the_next_evaluation(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session)
    restricted(session, frozen, world)
    service.adjust(session, account_id=world.hh.account_id, amount_fen=10_000, actor="li", reason="误收退回", key="c1")
    result = notices.evaluate(session, world.estate_id, at(5, 3, month=12))  # a Saturday night: still restored
    assert [c.to_state for c in result.changes] == [SupplyState.normal]


def test_a_household_without_a_remote_valve_changes_state_without_commands(
    session: Session, frozen: FrozenClock
) -> None:
    world = spent_household(session, valve=False)
    restricted(session, frozen, world)
    assert supply.state_of(session, world.hh.account_id) == SupplyState.restricted
    assert valve_rows(session, world.hh.device_id) == []


# --- the queue ---------------------------------------------------------------------------------------------


def test_approve_send_cancel_and_the_audit_trail(session: Session, frozen: FrozenClock) -> None:
    world = spent_household(session, enabled=False)
    (notice,) = notices.evaluate(session, world.estate_id, DRAFTED).drafted
    with pytest.raises(Conflict):
        notices.send(session, notice.id, actor="wang")  # not approved
    notices.approve(session, notice.id, actor="li")
    with pytest.raises(Conflict):
        notices.approve(session, notice.id, actor="li")
    frozen.set(DRAFTED + timedelta(hours=2))
    sent = notices.send(session, notice.id, actor="wang")
    assert (sent.status, sent.sent_by, sent.sent_at, sent.approved_by) == ("sent", "wang", frozen.t, "li")
    with pytest.raises(Conflict):
        notices.cancel(session, notice.id, actor="li", reason="x")  # a sent notice is proof: it stays
    actions = session.scalars(
        select(AuditLog.action).where(AuditLog.object == f"billing_notice:{notice.id}").order_by(AuditLog.id)
    ).all()
    assert actions == ["billing.notice.approve", "billing.notice.send"]


def test_policy_lengthens_periods_but_never_shortens_them() -> None:
    p = notices.policy_of(
        {"supply_restriction_enabled": True, "billing_notices": {"restriction_notice_days": 3, "renewal_fen": 8000}}
    )
    assert p.restriction_enabled
    assert p.restriction_notice_days == 15
    assert p.renewal_fen == 8000
    assert notices.policy_of({"billing_notices": {"suspension_notice_days": 5}}).suspension_notice_days == 5
    assert not notices.policy_of(None).restriction_enabled


def test_evaluate_all_covers_every_estate_with_households(session: Session, frozen: FrozenClock) -> None:
    a = spent_household(session)
    b = spent_household(session, enabled=False)
    got = notices.evaluate_all(session, DRAFTED)
    assert got["estates"] >= 2
    assert {n.kind for n in notices_of(session, a.hh.account_id)} == {"renewal_second", "restriction"}
    assert {n.kind for n in notices_of(session, b.hh.account_id)} == {"renewal_second"}


@pytest.mark.parametrize("grounds", ["switch_off", "vulnerable"])
def test_a_restricted_household_is_restored_when_the_grounds_are_gone(
    session: Session, frozen: FrozenClock, grounds: str
) -> None:
    world = spent_household(session)
    restricted(session, frozen, world)
    if grounds == "switch_off":
        supply.set_restriction_enabled(session, world.estate_id, False, actor="li", reason="本市禁止限供")
    else:
        supply.set_vulnerable(session, world.hh.account_id, True, actor="wang", reason="住院治疗")
    result = notices.evaluate(session, world.estate_id, at(5, 2, month=12))  # Saturday 02:00: restoring never waits
    assert [c.to_state for c in result.changes] == [SupplyState.normal]
    assert [r.payload["action"] for r in valve_rows(session, world.hh.device_id)] == ["close", "open"]
    (restoration,) = notices_of(session, world.hh.account_id, NoticeKind.restoration)
    assert "恢复贵户的正常热水供应" in restoration.body
    assert "续费，预付余额" not in restoration.body  # nobody paid: the text does not say so
    assert "请及时续费" in restoration.body
    assert supply.state_of(session, world.hh.account_id) == SupplyState.normal


def test_sending_queues_the_deliveries_once_log_group_and_the_estates_stewards(
    session: Session, frozen: FrozenClock
) -> None:
    world = spent_household(session, enabled=False)
    for name, role, email in (("nt-wang", "steward", "wang@wuye.example.cn"), ("nt-zhao", "engineer", "z@x.cn")):
        user = StaffUser(username=f"{name}-{world.estate_id}", display_name=name, role=role, password_hash="x")
        user.email = email
        session.add(user)
        session.flush()
        session.add(StaffEstate(user_id=user.id, estate_id=world.estate_id))
    (notice,) = notices.evaluate(session, world.estate_id, DRAFTED).drafted
    notices.approve(session, notice.id, actor="li")
    notices.send(session, notice.id, actor="wang")
    rows = session.scalars(
        select(NotificationDelivery).where(NotificationDelivery.key == f"billing_notice:{notice.id}")
    ).all()
    assert sorted((r.channel, r.recipient) for r in rows) == [
        ("email", "wang@wuye.example.cn"),  # the steward, not the engineer
        ("log", "billing"),
        ("wecom_robot", f"estate:{world.estate_id}"),
    ]
    assert all(r.status == "pending" and r.source == "billing_notice" for r in rows)
    assert all(r.subject == notice.subject and "热水" in r.body for r in rows)
    # Handing it over again (a retry of the same send) queues nothing new.
    assert len(notices._hand_over(session, notice, frozen.t)) == 3
    again = session.scalars(
        select(NotificationDelivery).where(NotificationDelivery.key == f"billing_notice:{notice.id}")
    ).all()
    assert len(again) == 3
