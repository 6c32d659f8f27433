"""A ticket the platform opens says what happened the way the staff read it (issue 14 §7): the rule's Chinese title
and the estate's local time ("2026-11-26 10:00"), never a rule code or a UTC ISO timestamp."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.anomalies import AnomalyKind
from alarms.meter_pack import ensure_meter_rules, rule_code
from core import clock, glossary
from storage.models import AlarmRuleRow, Ticket
from tests.support.world import T0, Place, insert_alarm, make_estate, make_rule, tickets_of
from tickets.from_alarms import open_for_alarms
from tickets.service import local_minute

NOW = T0 + timedelta(minutes=3)
LOCAL_T0 = "2026-11-26 10:00"  # T0 is 02:00 UTC: 10:00 in Asia/Shanghai
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\+00:00|UTC")


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    clock.set_clock(lambda: NOW)
    yield
    clock.reset_clock()


@pytest.fixture
def place(session: Session) -> Place:
    return make_estate(session)


def assert_reads_like_the_staff(description: str, rule_code_: str) -> None:
    assert rule_code_ not in description
    assert not ISO_UTC.search(description), description
    assert LOCAL_T0 in description
    for word in glossary.BANNED:
        assert word not in description


def test_local_minute_is_the_estates_clock() -> None:
    assert local_minute(T0, "Asia/Shanghai") == LOCAL_T0
    assert local_minute(T0, "Europe/London") == "2026-11-26 02:00"


def test_an_alarm_ticket_names_the_rule_and_the_local_time(session: Session, place: Place) -> None:
    rule = make_rule(session, title_zh="绕组温度过高")
    code = session.scalar(select(AlarmRuleRow.code).where(AlarmRuleRow.id == rule))
    assert code
    alarm = insert_alarm(session.connection(), rule, place, severity="critical")
    open_for_alarms(session.connection(), [alarm])
    [t] = tickets_of(session, place.estate_id)
    assert_reads_like_the_staff(t.description, code)
    first = t.description.splitlines()[0]
    assert first == f"报警：绕组温度过高；级别：紧急；发生时间：{LOCAL_T0}（报警 #{alarm}）"
    assert "severity: Critical" in t.description  # the English line for the toggle's readers


def test_a_meter_anomaly_ticket_names_the_anomaly_and_the_local_time(session: Session, place: Place) -> None:
    ensure_meter_rules(session)
    code = rule_code("hot_water_meter", AnomalyKind.vacant_flow)
    rule = session.scalar(select(AlarmRuleRow.id).where(AlarmRuleRow.code == code))
    assert rule is not None
    alarm = insert_alarm(
        session.connection(), rule, place, device_id=place.valve_meter_id, subject=f"device:{place.valve_meter_id}"
    )
    open_for_alarms(session.connection(), [alarm])
    t = session.scalars(select(Ticket).where(Ticket.estate_id == place.estate_id)).one()
    assert_reads_like_the_staff(t.description, code)
    assert "空置房热水表走字（关闭阀门）" in t.description
    assert "空置房热水表走字" in t.title
