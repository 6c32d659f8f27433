"""Issue 15 §1-2 on the pages (TestClient, the alarm tests' own world): every tile, device card, room card, the
estate overview and the estate list carry their open alarms' severity, count and oldest unacknowledged one; a
value in alarm shows its limit; the banner's content, its stream, the per-user settings and acting in place.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.const import Role
from alarms import store
from alarms.banner_prefs import BannerPrefs, banner_prefs, set_banner_prefs
from core import clock
from core.settings import Settings
from dashboards import banner_view, i18n, rooms_view
from dashboards.render import STATIC_DIR
from dashboards.streaming import BannerWatch
from dashboards.viewer import Viewer
from facility.queries import room_devices
from steward.app import create_app
from storage.models import Alarm, Room, StaffUser
from tests.dashboards.alarm_world import (  # noqa: F401 - alarm_world is a fixture
    AlarmWorld,
    alarm_world,
    clear_everything,
    open_alarm,
)
from tests.dashboards.conftest import login

ALARM_READERS = {Role.admin, Role.engineer, Role.supervisor, Role.manager, Role.viewer, Role.steward}


@pytest.fixture(scope="module")
def app(alarm_world: AlarmWorld) -> FastAPI:  # noqa: F811
    return create_app(Settings(), engine=alarm_world.engine)


@pytest.fixture
def client(app: FastAPI, alarm_world: AlarmWorld) -> Iterator[TestClient]:  # noqa: F811
    clear_everything(alarm_world.engine)
    with TestClient(app, follow_redirects=False) as c:
        yield c
    clear_everything(alarm_world.engine)
    with Session(alarm_world.engine) as s, s.begin():
        for user in s.scalars(select(StaffUser.id)):
            set_banner_prefs(s, user, min_severity="alarm", muted=False)


def overheat(world: AlarmWorld) -> dict[str, int]:
    """TR1's three windings: A 预警 (oldest), B 报警, C critical at 172.2 °C."""
    return {
        "a": open_alarm(world, "TR1", "winding_temp_a_c", "warning", 135.0, ago=timedelta(minutes=5)),
        "b": open_alarm(world, "TR1", "winding_temp_b_c", "alarm", 160.0, ago=timedelta(minutes=4)),
        "c": open_alarm(world, "TR1", "winding_temp_c_c", "critical", 172.2, ago=timedelta(minutes=3)),
    }


def element(html: str, attr: str, value: object) -> str:
    """The opening tag of the element whose ``attr`` is ``value``."""
    match = re.search(rf'<[a-z]+ [^>]*{attr}="{value}"[^>]*>', html)
    assert match is not None, f"no element with {attr}={value}"
    return match.group(0)


def severity_of(tag: str) -> str:
    match = re.search(r'data-severity="([a-z]+)"', tag)
    assert match is not None, tag
    assert f"sev-{match.group(1)}" in tag, tag
    return match.group(1)


def test_room_tiles_and_device_cards_by_severity(client: TestClient, alarm_world: AlarmWorld) -> None:  # noqa: F811
    world = alarm_world
    overheat(world)
    login(client, "zhang.gong")
    html = client.get(f"/rooms/{world.rooms['PR1']}").text
    for metric, sev, limit in (
        ("winding_temp_a_c", "warning", "≥ 130.0 °C"),
        ("winding_temp_b_c", "alarm", "≥ 155.0 °C"),
        ("winding_temp_c_c", "critical", "≥ 170.0 °C"),
    ):
        pid = world.point_ids[("TR1", metric)]
        assert severity_of(element(html, "data-point", pid)) == sev
        tile = html[html.index(f'data-point="{pid}"') :].split("\n</div>", 1)[0]
        assert f'<span class="limit" data-field="limit">{limit}</span>' in tile
    healthy = world.point_ids[("TR1", "load_pct")]
    assert severity_of(element(html, "data-point", healthy)) == "ok"
    assert severity_of(element(html, "data-code", "TR1")) == "critical"
    assert severity_of(element(html, "data-code", "TR2")) == "ok"
    card = html[html.index('data-code="TR1"') :].split("</header>", 1)[0]
    assert "紧急 3 条" in card
    assert "未确认 3" in card
    assert re.search(r"最早未确认 \d\d:\d\d 变压器A相绕组温度高", card)
    assert "device:" not in html

    client.cookies.set("lang", "en")
    html = client.get(f"/rooms/{world.rooms['PR1']}").text
    card = html[html.index('data-code="TR1"') :].split("</header>", 1)[0]
    assert "Critical ×3" in card
    assert "3 unacknowledged" in card
    assert re.search(r"oldest unacknowledged \d\d:\d\d Transformer winding A temperature high", card)


def test_estate_overview_and_estate_list(client: TestClient, alarm_world: AlarmWorld) -> None:  # noqa: F811
    world = alarm_world
    login(client, "zhang.gong")
    calm = client.get(f"/estates/{world.estate}").text
    assert severity_of(element(calm, "data-room", "PR1")) == "ok"
    assert severity_of(element(calm, "data-stat-box", "alarms")) == "ok"
    assert "无报警" in calm

    ids = overheat(world)
    html = client.get(f"/estates/{world.estate}").text
    assert severity_of(element(html, "data-room", "PR1")) == "critical"
    assert severity_of(element(html, "data-room", "PUMP1")) == "ok"
    room_card = html[html.index('data-room="PR1"') :].split("</a>", 1)[0]
    assert "紧急 3 条" in room_card
    assert "变压器A相绕组温度高" in room_card
    stat = element(html, "data-stat-box", "alarms")
    assert severity_of(stat) == "critical"
    assert 'data-stat="alarms"><span class="sev-icon" aria-hidden="true">✖</span> 3' in html

    login(client, "head-office")
    home = client.get("/").text
    assert severity_of(element(home, "data-estate", world.estate)) == "critical"
    assert severity_of(element(home, "data-estate", world.other_estate)) == "ok"
    assert '"live": "/live/home"' in home or '"live":"/live/home"' in home

    # Acknowledged: still open (the colour stays), but nothing is waiting for an owner any more.
    for alarm in ids.values():
        assert client.post(f"/alarms/{alarm}/acknowledge").status_code == 303
    login(client, "zhang.gong")
    room_card = client.get(f"/estates/{world.estate}").text.split('data-room="PR1"', 1)[1].split("</a>", 1)[0]
    assert "均已确认" in room_card
    assert "最早未确认" not in room_card

    clear_everything(world.engine)
    html = client.get(f"/estates/{world.estate}").text
    assert severity_of(element(html, "data-room", "PR1")) == "ok"
    assert "room-alarm" not in html


def test_device_page_rows(client: TestClient, alarm_world: AlarmWorld) -> None:  # noqa: F811
    world = alarm_world
    overheat(world)
    login(client, "zhang.gong")
    html = client.get(f"/devices/{world.devices['TR1']}").text
    pid = world.point_ids[("TR1", "winding_temp_c_c")]
    row = html[html.index(f'data-point="{pid}"') :].split("</tr>", 1)[0]
    assert severity_of(element(html, "data-point", pid)) == "critical"
    assert "≥ 170.0 °C" in row
    assert "紧急 1 条" in row
    assert severity_of(element(html, "data-device", world.devices["TR1"])) == "critical"


def test_live_payload_carries_alarm_state(alarm_world: AlarmWorld) -> None:  # noqa: F811
    world = alarm_world
    clear_everything(world.engine)
    try:
        overheat(world)
        with Session(world.engine) as s:
            room = s.get(Room, world.rooms["PR1"])
            assert room is not None
            data = rooms_view.live_payload(s, room_devices(s, room.id), "zh", i18n.zone("Asia/Shanghai"))
        points = {p["id"]: p for p in data["points"]}
        c = points[world.point_ids[("TR1", "winding_temp_c_c")]]
        assert (c["alarm"]["severity"], c["alarm"]["count"], c["limit"]) == ("critical", 1, "≥ 170.0 °C")
        assert points[world.point_ids[("TR1", "load_pct")]]["alarm"] is None
        assert points[world.point_ids[("TR1", "load_pct")]]["limit"] == ""
        devices = {d["id"]: d for d in data["devices"]}
        assert devices[world.devices["TR1"]]["alarm"]["summary"] == "紧急 3 条"
        assert devices[world.devices["TR2"]]["alarm"] is None
    finally:
        clear_everything(world.engine)


def _viewer(world: AlarmWorld, username: str, lang: i18n.Lang = "zh") -> Viewer:
    with Session(world.engine) as s:
        user = s.scalars(select(StaffUser).where(StaffUser.username == username)).one()
        return Viewer.of(s, user, lang)


def test_banner_names_the_alarm_and_follows_the_users_severity(alarm_world: AlarmWorld) -> None:  # noqa: F811
    world = alarm_world
    clear_everything(world.engine)
    engineer = _viewer(world, "zhang.gong")
    try:
        ids = overheat(world)
        with Session(world.engine) as s:
            m = banner_view.mark(s, engineer)
            assert m is not None
            assert m.prefs == BannerPrefs()
            b = banner_view.payload(s, engineer, m)
        assert b["ids"] == [ids["c"], ids["b"]]  # 报警 and above by default: worst first; the 预警 stays out
        assert b["critical"] == [ids["c"]]
        assert b["total"] == 2
        assert b["muted"] is False
        assert "变压器C相绕组温度高" in b["html"]
        assert "1号配电房 · 1#干式变压器 SCB13-1000/10 · C相绕组温度" in b["html"]
        assert "172.2 °C ≥ 170.0 °C" in b["html"]
        assert f'action="/alarms/{ids["c"]}/acknowledge"' in b["html"]
        assert 'name="reason" required' in b["html"]

        with Session(world.engine) as s, s.begin():
            set_banner_prefs(s, engineer.user_id, min_severity="critical", muted=True)
        with Session(world.engine) as s:
            m2 = banner_view.mark(s, engineer)
            assert m2 is not None
            assert m2 != m
            b2 = banner_view.payload(s, engineer, m2)
        assert b2["ids"] == [ids["c"]]
        assert b2["muted"] is True
        assert 'data-muted="true"' in b2["html"]

        viewer = _viewer(world, "viewer-user", "en")
        with Session(world.engine) as s:
            m3 = banner_view.mark(s, viewer)
            assert m3 is not None
            b3 = banner_view.payload(s, viewer, m3)
        assert "Transformer winding C temperature high" in b3["html"]
        assert "/acknowledge" not in b3["html"]  # a read-only role sees the banner, not the buttons
        clerk = _viewer(world, "billing_clerk-user")
        with Session(world.engine) as s:
            assert banner_view.mark(s, clerk) is None  # no alarms for the billing desk, so no banner
    finally:
        clear_everything(world.engine)
        with Session(world.engine) as s, s.begin():
            set_banner_prefs(s, engineer.user_id, min_severity="alarm", muted=False)


def test_every_stream_adds_the_banner_when_it_changes(alarm_world: AlarmWorld) -> None:  # noqa: F811
    world = alarm_world
    clear_everything(world.engine)
    engineer = _viewer(world, "zhang.gong")
    watch = BannerWatch()
    try:
        with Session(world.engine) as s:
            first = watch.add(s, engineer, {"html": "body"})
        assert first["banner"]["ids"] == []
        assert first["banner"]["html"].strip() == ""
        with Session(world.engine) as s:
            assert "banner" not in watch.add(s, engineer, {"html": "body"})
        alarm = open_alarm(world, "TR1", "winding_temp_a_c", "critical", 171.0)
        with Session(world.engine) as s:
            assert watch.add(s, engineer, {})["banner"]["critical"] == [alarm]
        with world.engine.begin() as conn:
            store.acknowledge(conn, alarm, "zhang.gong", clock.now())
        with Session(world.engine) as s:
            assert watch.add(s, engineer, {})["banner"]["ids"] == []
    finally:
        clear_everything(world.engine)


def test_streams_refuse_those_who_may_not_look(client: TestClient, alarm_world: AlarmWorld) -> None:  # noqa: F811
    assert client.get("/live/alarm-banner").status_code == 401
    assert client.get("/live/home").status_code == 401
    login(client, "billing_clerk-user")
    assert client.get("/live/alarm-banner").status_code == 401
    assert client.get("/live/home").status_code == 401
    login(client, "steward-user")  # stewards see alarms (residents call about them), not the equipment pages
    streams = client.app.state.live.streams  # type: ignore[attr-defined]
    assert client.get("/live/home").status_code == 401
    for user, path in (("steward-user", "/live/alarm-banner"), ("head-office", "/live/home")):
        login(client, user)
        streams._open[user] = streams.per_user  # the first snapshot is built, then the stream limit answers
        try:
            r = client.get(path)
            assert r.status_code == 429, r.text
        finally:
            streams._open.pop(user, None)


@pytest.mark.parametrize("role", list(Role))
def test_banner_settings_by_role(client: TestClient, alarm_world: AlarmWorld, role: Role) -> None:  # noqa: F811
    """The role × route row of POST /alarms/banner-prefs: alarm readers store their own settings, others get 403."""
    username = f"{role.value}-user"
    r = client.post("/alarms/banner-prefs", data={"min_severity": "critical"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")
    login(client, username)
    r = client.post("/alarms/banner-prefs", data={"min_severity": "critical", "muted": ["0", "1"]})
    with Session(alarm_world.engine) as s:
        user_id = s.scalars(select(StaffUser.id).where(StaffUser.username == username)).one()
        stored = banner_prefs(s, user_id)
    if role in ALARM_READERS:
        assert r.status_code == 303
        assert r.headers["location"] == "/alarms"
        assert stored == BannerPrefs("critical", True)
        r = client.post("/alarms/banner-prefs", data={"muted": "0"}, headers={"X-Steward-In-Place": "1"})
        assert r.status_code == 204
        with Session(alarm_world.engine) as s:
            assert banner_prefs(s, user_id) == BannerPrefs("critical", False)
        r = client.post("/alarms/banner-prefs", data={"min_severity": "loud"}, headers={"X-Steward-In-Place": "1"})
        assert r.status_code == 422
        page = client.get("/alarms")
        assert 'id="banner-prefs"' in page.text
        assert 'value="critical" selected' in page.text
    else:
        assert r.status_code == 403
        assert stored == BannerPrefs()


def test_acknowledge_and_clear_in_place(client: TestClient, alarm_world: AlarmWorld) -> None:  # noqa: F811
    ids = overheat(alarm_world)
    in_place = {"X-Steward-In-Place": "1"}
    login(client, "viewer-user")
    assert client.post(f"/alarms/{ids['c']}/acknowledge", headers=in_place).status_code == 403
    login(client, "zhang.gong")
    assert client.post(f"/alarms/{ids['c']}/acknowledge", headers=in_place).status_code == 204
    r = client.post(f"/alarms/{ids['b']}/clear", data={"reason": "  "}, headers=in_place)
    assert r.status_code == 422
    assert r.text == "手动解除须填写原因"
    assert (
        client.post(f"/alarms/{ids['b']}/clear", data={"reason": "现场复核，传感器松动"}, headers=in_place).status_code
        == 204
    )
    with Session(alarm_world.engine) as s:
        c = s.get(Alarm, ids["c"])
        b = s.get(Alarm, ids["b"])
        assert c is not None
        assert b is not None
        assert (c.state, c.acknowledged_by) == ("acknowledged", "zhang.gong")
        assert (b.state, b.clear_note) == ("cleared", "现场复核，传感器松动")
    assert "steward_flash" not in client.cookies  # acting in place leaves no message for the next page
    r = client.post(f"/alarms/{ids['c']}/clear", data={"reason": "x"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_every_staff_page_has_the_banner_for_alarm_readers(client: TestClient, alarm_world: AlarmWorld) -> None:  # noqa: F811
    login(client, "zhang.gong")
    for path in (f"/rooms/{alarm_world.rooms['PR1']}", "/alarms", "/tickets"):
        html = client.get(path).text
        for part in ('id="alarm-banner"', "alarm-banner.js", 'id="alarm-sound"'):
            assert part in html, (path, part)
    login(client, "billing_clerk-user")
    html = client.get("/billing").text
    assert 'id="alarm-banner"' not in html
    assert "alarm-banner.js" not in html


def test_the_alarm_sound_is_a_short_wav() -> None:
    with wave.open(str(STATIC_DIR / "alarm.wav"), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
        assert 0.2 <= seconds <= 2.0
        assert w.getnchannels() == 1
    assert (STATIC_DIR / "alarm-banner.js").stat().st_size > 0
