"""Alarm, ticket and inspection-round pages on the server side: both languages, filters, role-gated steps
(hidden and refused), a step moving the ticket and landing on its timeline, masking of reporters.

Alarms are raised the way production raises them: readings decoded and written by ingest's own code, with
the real ``AlarmEvaluator`` hook opening tickets through ``tickets.from_alarms.open_for_alarms`` in the
same transaction. The world (tests/dashboards/conftest.py) is shared by the dashboard tests and committed,
so every test here finds its own rows rather than counting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from alarms.evaluator import AlarmEvaluator
from alarms.install import install_rule_packs
from alarms.queries import ChangeMark
from core import clock, glossary
from dashboards import tickets_view
from ingest.messages import RawMessage
from ingest.writer import write_batch
from storage.models import Alarm, AuditLog, InspectionRound, Point, RoundSchedule, StaffUser, Ticket, TicketEvent
from tests.dashboards.conftest import DashWorld, login
from tests.dashboards.support import InProcessIngest, telemetry
from tests.support.clock import SH, FrozenClock, same_day_due
from tests.support.world import make_estate, make_staff
from tickets import service as tickets
from tickets.from_alarms import open_for_alarms


class AlarmingIngest(InProcessIngest):
    """InProcessIngest plus the alarm hook ingest runs in every batch transaction (ingest/pipeline.py):
    a reading, the alarm it raises and the ticket the alarm opens commit together, then NOTIFY."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.evaluator = AlarmEvaluator(on_raised=open_for_alarms)

    def send(self, messages: Iterable[tuple[str, bytes | dict[str, Any]]]) -> int:
        with self.lock:
            now = clock.now()
            raw = []
            for topic, payload in messages:
                self._mid += 1
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                raw.append(RawMessage(topic, body, self._mid, 1, now, 0))
            batch = self.decoder.decode(raw)
            with self.engine.begin() as conn:
                result = write_batch(conn, batch, now=now, gaps=[], last_seq={}, keep_rollup=self.keep_rollup)
                self.evaluator(conn, batch, result)
            return result.stored


def install_rules(engine: Engine) -> None:
    """The default rule packs and inspection schedules, as ``steward db upgrade`` installs them (idempotent)."""
    with Session(engine) as s, s.begin():
        install_rule_packs(s)


def overheat(engine: Engine, estate: str, device: str, metric: str, values: Iterable[float] = (158.0, 161.5)) -> None:
    """Winding temperature readings above the 155 °C alarm level, a second apart, through ingest + evaluator."""
    ingest = AlarmingIngest(engine)
    start = clock.now() - timedelta(seconds=5)
    for i, value in enumerate(values):
        ingest.send([telemetry(estate, device, {metric: value}, ts=start + timedelta(seconds=i))])


def user_id(engine: Engine, username: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(StaffUser.id).where(StaffUser.username == username)).scalar_one())


def alarm_for(engine: Engine, device_id: int, metric: str) -> Alarm:
    with Session(engine) as s:
        pid = s.scalar(select(Point.id).where(Point.device_id == device_id, Point.metric == metric))
        alarm = s.scalars(select(Alarm).where(Alarm.point_id == pid).order_by(Alarm.id.desc())).first()
        assert alarm is not None, f"no alarm on {metric}"
        s.expunge(alarm)
        return alarm


def seed_rounds(engine: Engine, room_id: int) -> dict[str, int]:
    """Two days of windows for every schedule of the room, one of each status, with evidence (idempotent)."""
    now = clock.now()
    cycle = ["satisfied", "done", "manual_due", "missed", "satisfied", "satisfied"]
    out: dict[str, int] = {}
    with Session(engine) as s, s.begin():
        schedules = list(s.scalars(select(RoundSchedule).where(RoundSchedule.room_id == room_id)))
        assert schedules, "install_rules() creates the room's schedules"
        points = [
            int(p)
            for p in s.execute(
                text("SELECT p.id FROM points p JOIN devices d ON d.id = p.device_id WHERE d.room_id = :r LIMIT 3"),
                {"r": room_id},
            ).scalars()
        ]
        for sched in schedules:
            step = timedelta(minutes=sched.interval_minutes)
            k = 0
            start = now - timedelta(days=2)
            start = start - timedelta(seconds=start.timestamp() % step.total_seconds())
            while start + step <= now:
                status = cycle[k % len(cycle)]
                evidence: dict[str, Any] = {"required": len(points), "ok": len(points), "points": {}}
                for pid in points:
                    evidence["points"][str(pid)] = {"value": 78.5, "ts": (start + step / 2).isoformat()}
                if status in ("manual_due", "missed"):
                    evidence["ok"] = len(points) - 1
                    evidence["points"][str(points[0])] = {"reason": "no_data"}
                s.execute(
                    text(
                        "INSERT INTO inspection_rounds (schedule_id, estate_id, room_id, window_start, window_end, "
                        "status, satisfied_by, evidence, performed_by, performed_at) VALUES (:s, :e, :r, :ws, :we, "
                        ":st, :by, CAST(:ev AS jsonb), :pb, :pa) ON CONFLICT (schedule_id, window_start) DO NOTHING"
                    ),
                    {
                        "s": sched.id,
                        "e": sched.estate_id,
                        "r": room_id,
                        "ws": start,
                        "we": start + step,
                        "st": status,
                        "by": {"satisfied": "telemetry", "done": "manual"}.get(status),
                        "ev": json.dumps(evidence),
                        "pb": "zhang.gong" if status == "done" else None,
                        "pa": start + step / 2 if status == "done" else None,
                    },
                )
                k += 1
                start += step
            # One window still open: the current one.
            s.execute(
                text(
                    "INSERT INTO inspection_rounds (schedule_id, estate_id, room_id, window_start, window_end, status) "
                    "VALUES (:s, :e, :r, :ws, :we, 'open') ON CONFLICT (schedule_id, window_start) DO NOTHING"
                ),
                {"s": sched.id, "e": sched.estate_id, "r": room_id, "ws": start, "we": start + step},
            )
        for status in ("manual_due", "satisfied", "open"):
            rid = s.scalar(
                select(InspectionRound.id)
                .where(InspectionRound.room_id == room_id, InspectionRound.status == status)
                .order_by(InspectionRound.window_start.desc())
            )
            if rid is not None:
                out[status] = int(rid)
    return out


@dataclass(frozen=True)
class TicketWorld:
    alarm_ticket: int  # TR1 phase C overheat: an alarm ticket
    alarm_number: str
    ack_alarm: int  # TR1 phase B overheat: acknowledged and cleared by the tests
    resident_ticket: int
    rounds: dict[str, int]


@pytest.fixture(scope="module")
def tworld(dash_world: DashWorld) -> TicketWorld:
    engine = dash_world.engine
    install_rules(engine)
    tr1 = dash_world.devices["TR1"]
    overheat(engine, dash_world.estate, "TR1", "winding_temp_c_c")
    overheat(engine, dash_world.estate, "TR1", "winding_temp_b_c")
    c_alarm = alarm_for(engine, tr1, "winding_temp_c_c")
    b_alarm = alarm_for(engine, tr1, "winding_temp_b_c")
    assert c_alarm.ticket_id is not None, "the alarm opened a ticket in the ingest transaction"
    with Session(engine) as s, s.begin():
        estate_id = s.scalar(text("SELECT id FROM estates WHERE code = :c"), {"c": dash_world.estate})
        unit_id = s.scalar(
            text(
                "SELECT u.id FROM units u JOIN buildings b ON b.id = u.building_id WHERE b.estate_id = :e "
                "ORDER BY u.id LIMIT 1"
            ),
            {"e": estate_id},
        )
        resident = tickets.open_ticket(
            s,
            estate_id=int(estate_id),
            source="resident",
            category="hot_water",
            priority="normal",
            title="卫生间热水不热",
            description="业主来电：早上热水出水温度低",
            unit_id=unit_id,
            reporter_name="张三丰",
            reporter_phone="13812345678",
            received_by="steward-user",
        )
        number = s.scalar(select(Ticket.number).where(Ticket.id == c_alarm.ticket_id))
        resident_id = resident.id
    rounds = seed_rounds(engine, dash_world.rooms["PR1"])
    return TicketWorld(int(c_alarm.ticket_id), str(number), b_alarm.id, resident_id, rounds)


def _events(engine: Engine, ticket_id: int) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            (str(a), str(b))
            for a, b in conn.execute(
                select(TicketEvent.action, TicketEvent.actor)
                .where(TicketEvent.ticket_id == ticket_id)
                .order_by(TicketEvent.id)
            )
        ]


def _status(engine: Engine, ticket_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(Ticket.status).where(Ticket.id == ticket_id)).scalar_one())


def _flash(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    start = page.text.find('id="flash"')
    assert start >= 0, "no flash message on the page"
    return page.text[start : page.text.find("</p>", start)]


# --- rendering -------------------------------------------------------------------------------------------


def test_alarm_list_in_both_languages(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    login(dash_client, "supervisor-user")
    page = dash_client.get("/alarms")
    assert page.status_code == 200
    assert "报警列表" in page.text
    assert "变压器C相绕组温度高" in page.text
    assert tworld.alarm_number in page.text
    assert f'href="/tickets/{tworld.alarm_ticket}"' in page.text
    assert "sev-alarm" in page.text
    assert "报警" in page.text
    assert "C相绕组温度" in page.text
    assert "确认" in page.text
    assert "手动解除" in page.text
    assert 'href="/alarms"' in page.text  # nav
    dash_client.cookies.set("lang", "en")
    page = dash_client.get("/alarms")
    assert "Transformer winding C temperature high" in page.text
    assert "Acknowledge" in page.text
    assert "Clear manually" in page.text
    assert "报警列表" not in page.text


def test_alarm_filters(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    login(dash_client, "head-office")
    assert "变压器C相绕组温度高" in dash_client.get(f"/alarms?estate={dash_world.estate}").text
    assert "变压器C相绕组温度高" not in dash_client.get(f"/alarms?estate={dash_world.other_estate}").text
    assert "变压器C相绕组温度高" in dash_client.get("/alarms?severity=alarm").text
    assert "变压器C相绕组温度高" not in dash_client.get("/alarms?severity=warning").text
    assert dash_client.get("/alarms?severity=bogus").status_code == 422


def test_ticket_board_in_both_languages(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    login(dash_client, "steward-user")
    page = dash_client.get("/tickets")
    assert page.status_code == 200
    for label in ("待派单", "已派单", "已接单", "已到场", "已完工", "已回访"):
        assert label in page.text
    assert "已关闭" not in page.text.split('id="live-body"')[1]  # closed column only when asked
    assert tworld.alarm_number in page.text
    card = page.text.split(f'data-ticket="{tworld.alarm_ticket}"')[1].split("</a>")[0]
    assert "较急" in card  # an alarm (not critical) opens a high-priority ticket
    assert "电气" in card
    assert 'class="sla sla-ok"' in card
    assert "到场时限" in card
    assert "剩 " in card
    assert "data-due=" in card
    assert "卫生间热水不热" in page.text
    assert "/live/tickets?view=board" in page.text
    assert "已关闭" in dash_client.get("/tickets?closed=1").text
    dash_client.cookies.set("lang", "en")
    page = dash_client.get("/tickets")
    assert "Ticket board" in page.text
    assert "Dispatched" in page.text
    assert "On site" in page.text
    card = page.text.split(f'data-ticket="{tworld.alarm_ticket}"')[1].split("</a>")[0]
    assert " left" in card
    assert "High" in card
    assert "Electrical" in card


def test_board_filters(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    login(dash_client, "head-office")
    assert tworld.alarm_number in dash_client.get(f"/tickets?estate={dash_world.estate}").text
    assert tworld.alarm_number not in dash_client.get(f"/tickets?estate={dash_world.other_estate}").text
    login(dash_client, "engineer-user")
    assert tworld.alarm_number not in dash_client.get("/tickets?mine=1").text


def test_ticket_page_in_both_languages(dash_client: TestClient, tworld: TicketWorld) -> None:
    login(dash_client, "supervisor-user")
    page = dash_client.get(f"/tickets/{tworld.alarm_ticket}")
    assert page.status_code == 200
    assert tworld.alarm_number in page.text
    assert "到场时限" in page.text
    assert "完工时限" in page.text
    assert "关联报警" in page.text
    assert "变压器C相绕组温度高" in page.text
    assert "处理记录" in page.text
    assert "受理" in page.text
    assert "系统" in page.text
    assert 'id="form-dispatch"' in page.text
    assert "张工" in page.text
    dash_client.cookies.set("lang", "en")
    page = dash_client.get(f"/tickets/{tworld.alarm_ticket}")
    assert "Timeline" in page.text
    assert "Attached alarms" in page.text
    assert "Dispatch to" in page.text
    assert "Transformer winding C temperature high" in page.text


def test_unknown_and_other_estate_tickets_are_404(dash_client: TestClient, tworld: TicketWorld) -> None:
    login(dash_client, "engineer-user")
    assert dash_client.get("/tickets/99999999").status_code == 404
    assert dash_client.post("/tickets/99999999/accept").status_code == 404


def test_roles_outside_tickets_and_alarms_get_403(dash_client: TestClient, tworld: TicketWorld) -> None:
    login(dash_client, "card_admin-user")
    assert dash_client.get("/tickets").status_code == 403
    assert dash_client.get("/alarms").status_code == 403
    assert 'href="/tickets"' not in dash_client.get("/tickets").text
    login(dash_client, "steward-user")
    assert dash_client.get("/alarms").status_code == 200  # stewards see alarms (residents call about them)
    assert "手动解除" not in dash_client.get("/alarms").text  # ... but do not handle them


# --- steps -----------------------------------------------------------------------------------------------


def test_a_viewer_sees_no_forms_and_is_refused(
    dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld
) -> None:
    login(dash_client, "viewer-user")
    page = dash_client.get(f"/tickets/{tworld.alarm_ticket}")
    assert page.status_code == 200
    assert '<form method="post" action="/tickets/' not in page.text
    before_status, before_events = (
        _status(dash_world.engine, tworld.alarm_ticket),
        _events(dash_world.engine, tworld.alarm_ticket),
    )
    engineer = user_id(dash_world.engine, "zhang.gong")
    for path, data in (
        ("dispatch", {"assignee_id": str(engineer)}),
        ("accept", {}),
        ("on-site", {}),
        ("resolve", {"work_done": "x"}),
        ("callback", {"channel": "phone", "satisfaction": "5"}),
        ("close", {"reason": "x"}),
        ("reopen", {"reason": "x"}),
    ):
        r = dash_client.post(f"/tickets/{tworld.alarm_ticket}/{path}", data=data)
        assert r.status_code == 403, path
        assert "无权访问" in r.text
    assert dash_client.post(f"/alarms/{tworld.ack_alarm}/acknowledge").status_code == 403
    assert _status(dash_world.engine, tworld.alarm_ticket) == before_status
    assert _events(dash_world.engine, tworld.alarm_ticket) == before_events


def test_a_cross_site_post_is_refused(dash_client: TestClient, tworld: TicketWorld) -> None:
    login(dash_client, "supervisor-user")
    r = dash_client.post(
        f"/alarms/{tworld.ack_alarm}/acknowledge", headers={"Origin": "https://evil.example"}, data={"back": "/alarms"}
    )
    assert r.status_code == 403


def test_acknowledge_and_clear_an_alarm(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    login(dash_client, "engineer-user")
    r = dash_client.post(f"/alarms/{tworld.ack_alarm}/acknowledge", data={"back": "/alarms?severity=alarm"})
    assert r.status_code == 303
    assert r.headers["location"] == "/alarms?severity=alarm"
    assert "报警已确认" in _flash(dash_client, "/alarms")
    with Session(dash_world.engine) as s:
        alarm = s.get(Alarm, tworld.ack_alarm)
        assert alarm is not None
        assert alarm.state == "acknowledged"
        assert alarm.acknowledged_by == "engineer-user"
    # No reason: refused with a message, nothing changes.
    r = dash_client.post(f"/alarms/{tworld.ack_alarm}/clear", data={"reason": "  "})
    assert r.status_code == 303
    assert "须填写原因" in _flash(dash_client, "/alarms")
    with Session(dash_world.engine) as s:
        assert s.get(Alarm, tworld.ack_alarm).state == "acknowledged"  # type: ignore[union-attr]
    r = dash_client.post(f"/alarms/{tworld.ack_alarm}/clear", data={"reason": "传感器松动，已紧固"})
    assert r.status_code == 303
    assert "报警已手动解除" in _flash(dash_client, "/alarms")
    with Session(dash_world.engine) as s:
        alarm = s.get(Alarm, tworld.ack_alarm)
        assert alarm is not None
        assert alarm.state == "cleared"
        assert alarm.clear_note == "传感器松动，已紧固"
    assert "传感器松动" in dash_client.get("/alarms?state=all").text
    # Clearing twice is a conflict: a message, not a 500.
    r = dash_client.post(f"/alarms/{tworld.ack_alarm}/clear", data={"reason": "again"})
    assert r.status_code == 303
    assert "already cleared" in _flash(dash_client, "/alarms")


def test_steps_move_the_ticket_and_land_on_the_timeline(
    dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld
) -> None:
    engine = dash_world.engine
    with Session(engine) as s, s.begin():
        estate_id = s.scalar(text("SELECT id FROM estates WHERE code = :c"), {"c": dash_world.estate})
        t = tickets.open_ticket(
            s,
            estate_id=int(estate_id),
            source="manual",
            category="water",
            priority="normal",
            title="水泵房地漏堵塞",
            received_by="supervisor-user",
        )
        tid, number = t.id, t.number
    engineer = user_id(engine, "zhang.gong")
    login(dash_client, "supervisor-user")
    r = dash_client.post(f"/tickets/{tid}/dispatch", data={"assignee_id": str(engineer), "note": "尽快处理"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/tickets/{tid}"
    assert _status(engine, tid) == "dispatched"
    page = dash_client.get(f"/tickets/{tid}")
    assert "已派单" in page.text  # the flash and the status
    timeline = page.text.split('id="timeline"')[1]
    assert "派单" in timeline
    assert "派给 张工" in timeline
    assert "尽快处理" in timeline
    assert 'data-actor="supervisor-user"' in timeline

    # Another engineer may not take zhang.gong's ticket; the assignee gets the buttons.
    login(dash_client, "engineer-user")
    assert 'id="form-accept"' not in dash_client.get(f"/tickets/{tid}").text
    assert dash_client.post(f"/tickets/{tid}/accept").status_code == 403
    login(dash_client, "zhang.gong")
    page = dash_client.get(f"/tickets/{tid}")
    assert 'id="form-accept"' in page.text
    assert 'id="form-on-site"' in page.text
    assert 'id="form-dispatch"' not in page.text
    # Out of order: resolving before arriving is a conflict, shown as a message (never a 500).
    r = dash_client.post(f"/tickets/{tid}/resolve", data={"work_done": "疏通地漏"})
    assert r.status_code == 303
    assert "当前状态不允许此操作" in _flash(dash_client, f"/tickets/{tid}")
    assert _status(engine, tid) == "dispatched"
    assert dash_client.post(f"/tickets/{tid}/accept").status_code == 303
    assert dash_client.post(f"/tickets/{tid}/on-site").status_code == 303
    r = dash_client.post(f"/tickets/{tid}/resolve", data={"work_done": "", "labour_minutes": "30"})
    assert "请填写维修情况" in _flash(dash_client, f"/tickets/{tid}")
    r = dash_client.post(f"/tickets/{tid}/resolve", data={"work_done": "疏通地漏", "labour_minutes": "abc"})
    assert "工时须为整数分钟" in _flash(dash_client, f"/tickets/{tid}")
    r = dash_client.post(
        f"/tickets/{tid}/resolve",
        data={"work_done": "疏通地漏", "parts": "地漏芯 1 个", "labour_minutes": "40", "signoff": "yes"},
    )
    assert r.status_code == 303
    assert _status(engine, tid) == "resolved"
    login(dash_client, "steward-user")
    r = dash_client.post(f"/tickets/{tid}/callback", data={"channel": "phone", "satisfaction": "4", "note": "满意"})
    assert r.status_code == 303
    assert _status(engine, tid) == "callback_done"
    r = dash_client.post(f"/tickets/{tid}/close", data={})
    assert _status(engine, tid) == "closed"
    r = dash_client.post(f"/tickets/{tid}/reopen", data={"reason": ""})
    assert "重新处理须填写原因" in _flash(dash_client, f"/tickets/{tid}")
    r = dash_client.post(f"/tickets/{tid}/reopen", data={"reason": "再次堵塞"})
    assert _status(engine, tid) == "dispatched"
    assert [a for a, _ in _events(engine, tid)] == [
        "opened",
        "dispatched",
        "accepted",
        "on_site",
        "resolved",
        "callback",
        "closed",
        "reopened",
    ]
    actors = dict(_events(engine, tid))
    assert actors["accepted"] == "zhang.gong"
    assert actors["callback"] == "steward-user"
    page = dash_client.get(f"/tickets/{tid}")
    assert "40" in page.text
    assert "地漏芯 1 个" in page.text
    assert "返修次数" in page.text
    with engine.connect() as conn:
        audited = conn.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.object == f"ticket:{number}"))
    assert audited
    assert audited >= 7


def test_reporter_is_masked_for_roles_outside_personal_data(
    dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld
) -> None:
    login(dash_client, "engineer-user")
    page = dash_client.get(f"/tickets/{tworld.resident_ticket}")
    assert "张**" in page.text
    assert "138****5678" in page.text
    assert "张三丰" not in page.text
    assert "13812345678" not in page.text
    assert "已脱敏" in page.text
    login(dash_client, "steward-user")
    page = dash_client.get(f"/tickets/{tworld.resident_ticket}")
    assert "张三丰" in page.text
    assert "13812345678" in page.text
    # Board cards never carry the reporter.
    assert "13812345678" not in dash_client.get("/tickets").text
    with dash_world.engine.connect() as conn:
        reads = conn.execute(select(AuditLog.actor, AuditLog.detail).where(AuditLog.action == "tickets.read")).all()
    assert ("engineer-user", {"masked": True}) in [(a, d) for a, d in reads]
    assert ("steward-user", {"masked": False}) in [(a, d) for a, d in reads]


# --- inspection rounds -----------------------------------------------------------------------------------


def test_rounds_calendar(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    room = dash_world.rooms["PR1"]
    login(dash_client, "engineer-user")
    assert f'href="/rooms/{room}/rounds"' in dash_client.get(f"/rooms/{room}").text
    page = dash_client.get(f"/rooms/{room}/rounds")
    assert page.status_code == 200
    assert "巡检日历" in page.text
    assert "低压" in page.text
    for css in ("rc-ok", "rc-done", "rc-warn", "rc-bad", "rc-grey"):
        assert f"round-cell {css}" in page.text, css
    assert "遥测达标" in page.text
    assert "未巡检" in page.text
    due = tworld.rounds["manual_due"]
    page = dash_client.get(f"/rooms/{room}/rounds?round={due}")
    assert 'id="round-detail"' in page.text
    assert "窗口内无数据" in page.text
    assert 'id="form-round"' in page.text
    page = dash_client.get(f"/rooms/{room}/rounds?round={tworld.rounds['satisfied']}")
    assert 'id="form-round"' not in page.text
    assert "✓" in page.text
    dash_client.cookies.set("lang", "en")
    assert "Satisfied by telemetry" in dash_client.get(f"/rooms/{room}/rounds").text
    dash_client.cookies.set("lang", "zh")

    login(dash_client, "viewer-user")
    assert 'id="form-round"' not in dash_client.get(f"/rooms/{room}/rounds?round={due}").text
    assert dash_client.post(f"/rooms/{room}/rounds/{due}/manual", data={"notes": "x"}).status_code == 403
    login(dash_client, "steward-user")
    assert dash_client.get(f"/rooms/{room}/rounds").status_code == 403
    login(dash_client, "engineer-user")
    assert dash_client.get(f"/rooms/{dash_world.other_room_id}/rounds").status_code == 404
    r = dash_client.post(f"/rooms/{room}/rounds/{due}/manual", data={"readings": "no equals sign"})
    assert "名称=数值" in _flash(dash_client, f"/rooms/{room}/rounds?round={due}")
    r = dash_client.post(
        f"/rooms/{room}/rounds/{due}/manual", data={"readings": "室温=29.5\n柜门=关闭", "notes": "现场正常"}
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/rooms/{room}/rounds?round={due}"
    with Session(dash_world.engine) as s:
        rnd = s.get(InspectionRound, due)
        assert rnd is not None
        assert rnd.status == "done"
        assert rnd.performed_by == "engineer-user"
        assert rnd.readings == {"室温": 29.5, "柜门": "关闭"}
    page = dash_client.get(f"/rooms/{room}/rounds?round={due}")
    assert "已登记人工巡检" in page.text
    assert "现场正常" in page.text


# --- live ------------------------------------------------------------------------------------------------


def test_live_stream_needs_a_login(dash_client: TestClient) -> None:
    assert dash_client.get("/live/tickets").status_code == 401
    login(dash_client, "card_admin-user")
    assert dash_client.get("/live/tickets").status_code == 401
    assert dash_client.get("/live/tickets?view=nope").status_code == 422


def test_change_mark_moves_with_ticket_steps_and_alarms(dash_world: DashWorld, tworld: TicketWorld) -> None:
    engine = dash_world.engine
    with Session(engine) as s:
        visible = {int(i) for i in s.scalars(text("SELECT id FROM estates WHERE code = :c"), {"c": dash_world.estate})}
        other = {
            int(i) for i in s.scalars(text("SELECT id FROM estates WHERE code = :c"), {"c": dash_world.other_estate})
        }
    mark, other_mark = ChangeMark(), ChangeMark()
    with Session(engine) as s:
        first, first_other = mark.read(s, visible), other_mark.read(s, other)
        assert mark.read(s, visible) == first  # nothing happened: nothing to send
    with Session(engine) as s, s.begin():
        tickets.add_comment(s, tworld.resident_ticket, "steward-user", "已联系业主")
    with Session(engine) as s:
        second = mark.read(s, visible)
        assert second[0] > first[0]
        assert other_mark.read(s, other) == first_other  # another estate's step is not this viewer's news
    with Session(engine) as s, s.begin():
        s.execute(
            text(
                "UPDATE alarms SET state = 'acknowledged' WHERE id = (SELECT id FROM alarms "
                "WHERE state = 'active' AND estate_id = ANY(:v) ORDER BY id LIMIT 1)"
            ),
            {"v": sorted(visible)},
        )
    with Session(engine) as s:
        third = mark.read(s, visible)
    assert third != second or third[3] == 0


def test_countdown_wording_and_colours() -> None:
    assert tickets_view.countdown_text(14 * 60 + 32, "zh") == "剩 14 分 32 秒"
    assert tickets_view.countdown_text(2 * 3600 + 5 * 60, "zh") == "剩 2 小时 05 分"
    assert tickets_view.countdown_text(-12 * 60 - 5, "zh") == "超时 12 分钟"
    assert tickets_view.countdown_text(-35, "zh") == "超时 35 秒"
    assert tickets_view.countdown_text(-(3 * 3600 + 60), "en") == "3 h 01 min overdue"
    assert tickets_view.countdown_text(90, "en") == "1 min 30 s left"
    window = 20 * 60
    assert tickets_view.clock_state(15 * 60, window) == "ok"
    assert tickets_view.clock_state(4 * 60 + 59, window) == "warn"  # < 25 % (and < 5 min)
    assert tickets_view.clock_state(20 * 3600, 48 * 3600) == "ok"
    assert tickets_view.clock_state(11 * 3600, 48 * 3600) == "warn"  # < 25 % of two days
    assert tickets_view.clock_state(299, 0) == "warn"  # no window known: the 5-minute floor
    assert tickets_view.clock_state(0, window) == "breached"


def test_board_countdowns_and_local_due_times_at_any_instant(
    dash_client: TestClient, dash_world: DashWorld, instant: datetime, at_instant: FrozenClock
) -> None:
    """Tickets of an estate of their own received at the instant (clock pinned): the board's countdown,
    its due timestamp and the due time shown in Shanghai time, before and after the breach."""
    with Session(dash_world.engine) as s, s.begin():
        place = make_estate(s)
        engineer = make_staff(s, place)
        common = {"estate_id": place.estate_id, "source": "manual", "received_by": "steward-user"}
        general = tickets.open_ticket(s, category="electrical", priority="normal", title="照明故障", **common)
        minor = tickets.open_ticket(s, category="water", priority="minor", title="水龙头滴水", **common)
        tickets.dispatch(s, minor, engineer, "steward-user")
        tickets.arrive_on_site(s, minor, "engineer")
        general_id, minor_id = general.id, minor.id
    login(dash_client, "head-office")

    def card(ticket_id: int) -> str:
        page = dash_client.get(f"/tickets?estate={place.code}")
        assert page.status_code == 200, page.text
        return page.text.split(f'data-ticket="{ticket_id}"')[1].split("</a>")[0]

    at_instant.advance(timedelta(minutes=5))
    on_site_due = instant + timedelta(minutes=20)  # 一般维修: on site within 20 min
    c = card(general_id)
    assert 'class="sla sla-ok"' in c
    assert "剩 15 分 00 秒" in c
    assert f'data-due="{int(on_site_due.timestamp() * 1000)}"' in c
    assert on_site_due.astimezone(SH).strftime("%Y-%m-%d %H:%M") in c
    resolve_due = same_day_due(instant)  # 小修: by 23:59 local of the day received, from 20:00 the next noon
    c = card(minor_id)
    assert f'data-due="{int(resolve_due.timestamp() * 1000)}"' in c
    assert resolve_due.astimezone(SH).strftime("%Y-%m-%d %H:%M") in c

    at_instant.advance(timedelta(minutes=16))  # 21 min after receipt
    c = card(general_id)
    assert 'class="sla sla-breached"' in c
    assert "超时 1 分钟" in c


# --- the staff's words on the pages (issue 14 §7, core/glossary.py) ------------------------------------------------


def _banned_on_page(html: str) -> list[str]:
    found = [word for word in glossary.BANNED if word in html]
    if re.search(r">\s*严重\s*<", html):  # a severity badge or cell reading a bare 严重
        found.append("严重")
    return found


def test_the_pages_use_the_staff_words(dash_client: TestClient, dash_world: DashWorld, tworld: TicketWorld) -> None:
    engine = dash_world.engine
    with Session(engine) as s, s.begin():
        estate_id = int(s.scalar(text("SELECT id FROM estates WHERE code = :c"), {"c": dash_world.estate}))
        complaint = tickets.open_ticket(
            s,
            estate_id=estate_id,
            source="complaint",
            category="other",
            priority="normal",
            title="夜间施工噪音",
            reporter_name="李四",
            received_by="steward-user",
        )
        tickets.close(s, complaint, "steward-user", reason="已与施工方沟通")
        tickets.reopen(s, complaint, "steward-user", "业主再次来电")
        inspection = tickets.open_ticket(
            s,
            estate_id=estate_id,
            source="inspection",
            category="electrical",
            priority="normal",
            title="配电房 巡检 — 需人工巡检",
            room_id=dash_world.rooms["PR1"],
            received_by="system",
        )
        complaint_id, inspection_id = complaint.id, inspection.id

    login(dash_client, "supervisor-user")
    page = dash_client.get(f"/tickets/{complaint_id}").text
    assert "报事人" in page
    assert "重新处理" in page  # the timeline and the count: a reopened complaint is not a repair
    assert "返修" not in page
    page = dash_client.get(f"/tickets/{inspection_id}").text
    assert "处理人" in page
    assert "维修人员" not in page
    assert "报修人" in dash_client.get(f"/tickets/{tworld.resident_ticket}").text

    room = dash_world.rooms["PR1"]
    pages = [
        "/alarms?state=all",
        "/tickets?closed=1",
        f"/tickets/{tworld.alarm_ticket}",
        f"/tickets/{tworld.resident_ticket}",
        f"/tickets/{complaint_id}",
        f"/tickets/{inspection_id}",
        f"/rooms/{room}",
        f"/rooms/{dash_world.rooms['HS1']}",
        f"/estates/{dash_world.estate}",
        f"/devices/{dash_world.devices['E-1-2-1801']}",
        "/commands",
    ]
    for lang in ("zh", "en"):
        dash_client.cookies.set("lang", lang)
        for path in pages:
            r = dash_client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert _banned_on_page(r.text) == [], (lang, path)
    dash_client.cookies.set("lang", "zh")
    login(dash_client, "engineer-user")
    rounds_page = dash_client.get(f"/rooms/{room}/rounds")
    assert rounds_page.status_code == 200
    assert _banned_on_page(rounds_page.text) == []
    assert "未巡检" in rounds_page.text
    heat = dash_client.get(f"/estates/{dash_world.estate}").text
    assert "热力站" in heat
