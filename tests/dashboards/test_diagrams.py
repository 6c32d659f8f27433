"""Room system diagrams (组态图) as pages: drawn from the room's devices, coloured by open alarms, grey where a
device is silent, opened by the equipment roles of the room's estate only, and updated live in a real browser.

Alarms are raised the production way: readings decoded and written by ingest's own code with the real
``AlarmEvaluator`` hook in the same transaction (tests/dashboards/test_ticket_pages.py ``AlarmingIngest``), and
cleared by the evaluator when the readings come back down. The world is a database of its own (the sample
estate with the default rules installed), so the alarms raised here touch no other test's pages.
Screenshots: ``diagram-*.png`` beside the other dashboard screenshots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.settings import Settings
from dashboards.diagrams.view import severity_payload
from steward.app import create_app
from tests.dashboards.conftest import login
from tests.dashboards.support import AppServer, Feeder, telemetry
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    DESKTOP,
    LIVE_TIMEOUT_MS,
    PHONE,
    browser,
    log_in,
    new_page,
    output_dir,
)
from tests.dashboards.test_ticket_pages import AlarmingIngest, install_rules
from tests.support.world import SampleWorld, build_sample_world

HOT = 172.2  # above the class F trip level (170 °C): a critical alarm
COOL = 80.0


@pytest.fixture(scope="module")
def world(pg_server_url: str) -> Iterator[SampleWorld]:
    with build_sample_world(pg_server_url, prefix="steward_diagram") as w:
        install_rules(w.engine)
        # One frame from every room device but TR2, which has never reported (its drawing is grey).
        ingest = AlarmingIngest(w.engine)
        ingest.send(Feeder(ingest, w.estate, w.nominal, silent={"TR2"}).frame())
        yield w


@pytest.fixture(scope="module")
def client(world: SampleWorld) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), engine=world.engine), follow_redirects=False) as c:
        yield c


def device_g(page: str, device_id: int) -> str:
    m = re.search(rf'<g class="[^"]*" data-device-id="{device_id}"[^>]*>', page)
    assert m, f"device {device_id} is not drawn"
    return m.group(0)


def reading_g(page: str, point_id: int) -> str:
    m = re.search(rf'<g class="dg-reading[^"]*" data-point-id="{point_id}"[^>]*>', page)
    assert m, f"point {point_id} is not drawn"
    return m.group(0)


def reading(world: SampleWorld, device: str, metric: str, value: float) -> None:
    AlarmingIngest(world.engine).send([telemetry(world.estate, device, {metric: value})])


def open_alarms(world: SampleWorld, device: str) -> list[str]:
    with world.engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT severity FROM alarms WHERE device_id = :d AND state <> 'cleared'"),
                {"d": world.devices[device]},
            ).scalars()
        )


def test_the_room_page_shows_the_rooms_system_diagram(client: TestClient, world: SampleWorld) -> None:
    login(client)
    room = world.rooms["PR1"]
    page = client.get(f"/rooms/{room}").text
    assert 'id="diagram"' in page
    assert "系统图" in page
    assert f'href="/rooms/{room}/diagram"' in page
    assert page.count('class="dg-node dg-transformer') == 2
    assert page.count('class="dg-node dg-breaker') == 2
    for code in ("TR1", "TR2", "LV1", "LV2", "CAP1", "PR1-ENV"):
        assert f'data-device-id="{world.devices[code]}"' in page
    for label in ("10 kV 市电进线", "0.4 kV 低压母线", "其他设备", "A相绕组温度", "投入组数"):
        assert label in page
    point = world.point_ids[("TR1", "winding_temp_a_c")]
    assert 'data-severity="ok"' in reading_g(page, point)
    # Never an id where a label belongs.
    assert "device:" not in page
    assert "point:" not in page
    # TR2 never reported: grey, whatever its alarms.
    assert "dg-stale" in device_g(page, world.devices["TR2"])
    assert 'data-status="never"' in device_g(page, world.devices["TR2"])
    assert "dg-stale" not in device_g(page, world.devices["TR1"])


@pytest.mark.parametrize("room", ["HS1", "PUMP1", "FIRE1", "HWP1"])
def test_every_room_kind_has_its_diagram(client: TestClient, world: SampleWorld, room: str) -> None:
    login(client)
    r = client.get(f"/rooms/{world.rooms[room]}/diagram")
    assert r.status_code == 200
    expected = {"HS1": "一次网（热源）", "PUMP1": "出水 → 供水管网", "FIRE1": "消防主泵", "HWP1": "热水供水 → 用户"}
    assert expected[room] in r.text
    assert 'class="dg-node dg-pump' in r.text
    assert "/live/rooms/" in r.text  # the room's own stream


def test_an_alarm_colours_its_transformer_and_value_until_it_clears(client: TestClient, world: SampleWorld) -> None:
    login(client)
    url = f"/rooms/{world.rooms['PR1']}/diagram"
    tr1, lv1 = world.devices["TR1"], world.devices["LV1"]
    point = world.point_ids[("TR1", "winding_temp_a_c")]
    reading(world, "TR1", "winding_temp_a_c", HOT)
    try:
        assert open_alarms(world, "TR1") == ["critical"]
        page = client.get(url).text
        g = device_g(page, tr1)
        assert "sev-critical" in g
        assert 'data-severity="critical"' in g
        assert "sev-critical" in reading_g(page, point)
        assert "172.2" in page
        # Its neighbours keep their own colour.
        assert 'data-severity="ok"' in device_g(page, lv1)
        assert 'data-severity="ok"' in reading_g(page, world.point_ids[("TR1", "winding_temp_b_c")])
        with Session(world.engine) as s:
            live = severity_payload(s, [tr1, lv1])
        assert live == {"points": {point: "critical"}, "devices": {tr1: "critical"}}
    finally:
        reading(world, "TR1", "winding_temp_a_c", COOL)
    assert open_alarms(world, "TR1") == []
    page = client.get(url).text
    assert 'data-severity="ok"' in device_g(page, tr1)
    assert 'data-severity="ok"' in reading_g(page, point)


@pytest.mark.parametrize(
    ("username", "status"),
    [
        ("engineer-user", 200),
        ("supervisor-user", 200),
        ("manager-user", 200),
        ("viewer-user", 200),
        ("admin-user", 200),
        ("steward-user", 403),
        ("card_admin-user", 403),
        ("billing_clerk-user", 403),
    ],
)
def test_who_opens_a_room_diagram(client: TestClient, world: SampleWorld, username: str, status: int) -> None:
    login(client, username)
    assert client.get(f"/rooms/{world.rooms['PR1']}/diagram").status_code == status


def test_a_diagram_is_scoped_to_the_viewers_estates(client: TestClient, world: SampleWorld) -> None:
    client.cookies.clear()
    r = client.get(f"/rooms/{world.rooms['PR1']}/diagram")
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next=/rooms/{world.rooms['PR1']}/diagram"
    login(client)
    assert client.get(f"/rooms/{world.other_room_id}/diagram").status_code == 404
    assert client.get("/rooms/999999/diagram").status_code == 404
    login(client, "head-office")
    assert client.get(f"/rooms/{world.other_room_id}/diagram").status_code == 200


def test_the_english_diagram(client: TestClient, world: SampleWorld) -> None:
    login(client)
    room = f"/rooms/{world.rooms['PR1']}/diagram"
    client.get(f"/lang/en?next={room}")
    try:
        page = client.get(room).text
        for label in ("System diagram", "10 kV incoming supply", "Other equipment", "Winding temp. A"):
            assert label in page
    finally:
        client.get(f"/lang/zh?next={room}")


# --- in a real browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_feeder(world: SampleWorld) -> Iterator[Feeder]:
    f = Feeder(AlarmingIngest(world.engine), world.estate, world.nominal, silent={"TR2"})
    f.start()
    yield f
    f.stop()
    assert not f.errors, f.errors


@pytest.fixture(scope="module")
def diagram_server(world: SampleWorld, live_feeder: Feeder, browser: Any) -> Iterator[AppServer]:  # noqa: F811
    app = AppServer(world.url, output_dir().parent / "logs")
    try:
        yield app.start()
    finally:
        app.stop()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=True)


def test_a_transformer_alarm_recolours_the_diagram_live(
    browser: Any,  # noqa: F811
    diagram_server: AppServer,
    live_feeder: Feeder,
    world: SampleWorld,
) -> None:
    from playwright.sync_api import expect

    base = diagram_server.base
    room = world.rooms["PR1"]
    tr1, tr2, lv1 = (world.devices[c] for c in ("TR1", "TR2", "LV1"))
    point = world.point_ids[("TR1", "winding_temp_a_c")]
    desk_ctx, desk, errors = new_page(browser, DESKTOP)
    phone_ctx, phone, phone_errors = new_page(browser, PHONE)
    try:
        log_in(desk, base, "zhang.gong")
        desk.goto(f"{base}/rooms/{room}/diagram")
        expect(desk.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
        node = desk.locator(f'g.dg-node[data-device-id="{tr1}"]')
        value = desk.locator(f'g.dg-reading[data-point-id="{point}"]')
        expect(node).to_have_attribute("data-severity", "ok")
        expect(desk.locator(f'g.dg-node[data-device-id="{tr2}"]')).to_have_class(re.compile(r"\bdg-stale\b"))
        desk.evaluate("window.__stewardMarker = 'same page'")

        # The winding runs hot: the value follows, the evaluator raises a critical alarm, the element turns red.
        live_feeder.overrides[("TR1", "winding_temp_a_c")] = HOT
        expect(value.locator('[data-field="text"]')).to_have_text("172.2", timeout=LIVE_TIMEOUT_MS)
        expect(node).to_have_attribute("data-severity", "critical", timeout=LIVE_TIMEOUT_MS)
        expect(node).to_have_class(re.compile(r"\bsev-critical\b"))
        expect(value).to_have_attribute("data-severity", "critical", timeout=LIVE_TIMEOUT_MS)
        expect(desk.locator(f'g.dg-node[data-device-id="{lv1}"]')).to_have_attribute("data-severity", "ok")
        stroke = node.locator(".dg-frame").evaluate("el => getComputedStyle(el).stroke")
        assert stroke == "rgb(220, 38, 38)", stroke
        assert desk.evaluate("window.__stewardMarker") == "same page"  # in place, not by a reload
        shot(desk, "diagram-01-PR1-critical-1366")

        log_in(phone, base, "zhang.gong")
        phone.goto(f"{base}/rooms/{room}")
        expect(phone.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
        expect(phone.locator(f'#diagram g.dg-node[data-device-id="{tr1}"]')).to_have_attribute(
            "data-severity", "critical"
        )
        shot(phone, "diagram-02-PR1-room-critical-375")
        # The diagram itself as the phone shows it (it scrolls sideways when the room is wider than the screen).
        phone.locator("#diagram").screenshot(path=str(output_dir() / "diagram-02-PR1-room-critical-375-diagram.png"))

        # Back to normal: the evaluator clears the alarm and every place returns to normal.
        live_feeder.overrides[("TR1", "winding_temp_a_c")] = COOL
        expect(node).to_have_attribute("data-severity", "ok", timeout=LIVE_TIMEOUT_MS)
        expect(value).to_have_attribute("data-severity", "ok", timeout=LIVE_TIMEOUT_MS)
        expect(phone.locator(f'#diagram g.dg-node[data-device-id="{tr1}"]')).to_have_attribute(
            "data-severity", "ok", timeout=LIVE_TIMEOUT_MS
        )
        shot(desk, "diagram-03-PR1-cleared-1366")

        for code in ("HS1", "PUMP1", "FIRE1", "HWP1"):
            desk.goto(f"{base}/rooms/{world.rooms[code]}/diagram")
            expect(desk.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
            shot(desk, f"diagram-04-{code}-1366")
        phone.goto(f"{base}/rooms/{world.rooms['HS1']}/diagram")
        shot(phone, "diagram-05-HS1-375")
        assert errors == []
        assert phone_errors == []
    finally:
        live_feeder.overrides.pop(("TR1", "winding_temp_a_c"), None)
        desk_ctx.close()
        phone_ctx.close()
