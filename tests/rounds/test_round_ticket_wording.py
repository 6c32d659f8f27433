"""A manual-round ticket says which points failed by their names and the window in the estate's local time
(issue 14 §7), never a metric code or a UTC ISO timestamp."""

from __future__ import annotations

import re

from sqlalchemy import select, text

from alarms.round_defaults import LV_KINDS
from alarms.rounds import ensure_default_schedules, evaluate_rounds, round_ticket_description
from core import glossary
from storage.models import InspectionRound, RoundSchedule, Ticket
from tests.rounds.conftest import LV_POINTS, SH, T0, at
from tests.support.world import RoomsEstate

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\+00:00|UTC")


def test_a_manual_round_ticket_reads_like_the_staff(est: RoomsEstate) -> None:
    assert "room_environment" in LV_KINDS
    ensure_default_schedules(est.session, est.id, now=T0)
    evaluate_rounds(est.session, at(30))
    lv = est.session.scalars(
        select(RoundSchedule).where(RoundSchedule.room_id == est.room("PR1").id, RoundSchedule.code == "lv_2h")
    ).one()
    # The room above the 35 °C limit of the default pack, the capacitor cabinet silent, the LV incomer fine.
    for device, metric, value in LV_POINTS:
        if metric == "case_temp_c":
            continue
        pid = est.point(device, metric)
        reading = 36.5 if metric == "room_temp_c" else value
        est.sample(pid, at(10), reading)
        est.sample(pid, at(40), reading)
    evaluate_rounds(est.session, at(121))
    est.session.expire_all()
    rnd = est.session.scalars(
        select(InspectionRound).where(InspectionRound.schedule_id == lv.id).order_by(InspectionRound.window_start)
    ).first()
    assert rnd is not None
    assert rnd.status == "manual_due"
    assert rnd.ticket_id is not None
    ticket = est.session.get(Ticket, rnd.ticket_id)
    assert ticket is not None
    lines = ticket.description.splitlines()
    assert lines[0].startswith("巡检窗口 2026-11-26 08:00 – 10:00，")
    assert "- 环境监测 室温：超出报警限值（35）" in lines
    assert "- 无功补偿电容柜 电容器外壳温度：窗口内无数据" in lines
    assert "room_temp_c" not in ticket.description
    assert "case_temp_c" not in ticket.description
    assert not ISO_UTC.search(ticket.description)
    assert [w for w in glossary.BANNED if w in ticket.description + ticket.title] == []
    rule_codes = est.session.scalars(text("SELECT code FROM alarm_rules")).all()
    assert [c for c in rule_codes if c in ticket.description] == []


def test_the_description_names_points_without_a_database() -> None:
    evidence = {
        "points": {
            "7": {"metric": "room_temp_c", "device": "X-ENV", "reason": "open_alarm"},
            "8": {"metric": "voltage_a_v", "device": "X-LV1", "value": 228.0},
        }
    }
    text_ = round_ticket_description(at(0), at(120), SH, evidence, {})
    assert text_.splitlines() == [
        "巡检窗口 2026-11-26 08:00 – 10:00，遥测未能确认设备状态，请到现场巡检并录入巡检记录。",
        "- X-ENV 室温：有未恢复的报警",
    ]
