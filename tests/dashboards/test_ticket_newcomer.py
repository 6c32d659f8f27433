"""Issue 15 §8, what a newcomer tripped over on the ticket board and the alarm list:

- the board lists the most urgent ticket first (priority, then the nearest running deadline, then received);
- a ticket whose alarm recovered by itself says so on its card (报警已恢复 with the time);
- 接单 is offered before 已到场 (arriving straight from 已派单 is the secondary choice);
- 完工 is refused, with a Chinese message on the page and 409 from the API, while an attached alarm is still
  unacknowledged; once acknowledged (even if not yet recovered) it is accepted and the event counts the open ones;
- the alarm list groups the alarms of one device attached to one ticket into one card, one row per point.

Each test builds an estate of its own (tests/support/handover.py: a transformer with three phase points and its
people) in the shared dashboard database, under a pinned clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.service import create_token
from storage.models import Alarm, Ticket, TicketEvent
from tests.dashboards.conftest import DashWorld, login
from tests.support.clock import INSTANTS, FrozenClock, pinned
from tests.support.handover import HandoverPlace, add_alarm, add_ticket, seed_place, user
from tickets import queries
from tickets import service as tickets

NOON = INSTANTS["sh-1200"]


@pytest.fixture(autouse=True)
def frozen() -> Iterator[FrozenClock]:
    with pinned(NOON) as c:
        yield c


@pytest.fixture
def place(dash_world: DashWorld) -> HandoverPlace:
    with Session(dash_world.engine) as s, s.begin():
        return seed_place(s)


def attach(s: Session, alarm_id: int, ticket_id: int) -> None:
    alarm = s.get(Alarm, alarm_id)
    assert alarm is not None
    alarm.ticket_id = ticket_id
    s.flush()


def on_site_ticket(s: Session, place: HandoverPlace, title: str) -> int:
    """A ticket dispatched to 李工 (eng1), who has accepted it and is on site."""
    tid = add_ticket(s, place, title=title, received_at=NOON - timedelta(minutes=30), priority="urgent")
    eng = user(s, place, "eng1")
    tickets.dispatch(s, tid, eng.id, place.users["supervisor"], at=NOON - timedelta(minutes=28))
    tickets.accept(s, tid, eng.username, at=NOON - timedelta(minutes=25))
    tickets.arrive_on_site(s, tid, eng.username, at=NOON - timedelta(minutes=15))
    return tid


def column(html: str, status: str) -> str:
    found = re.search(rf'data-status="{status}".*?(?=data-status="|\Z)', html, re.S)
    assert found, f"no {status} column"
    return found.group(0)


def flash(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    start = page.text.find('id="flash"')
    assert start >= 0, "no flash message on the page"
    return page.text[start : page.text.find("</p>", start)]


# --- 1. the board's order ----------------------------------------------------------------------------------


def test_the_board_lists_the_urgent_ticket_first(
    dash_client: TestClient, dash_world: DashWorld, place: HandoverPlace
) -> None:
    early = NOON - timedelta(hours=3)
    with Session(dash_world.engine) as s, s.begin():
        ids = {
            "normal_oldest": add_ticket(s, place, title="走廊灯不亮", received_at=early, priority="normal"),
            "minor": add_ticket(s, place, title="门把手松动", received_at=early, priority="minor"),
            "high": add_ticket(s, place, title="水泵异响", received_at=early + timedelta(minutes=5), priority="high"),
            # Two urgent tickets: the one received earlier has the nearer on-site deadline, so it leads.
            "urgent_late": add_ticket(
                s, place, title="变压器C相超温", received_at=NOON - timedelta(minutes=5), priority="urgent"
            ),
            "urgent_early": add_ticket(
                s, place, title="变压器A相超温", received_at=NOON - timedelta(minutes=10), priority="urgent"
            ),
        }
        got = [r.ticket.id for r in queries.board_rows(s, {place.estate_id}, limit=50)]
    expected = ["urgent_early", "urgent_late", "high", "minor", "normal_oldest"]
    assert got == [ids[k] for k in expected]

    login(dash_client, place.users["supervisor"])
    page = dash_client.get(f"/tickets?estate={place.code}")
    assert page.status_code == 200, page.text
    on_board = [int(i) for i in re.findall(r'data-ticket="(\d+)"', column(page.text, "received"))]
    assert on_board == [ids[k] for k in expected]


def test_within_one_priority_the_nearest_deadline_comes_first(dash_world: DashWorld, place: HandoverPlace) -> None:
    """Same priority: the clock that ends first leads, whatever the received order (a reopened or dispatched
    ticket's clock can end before an older one's)."""
    with Session(dash_world.engine) as s, s.begin():
        older = add_ticket(s, place, title="配电柜异味", received_at=NOON - timedelta(hours=2), priority="high")
        newer = add_ticket(s, place, title="配电柜异响", received_at=NOON - timedelta(hours=1), priority="high")
        t = s.get(Ticket, newer)
        assert t is not None
        assert t.resolve_due_at is not None
        t.resolve_due_at = NOON + timedelta(minutes=30)  # e.g. a shorter window set by the estate's policy
        t.on_site_due_at = None
        o = s.get(Ticket, older)
        assert o is not None
        o.on_site_due_at = None
        s.flush()
        got = [r.ticket.id for r in queries.board_rows(s, {place.estate_id}, limit=50)]
    assert got == [newer, older]


# --- 2. a recovered alarm on the card ----------------------------------------------------------------------


def test_a_card_says_when_its_alarm_recovered_by_itself(
    dash_client: TestClient, dash_world: DashWorld, place: HandoverPlace
) -> None:
    with Session(dash_world.engine) as s, s.begin():
        recovered = add_ticket(s, place, title="A相绕组超温", received_at=NOON - timedelta(hours=1), priority="urgent")
        attach(
            s,
            add_alarm(
                s,
                place,
                metric="winding_temp_a_c",
                severity="critical",
                raised_at=NOON - timedelta(hours=1),
                cleared_at=NOON - timedelta(minutes=12),
            ),
            recovered,
        )
        waiting = add_ticket(s, place, title="B相绕组超温", received_at=NOON - timedelta(minutes=20), priority="urgent")
        attach(
            s,
            add_alarm(s, place, metric="winding_temp_b_c", severity="critical", raised_at=NOON - timedelta(minutes=20)),
            waiting,
        )
        plain = add_ticket(s, place, title="照明检修", received_at=NOON - timedelta(minutes=5), priority="minor")
    login(dash_client, place.users["eng1"])
    html = dash_client.get(f"/tickets?estate={place.code}").text
    cards = {int(i): body for i, body in re.findall(r'data-ticket="(\d+)"(.*?)</a>', html, re.S)}
    assert 'data-alarm-note="recovered"' in cards[recovered]
    assert "报警已恢复 2026-11-26 11:48" in cards[recovered]  # cleared at 11:48 Shanghai time
    assert "报警未确认 1" in cards[waiting]
    assert "data-alarm-note" not in cards[plain]
    dash_client.cookies.set("lang", "en")
    html = dash_client.get(f"/tickets?estate={place.code}").text
    assert "Alarm recovered 2026-11-26 11:48" in html
    detail = dash_client.get(f"/tickets/{recovered}").text
    assert "Alarm recovered 2026-11-26 11:48" in detail


# --- 3. 接单 before 已到场 ------------------------------------------------------------------------------------


def test_accept_is_offered_before_on_site(dash_client: TestClient, dash_world: DashWorld, place: HandoverPlace) -> None:
    with Session(dash_world.engine) as s, s.begin():
        tid = add_ticket(s, place, title="水泵异响", received_at=NOON - timedelta(minutes=10), priority="high")
        tickets.dispatch(s, tid, place.user_ids["eng1"], place.users["supervisor"], at=NOON - timedelta(minutes=5))
    login(dash_client, place.users["eng1"])
    html = dash_client.get(f"/tickets/{tid}").text
    accept, on_site = html.find('id="form-accept"'), html.find('id="form-on-site"')
    assert 0 < accept < on_site, "接单 comes first"
    accept_form = html[accept : html.find("</form>", accept)]
    on_site_form = html[on_site : html.find("</form>", on_site)]
    assert 'class="primary"' in accept_form
    assert "接单" in accept_form
    assert 'class="primary"' not in on_site_form  # the secondary choice from 已派单
    assert "同时接单" in on_site_form
    r = dash_client.post(f"/tickets/{tid}/accept")
    assert r.status_code == 303
    html = dash_client.get(f"/tickets/{tid}").text
    assert 'id="form-accept"' not in html
    on_site = html.find('id="form-on-site"')
    assert 'class="primary">已到场<' in html[on_site : html.find("</form>", on_site)]


# --- 4. 完工 while an alarm is unacknowledged --------------------------------------------------------------


def test_resolving_is_refused_while_an_alarm_is_unacknowledged(
    dash_client: TestClient, dash_world: DashWorld, place: HandoverPlace
) -> None:
    with Session(dash_world.engine) as s, s.begin():
        tid = on_site_ticket(s, place, "C相绕组超温")
        alarm_id = add_alarm(
            s, place, metric="winding_temp_c_c", severity="critical", raised_at=NOON - timedelta(minutes=30)
        )
        attach(s, alarm_id, tid)
        token = create_token(s, user(s, place, "eng1"), "tests")
    login(dash_client, place.users["eng1"])
    page = dash_client.get(f"/tickets/{tid}").text
    assert 'id="resolve-blocked"' in page
    assert "1 条关联报警尚未确认" in page
    r = dash_client.post(f"/tickets/{tid}/resolve", data={"work_done": "更换风机"})
    assert r.status_code == 303
    assert "尚未确认" in flash(dash_client, f"/tickets/{tid}")
    api = dash_client.post(
        f"/api/tickets/{tid}/resolve", json={"work_done": "更换风机"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 409, api.text
    assert "尚未确认" in api.text
    with Session(dash_world.engine) as s:
        t = s.get(Ticket, tid)
        assert t is not None
        assert t.status == "on_site"

    # Acknowledged but still hot: the repair may be recorded; the event keeps that one alarm was still open.
    assert dash_client.post(f"/alarms/{alarm_id}/acknowledge", data={"back": "/alarms"}).status_code == 303
    page = dash_client.get(f"/tickets/{tid}").text
    assert 'id="resolve-blocked"' not in page
    assert 'id="resolve-alarms-open"' in page
    r = dash_client.post(f"/tickets/{tid}/resolve", data={"work_done": "更换风机，温度回落中"})
    assert r.status_code == 303
    with Session(dash_world.engine) as s:
        t = s.get(Ticket, tid)
        assert t is not None
        assert t.status == "resolved"
        event = s.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == tid, TicketEvent.action == "resolved")
        ).one()
        assert event.detail["alarms_open"] == 1


def test_a_cleared_alarm_does_not_block_resolving(dash_world: DashWorld, place: HandoverPlace) -> None:
    with Session(dash_world.engine) as s, s.begin():
        tid = on_site_ticket(s, place, "A相绕组超温")
        attach(
            s,
            add_alarm(
                s,
                place,
                metric="winding_temp_a_c",
                severity="alarm",
                raised_at=NOON - timedelta(minutes=40),
                cleared_at=NOON - timedelta(minutes=5),
            ),
            tid,
        )
        t = tickets.resolve(s, tid, place.users["eng1"], work_done="清理风道")
        assert t.status == "resolved"


# --- 5. the alarm list groups one device's alarms of one ticket --------------------------------------------


def test_the_alarm_list_groups_the_phases_of_one_transformer(
    dash_client: TestClient, dash_world: DashWorld, place: HandoverPlace
) -> None:
    with Session(dash_world.engine) as s, s.begin():
        tid = add_ticket(
            s, place, title="1号变压器绕组超温", received_at=NOON - timedelta(minutes=20), priority="urgent"
        )
        phases = []
        for metric, sev in (
            ("winding_temp_a_c", "critical"),
            ("winding_temp_b_c", "critical"),
            ("winding_temp_c_c", "alarm"),
        ):
            alarm_id = add_alarm(
                s, place, metric=metric, severity=sev, raised_at=NOON - timedelta(minutes=20), title=f"{metric}超温"
            )
            attach(s, alarm_id, tid)
            phases.append(alarm_id)
        loose = add_alarm(s, place, metric="room_temp_c", severity="warning", raised_at=NOON - timedelta(minutes=3))
    login(dash_client, place.users["eng1"])
    html = dash_client.get(f"/alarms?estate={place.code}").text
    cards = re.findall(r'<article [^>]*data-alarms="([\d ]+)"[^>]*>(.*?)</article>', html, re.S)
    assert len(cards) == 2, "three phases in one card, the loose alarm in another"
    (group_ids, group), (loose_ids, _) = cards
    assert sorted(int(i) for i in group_ids.split()) == sorted(phases)
    assert loose_ids == str(loose)
    assert "1号变压器 · 3 条报警" in group
    for label in ("A相绕组温度", "B相绕组温度", "C相绕组温度"):
        assert label in group
    assert group.count("data-alarm-point=") == 3
    assert group.count("/acknowledge") == 3  # each point is acknowledged on its own row
    assert 'data-severity="critical"' in html
    dash_client.cookies.set("lang", "en")
    assert "1号变压器 · 3 alarms" in dash_client.get(f"/alarms?estate={place.code}").text
