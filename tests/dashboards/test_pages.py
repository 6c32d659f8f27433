"""Server-side behaviour of the dashboards: login, scoping, roles, language, formatting, no OpenAPI leak."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from dashboards import i18n
from dashboards.live import LiveHub, connect_kwargs
from dashboards.viewer import safe_next
from storage.models import LoginFailure
from tests.dashboards.conftest import PASSWORD, DashWorld, login

TEMPLATES = Path(__file__).resolve().parents[2] / "dashboards" / "templates"


def test_pages_redirect_to_login_and_back(dash_client: TestClient, dash_world: DashWorld) -> None:
    room = dash_world.rooms["PR1"]
    r = dash_client.get(f"/rooms/{room}")
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next=/rooms/{room}"
    r = dash_client.post("/login", data={"username": "engineer-user", "password": PASSWORD, "next": f"/rooms/{room}"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/rooms/{room}"
    assert "steward_session" in r.cookies
    page = dash_client.get(f"/rooms/{room}")
    assert page.status_code == 200
    assert "1号配电房" in page.text
    # The same cookie works for the JSON API.
    assert dash_client.get("/api/auth/me").json()["username"] == "engineer-user"


def test_wrong_password_is_refused_and_counted(dash_client: TestClient, dash_world: DashWorld) -> None:
    r = dash_client.post("/login", data={"username": "viewer-user", "password": "not-the-password", "next": "/"})
    assert r.status_code == 401
    assert "用户名或密码错误" in r.text
    with dash_world.engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(LoginFailure).where(LoginFailure.username == "viewer-user"))
    assert n == 1  # committed, so the rate limit sees it across processes
    with dash_world.engine.begin() as conn:
        conn.execute(text("DELETE FROM login_failures"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/rooms/3", "/rooms/3"),
        ("/devices/1?range=7d", "/devices/1?range=7d"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        ("rooms/3", "/"),
    ],
)
def test_next_only_goes_to_this_site(value: str, expected: str) -> None:
    assert safe_next(value) == expected


def test_estate_scoping_is_404(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    assert dash_client.get(f"/estates/{dash_world.other_estate}").status_code == 404
    assert dash_client.get(f"/rooms/{dash_world.other_room_id}").status_code == 404
    assert dash_client.get(f"/devices/{dash_world.devices['DASHB-S0000']}").status_code == 404
    r = dash_client.get("/rooms/999999")
    assert r.status_code == 404
    assert "不属于您负责的小区" in r.text
    assert dash_client.get(f"/live/rooms/{dash_world.other_room_id}").status_code == 401


def test_home_takes_one_estate_staff_straight_to_it(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    r = dash_client.get("/")
    assert r.status_code == 303
    assert r.headers["location"] == f"/estates/{dash_world.estate}"


def test_head_office_sees_both_estates(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client, "head-office")
    home = dash_client.get("/")
    assert f'data-estate="{dash_world.estate}"' in home.text
    assert f'data-estate="{dash_world.other_estate}"' in home.text
    assert dash_client.get(f"/rooms/{dash_world.other_room_id}").status_code == 200


@pytest.mark.parametrize("role", ["steward", "card_admin", "billing_clerk"])
def test_non_equipment_roles_get_a_polite_403(dash_client: TestClient, dash_world: DashWorld, role: str) -> None:
    login(dash_client, f"{role}-user")
    r = dash_client.get(f"/rooms/{dash_world.rooms['PR1']}")
    assert r.status_code == 403
    assert "无权访问" in r.text
    assert "联系系统管理员" in r.text
    home = dash_client.get("/")
    assert home.status_code == 200
    assert "不使用设备监控页面" in home.text
    assert dash_client.get("/ingest").status_code == 403


def test_viewer_sees_rooms_but_not_ingest(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client, "viewer-user")
    assert dash_client.get(f"/rooms/{dash_world.rooms['HS1']}").status_code == 200
    assert dash_client.get("/ingest").status_code == 403


def test_room_page_shows_values_units_and_stale_age(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    page = dash_client.get(f"/rooms/{dash_world.rooms['PR1']}").text
    for label in ("A相绕组温度", "负载率", "A相电压", "AB线电压", "A相电流", "功率因数", "风机运行"):
        assert label in page
    assert "°C" in page
    assert ">V<" in page
    assert ">A<" in page
    # TR2 stopped reporting 12 minutes ago; every one of its points says so.
    tr2 = page[page.index('data-code="TR2"') : page.index('data-code="LV1"')]
    # (At least 12 minutes: other tests may have run since the world was built.)
    assert len(re.findall(r"已 (1[2-9]|[2-9]\d) 分钟未上报", tr2)) == 6  # four tiles, the fan state, the device
    # Reference lines from the nameplate (class F: warn 130, alarm 155).
    assert "预警 130" in page
    assert "报警 155" in page
    assert "vendor/echarts/echarts.common.min.js" in page
    assert "cdn" not in page.lower()


def test_pump_and_heat_station_pages(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    pump = dash_client.get(f"/rooms/{dash_world.rooms['PUMP1']}").text
    for label in ("出水压力", "水箱液位", "1#泵运行", "MPa", "运行", "停止"):
        assert label in pump
    heat = dash_client.get(f"/rooms/{dash_world.rooms['HS1']}").text
    for label in ("一次供水温度", "二次回水压力", "补水箱液位"):
        assert label in heat


def test_language_toggle(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    room = f"/rooms/{dash_world.rooms['PR1']}"
    r = dash_client.get(f"/lang/en?next={room}")
    assert r.status_code == 303
    assert r.headers["location"] == room
    page = dash_client.get(room).text
    assert "Power room PR1" in page
    assert "Winding temp. A" in page
    assert "no data for 1" in page
    assert 'lang="en"' in page
    dash_client.get(f"/lang/zh?next={room}")
    assert "A相绕组温度" in dash_client.get(room).text


def test_device_page_and_history_ranges(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    device = dash_world.devices["LV1"]
    for rng in ("day", "week", "month", "24h", "7d", "30d"):
        r = dash_client.get(f"/devices/{device}?range={rng}")
        assert r.status_code == 200, r.text
        assert "voltage_ab_v" in r.text
    assert dash_client.get(f"/devices/{device}?range=1y").status_code == 422
    meter = dash_client.get(f"/devices/{dash_world.devices['HW-3-1-1201']}").text
    assert "最近抄表读数" in meter
    assert "1520." in meter


def test_estate_overview(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    page = dash_client.get(f"/estates/{dash_world.estate}").text
    for code in ("PR1", "HS1", "PUMP1", "FIRE1", "HWP1"):
        assert f'data-room="{code}"' in page
    assert "超时未上报" in page
    assert "从未上报" in page
    assert "热水表" in page  # devices by kind


def test_ingest_page_lists_dead_letters_and_quarantine(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    page = dash_client.get("/ingest").text
    assert "GHOST-7" in page
    assert "未登记的设备" in page
    assert "时间戳过旧" in page
    assert "steward/lvyuan/up/PUMP1-VFD/telemetry" in page
    # Estate staff do not see the other estate's rejects; head office does.
    assert "DASHB-S0000" not in page
    login(dash_client, "head-office")
    assert "DASHB-S0000" in dash_client.get("/ingest").text


def test_pages_stay_out_of_the_openapi(dash_client: TestClient) -> None:
    paths = dash_client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not (p.startswith("/api/") or p in ("/health", "/metrics"))]


def test_every_template_string_has_both_languages() -> None:
    keys: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        keys |= set(re.findall(r"\bt\('([a-z0-9_]+)'[,)]", path.read_text(encoding="utf-8")))
    # Keys that templates build: error.html from its kind, the device page's range buttons.
    keys |= {f"{k}_{p}" for k in ("forbidden", "not_found") for p in ("title", "body")}
    keys |= {f"range_{r}" for r in ("day", "week", "month", "custom")}
    missing = sorted(k for k in keys if k not in i18n.STRINGS)
    assert not missing
    for key, (zh, en) in i18n.STRINGS.items():
        assert zh, key
        assert en, key


def test_formatting() -> None:
    assert i18n.format_age(45, "zh") == "45 秒"
    assert i18n.format_age(12 * 60 + 5, "zh") == "12 分钟"
    assert i18n.format_age(3 * 3600, "en") == "3 h"
    assert i18n.stale_text(720, "zh") == "已 12 分钟未上报"
    assert i18n.stale_text(720, "en") == "no data for 12 min"
    assert i18n.stale_text(None, "zh") == "从未上报"
    assert i18n.format_value(0.4512, "MPa", "zh") == "0.451"
    assert i18n.state_text("fault", 1.0, "zh") == ("报警", "alarm")
    assert i18n.state_text("pump_1_running", 0.0, "en") == ("Stopped", "off")
    tz = i18n.zone("Asia/Shanghai")
    ts = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    assert i18n.format_time(ts, tz) == "2026-11-26 08:00:00"
    assert i18n.chart_ms(ts, tz) == int((ts + timedelta(hours=8)).timestamp() * 1000)


def test_hub_wakes_subscribers_on_notify(dash_world: DashWorld) -> None:
    """A NOTIFY from another connection (as ingest's commit sends) reaches every subscriber."""

    async def scenario() -> tuple[bool, bool, int]:
        hub = LiveHub(connect_kwargs(dash_world.engine))
        hub.start()
        try:
            for _ in range(100):
                if hub.listening:
                    break
                await asyncio.sleep(0.05)
            a, b = hub.subscribe(), hub.subscribe()
            await a.wait(0.01)  # the connect-time broadcast
            await b.wait(0.01)
            with dash_world.engine.begin() as conn:
                conn.execute(text("SELECT pg_notify('steward_ingest', '{\"stored\": 7}')"))
            got_a, got_b = await a.wait(5), await b.wait(5)
            return got_a, got_b, hub.rates().notifications
        finally:
            await hub.stop()

    got_a, got_b, notes = asyncio.run(scenario())
    assert got_a
    assert got_b
    assert notes >= 1


def _updates_under_flood(snapshot: Callable[[], dict[str, int]], *, min_interval: float, seconds: float) -> int:
    """How many updates a stream sends in ``seconds`` while notifications arrive every 10 ms (each is asserted an
    ``update``); the hub is never started: the test plays the listener."""
    from dashboards.live import event_stream

    async def flood() -> int:
        hub = LiveHub({})

        async def notify() -> None:
            while True:
                hub.broadcast()
                await asyncio.sleep(0.01)

        pump = asyncio.create_task(notify())
        events = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async for event in event_stream(hub, snapshot, min_interval=min_interval, tick=5.0):
            assert event.event == "update"
            events += 1
            if loop.time() > deadline:
                break
        pump.cancel()
        return events

    return asyncio.run(flood())


def test_stream_is_throttled_ticks_and_ends_when_the_login_does() -> None:
    """Notifications every 10 ms yield about one read a second; silence still yields a tick; None ends it."""
    from dashboards.live import event_stream

    reads = 0

    def snapshot() -> dict[str, int]:
        nonlocal reads
        reads += 1
        return {"n": reads}

    assert 3 <= _updates_under_flood(snapshot, min_interval=1.0, seconds=2.5) <= 4

    async def quiet() -> list[str]:
        hub = LiveHub({})
        calls = iter([{"a": 1}, {"a": 2}, None])
        return [e.event async for e in event_stream(hub, lambda: next(calls), min_interval=0.0, tick=0.05)]

    assert asyncio.run(quiet()) == ["update", "update", "expired"]


def test_a_slow_snapshot_waits_as_long_as_it_took() -> None:
    """A snapshot of 0.3 s under a flood of notifications with a 0.1 s interval: reads back off to one per
    0.6 s (0.3 s reading, 0.3 s waiting), not one right after another."""

    def snapshot() -> dict[str, int]:
        time.sleep(0.3)
        return {}

    # With only the 0.1 s interval it would be one read every 0.4 s, 6 in 2 s; every 0.6 s it is 4 (at 0, 0.6,
    # 1.2 and 1.8 s), fewer only if the machine stalls.
    assert 2 <= _updates_under_flood(snapshot, min_interval=0.1, seconds=2.0) <= 4


# --- issue 9 #14: live streams per user are bounded -------------------------------------------------------------


def test_stream_limits_count_open_streams_and_release_them() -> None:
    from dashboards.live import StreamLimits

    closed: list[str] = []

    async def stream(name: str) -> AsyncGenerator[str, None]:
        try:
            while True:
                yield name
                await asyncio.sleep(0)
        finally:
            closed.append(name)

    async def scenario() -> None:
        limits = StreamLimits(per_user=2)
        a, b = limits.bounded("wang", stream("a")), limits.bounded("wang", stream("b"))
        assert await anext(a) == "a"
        assert await anext(b) == "b"
        assert limits.full("wang")
        assert not limits.full("li")
        await a.aclose()  # the browser went away
        assert limits.open_count("wang") == 1
        assert not limits.full("wang")
        await b.aclose()
        assert limits.open_count("wang") == 0
        assert closed == ["a", "b"]  # the inner streams ran their clean-up (hub unsubscribe)

    asyncio.run(scenario())


@pytest.mark.parametrize("path", ["/live/rooms/{room}", "/live/tickets"])
def test_a_user_at_the_stream_limit_gets_429(dash_client: TestClient, dash_world: DashWorld, path: str) -> None:
    login(dash_client)
    streams = dash_client.app.state.live.streams  # type: ignore[attr-defined]
    streams._open["engineer-user"] = streams.per_user  # as if that many tabs were streaming already
    try:
        r = dash_client.get(path.format(room=next(iter(dash_world.rooms.values()))))
        assert r.status_code == 429, r.text
        assert "实时页面打开过多" in r.text
    finally:
        streams._open.pop("engineer-user", None)
