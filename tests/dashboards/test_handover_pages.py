"""The handover pages (dashboards/handover.py) and the wall display's credential (dashboards/wall.py) on the server
side, with the clock pinned at the shift boundary: 交班 at 19:59, 接班签字 by another engineer at 20:00, once; who
may open which page (role × route, and another estate's staff get 404); a display token that reads its estate's
wall and nothing else, until it is revoked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.handover_queries import record_for
from storage.models import AuditLog, DisplayToken, ShiftHandover
from tests.dashboards.conftest import DashWorld, login
from tests.support.clock import pinned
from tests.support.handover import HandoverPlace, busy_day_shift_committed, local
from web.cookies import DISPLAY_COOKIE

DAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def place(dash_world: DashWorld) -> HandoverPlace:
    return busy_day_shift_committed(dash_world.engine, DAY)


@pytest.fixture
def client(dash_client: TestClient) -> Iterator[TestClient]:
    dash_client.cookies.clear()
    yield dash_client
    dash_client.cookies.clear()


def _as(client: TestClient, username: str) -> None:
    client.cookies.clear()
    login(client, username)


def test_hand_over_at_1959_and_sign_at_2000(client: TestClient, dash_world: DashWorld, place: HandoverPlace) -> None:
    page_url = f"/handover?estate={place.code}"
    with pinned(local(DAY, 19, 59)):
        _as(client, place.users["eng1"])
        page = client.get(page_url)
        assert page.status_code == 200, page.text
        assert "白班 2026-11-26 08:00–20:00" in page.text
        assert 'id="form-hand-over"' in page.text
        assert 'id="form-sign"' not in page.text
        # The open critical alarm is named by room, device and the point's own label (never point:17).
        assert "1号配电房 · 1号变压器 · A相绕组温度" in page.text
        assert not re.search(r"(point|device):\d", page.text)
        start = re.search(r'data-shift-start="([^"]+)"', page.text)
        assert start is not None
        r = client.post(
            "/handover/hand-over",
            data={"estate": place.code, "shift_start": start.group(1), "notes": "A相绕组温度仍高，风机已强制开启。"},
        )
        assert r.status_code == 303
        assert r.headers["location"] == page_url
        after = client.get(page_url)
        assert "待接班签字" in after.text
        assert 'id="form-sign"' not in after.text  # the one who handed over does not sign

    with pinned(local(DAY, 20, 0)):
        _as(client, place.users["eng2"])
        page = client.get(page_url)
        assert "白班 2026-11-26 08:00–20:00" in page.text  # still the day shift at the boundary
        assert 'id="form-sign"' in page.text
        assert 'id="form-hand-over"' not in page.text
        with Session(dash_world.engine) as s:
            rec = record_for(s, place.estate_id, local(DAY, 8))
            assert rec is not None
            assert rec.outgoing_name == "李工"
            rec_id = rec.id
        r = client.post(f"/handover/{rec_id}/sign", data={"note": "已当面交接"})
        assert r.status_code == 303
        now_page = client.get(page_url)
        assert "夜班 2026-11-26 20:00 – 11-27 08:00" in now_page.text  # signed: the night shift is on the table
        assert f'data-record="{rec_id}"' in now_page.text

        _as(client, place.users["supervisor"])
        again = client.post(f"/handover/{rec_id}/sign", data={"note": "再签一次"})
        assert again.status_code == 303
        assert "已由 王工 接班签字" in client.get(page_url).text  # refused, and the page says why
        printed = client.get(f"/handover/{rec_id}")
        assert printed.status_code == 200
        for text in ("工程部交接班记录", "李工", "王工", "2026-11-26 20:00", "A相绕组温度仍高", "handover_print.css"):
            assert text in printed.text

    with Session(dash_world.engine) as s:
        rec = s.get(ShiftHandover, rec_id)
        assert rec is not None
        assert (rec.incoming_name, rec.signed_at) == ("王工", local(DAY, 20))
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object == f"handover:{rec_id}")).all()
        assert sorted(actions) == ["handover.hand_over", "handover.sign"]


@pytest.mark.parametrize(
    ("who", "status"),
    [("eng1", 200), ("supervisor", 200), ("manager", 200), ("viewer", 403), ("steward", 403)],
)
def test_who_opens_the_handover_pages(client: TestClient, place: HandoverPlace, who: str, status: int) -> None:
    with pinned(local(DAY, 12)):
        _as(client, place.users[who])
        assert client.get(f"/handover?estate={place.code}").status_code == status
        assert client.get("/handover").status_code == status  # their only estate
        if status == 403:
            assert client.post("/handover/hand-over", data={"estate": place.code, "notes": "x"}).status_code == 403


def test_another_estates_staff_get_404(client: TestClient, dash_world: DashWorld, place: HandoverPlace) -> None:
    with Session(dash_world.engine) as s:
        any_record = s.scalars(select(ShiftHandover.id).where(ShiftHandover.estate_id == place.estate_id)).first()
    with pinned(local(DAY, 12)):
        _as(client, "engineer-user")  # the sample estate's engineer
        assert client.get(f"/handover?estate={place.code}").status_code == 404
        if any_record is not None:
            assert client.get(f"/handover/{any_record}").status_code == 404
            assert client.post(f"/handover/{any_record}/sign", data={}).status_code == 404
        assert client.get(f"/wall?estate={place.code}").status_code == 404
        assert client.get(f"/handover/{2_000_000_000}").status_code == 404


@pytest.mark.parametrize(("who", "status"), [("manager", 200), ("supervisor", 403), ("eng1", 403), ("viewer", 403)])
def test_who_issues_display_tokens(client: TestClient, place: HandoverPlace, who: str, status: int) -> None:
    _as(client, place.users[who])
    assert client.get(f"/wall/tokens?estate={place.code}").status_code == status
    created = client.post("/wall/tokens", data={"estate": place.code, "name": f"测试屏 {who}"})
    assert created.status_code == (201 if status == 200 else 403)


def test_a_display_token_reads_its_wall_and_nothing_else(
    client: TestClient, dash_world: DashWorld, place: HandoverPlace
) -> None:
    _as(client, place.users["manager"])
    issued = client.post("/wall/tokens", data={"estate": place.code, "name": "监控中心大屏（页面测试）"})
    assert issued.status_code == 201
    found = re.search(r'id="wall-secret">([^<]+)<', issued.text)
    assert found is not None
    secret = found.group(1)

    client.cookies.clear()
    first = client.get(f"/wall?estate={place.code}")
    assert first.status_code == 303
    assert first.headers["location"] == f"/wall/connect?estate={place.code}"
    assert client.post("/wall/connect", data={"token": secret + "x"}).status_code == 401
    connected = client.post("/wall/connect", data={"token": secret})
    assert connected.status_code == 303
    assert connected.headers["location"] == f"/wall?estate={place.code}"
    assert client.cookies.get(DISPLAY_COOKIE) == secret
    wall = client.get(f"/wall?estate={place.code}")
    assert wall.status_code == 200
    assert 'data-severity="critical"' in wall.text
    assert "1号配电房" in wall.text
    assert "生活水泵房" in wall.text
    assert client.get("/wall").status_code == 200  # the token names its estate
    assert client.get("/wall/connect").headers["location"] == f"/wall?estate={place.code}"  # no prompt again

    # Nothing but its own wall: other estates, the staff pages, the forms and the JSON API ignore it.
    assert client.get(f"/wall?estate={dash_world.estate}").status_code == 404
    for path in (f"/estates/{place.code}", f"/handover?estate={place.code}", f"/rooms/{place.room_id}", "/alarms"):
        r = client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login"), path
    posted = client.post("/handover/hand-over", data={"estate": place.code, "notes": "大屏不能交班"})
    assert posted.status_code == 303
    assert posted.headers["location"].startswith("/login")
    assert (
        client.post("/wall/tokens", data={"estate": place.code, "name": "x"}).headers["location"].startswith("/login")
    )
    for path in ("/api/estates", f"/api/estates/{place.code}/handover", "/api/alarms", f"/api/rooms/{place.room_id}"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": f"Bearer {secret}"}).status_code == 401, path
    assert client.get(f"/live/rooms/{place.room_id}").status_code == 401

    # Revoked: the next request of the screen goes back to the connect page, which says why, once.
    with Session(dash_world.engine) as s:
        token_id = s.scalars(select(DisplayToken.id).where(DisplayToken.name == "监控中心大屏（页面测试）")).one()
    display_cookie = client.cookies.get(DISPLAY_COOKIE)
    _as(client, place.users["manager"])
    assert client.post(f"/wall/tokens/{token_id}/revoke").status_code == 303
    client.cookies.clear()
    client.cookies.set(DISPLAY_COOKIE, str(display_cookie))
    assert client.get(f"/wall?estate={place.code}").headers["location"] == f"/wall/connect?estate={place.code}"
    assert client.get(f"/live/wall?estate={place.code}").status_code == 401
    ended = client.get(f"/wall/connect?estate={place.code}")
    assert ended.status_code == 200
    assert "已撤销或过期" in ended.text
    with Session(dash_world.engine) as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object == f"display_token:{token_id}")).all()
    assert {"display_token.create", "display.connect", "display_token.revoke"} <= set(actions)


def test_staff_open_the_wall_of_their_estate(client: TestClient, place: HandoverPlace) -> None:
    _as(client, place.users["viewer"])
    assert client.get(f"/wall?estate={place.code}&every=5").status_code == 200
    _as(client, place.users["steward"])
    assert client.get(f"/wall?estate={place.code}").status_code == 403


def test_a_foreign_page_cannot_connect_a_screen(client: TestClient) -> None:
    """Login CSRF for screens: another site must not connect a browser to a wall with a token of its choosing."""
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    r = client.post("/wall/connect", data={"token": "std_" + "x" * 43}, headers=evil)
    assert r.status_code == 403
    assert DISPLAY_COOKIE not in r.cookies


def test_the_pages_speak_english_too(client: TestClient, place: HandoverPlace) -> None:
    with pinned(local(DAY, 21)):
        _as(client, place.users["supervisor"])
        client.cookies.set("lang", "en")
        page = client.get(f"/handover?estate={place.code}")
        assert page.status_code == 200
        assert "Shift handover" in page.text
        assert "Winding temp. A" in page.text
        wall = client.get(f"/wall?estate={place.code}")
        assert "Control-room display" in wall.text
        assert "Power room PR1" in wall.text  # rooms by kind and code in English, as on the room pages
