"""The dashboards in a real browser: Debian's chromium, headless, driven by Playwright (no browser download).

The app runs as ``uvicorn steward.asgi:app`` in a child process against the dashboard world's database; a
feeder thread plays the room devices' simulators through ingest's own decoder and writer, so every
value on screen arrived the way production data does (commit, then ``NOTIFY steward_ingest``).
Screenshots of every page go to ``$STEWARD_TEST_OUTPUT/screenshots`` (default ``test-output/screenshots``).

Without a chromium binary these tests skip, unless ``STEWARD_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steward.broker import MosquittoProcess
from tests.dashboards.conftest import PASSWORD, DashWorld
from tests.dashboards.support import AppServer, Feeder, InProcessIngest, telemetry
from tests.support.ingest_process import IngestProcess
from tests.support.publisher import OraclePublisher

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 375, "height": 812}
LIVE_TIMEOUT_MS = 15_000


def _required() -> bool:
    return os.environ.get("STEWARD_REQUIRE_BROWSER", "") not in ("", "0", "false")


def chromium_executable() -> str:
    path = os.environ.get("STEWARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if path is None:
        message = "no chromium binary on PATH (apt-get install chromium fonts-noto-cjk)"
        if _required():
            pytest.fail(f"STEWARD_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message + "; STEWARD_REQUIRE_BROWSER=1 makes this a failure")
    return path


def output_dir() -> Path:
    base = Path(os.environ.get("STEWARD_TEST_OUTPUT") or ROOT / "test-output")
    out = base / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _required():
            pytest.fail("STEWARD_REQUIRE_BROWSER=1 but playwright is not installed")
        pytest.skip("playwright is not installed (pip install -e .[dev])")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def feeder(dash_world: DashWorld) -> Iterator[Feeder]:
    f = Feeder(InProcessIngest(dash_world.engine), dash_world.estate, dash_world.nominal, silent={"TR2"})
    f.start()
    yield f
    f.stop()
    assert not f.errors, f.errors


@pytest.fixture(scope="module")
def server(dash_world: DashWorld, feeder: Feeder, browser: Any) -> Iterator[AppServer]:
    app = AppServer(dash_world.url, output_dir().parent / "logs")
    try:
        yield app.start()  # stopped also when it never came up
    finally:
        app.stop()


class Shots:
    def __init__(self) -> None:
        self.dir = output_dir()
        self.taken: list[Path] = []

    def __call__(self, page: Any, name: str, *, first_screen: bool = False) -> None:
        wait_for_charts(page)
        path = self.dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if first_screen:  # what a technician sees on opening the page, before scrolling
            top = self.dir / f"{name}-first-screen.png"
            page.screenshot(path=str(top))
            self.taken.append(top)


def wait_for_charts(page: Any) -> None:
    page.wait_for_function(
        "document.querySelectorAll('.chart').length === document.querySelectorAll('.chart canvas').length"
    )


def new_page(browser: Any, viewport: dict[str, int]) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    # A 403/404 page is itself expected; a failing script, stylesheet or stream request is not.
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}") if r.status >= 400 and r.request.resource_type != "document" else None
        ),
    )
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    return context, page, errors


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url


def test_log_in_open_a_room_see_a_value_change_live_and_switch_language(
    browser: Any, server: AppServer, feeder: Feeder, dash_world: DashWorld
) -> None:
    from playwright.sync_api import expect

    shots = Shots()
    base = server.base
    room = dash_world.rooms["PR1"]
    point = dash_world.point_ids[("TR1", "winding_temp_a_c")]
    context, page, errors = new_page(browser, DESKTOP)

    page.goto(f"{base}/rooms/{room}")
    expect(page).to_have_url(re.compile(r"/login\?next=/rooms/"))
    expect(page.locator("h1")).to_have_text("Steward 物业设备监控")
    shots(page, "01-login")
    page.fill("input[name=username]", "zhang.gong")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/rooms/{room}")
    expect(page.locator("h1")).to_contain_text("1号配电房")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)

    # A reading arrives through ingest (decode, write, commit, NOTIFY): the tile follows without a reload.
    page.evaluate("window.__stewardMarker = 'same page'")
    tile = page.locator(f'.tile[data-point="{point}"] [data-field="text"]')
    assert tile.inner_text() != "123.4"
    feeder.overrides[("TR1", "winding_temp_a_c")] = 123.4
    expect(tile).to_have_text("123.4", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__stewardMarker") == "same page"
    chart_id = f"chart-{dash_world.devices['TR1']}-0"
    last = page.evaluate(
        f"echarts.getInstanceByDom(document.getElementById('{chart_id}')).getOption().series[0].data.slice(-1)[0][1]"
    )
    assert last == 123.4

    # TR2 has been silent since the world was built: marked, with how long ago.
    tr2 = page.locator('[data-code="TR2"] .tile').first
    expect(tr2).to_have_class(re.compile(r"\bstale\b"))
    expect(tr2.locator(".stale-badge")).to_have_text(re.compile(r"^已 \d+ 分钟未上报$"))
    expect(page.locator('[data-code="TR1"] .tile').first).not_to_have_class(re.compile(r"\bstale\b"))
    shots(page, "03-room-PR1-zh")

    page.click("#lang-toggle")
    expect(page.locator("h1")).to_contain_text("Power room PR1")
    expect(page.locator(f'.tile[data-point="{point}"] .tile-label')).to_have_text("Winding temp. A")
    expect(tr2.locator(".stale-badge")).to_have_text(re.compile(r"^no data for \d+ min$"))
    expect(page.locator("#lang-toggle")).to_have_text("中文")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    shots(page, "04-room-PR1-en")

    page.click("#lang-toggle")
    expect(page.locator("h1")).to_contain_text("1号配电房")
    expect(page.locator(f'.tile[data-point="{point}"] .tile-label')).to_have_text("A相绕组温度")
    expect(page.locator("#lang-toggle")).to_have_text("English")
    del feeder.overrides[("TR1", "winding_temp_a_c")]
    context.close()
    assert not errors, errors


def test_screenshots_of_every_page(browser: Any, server: AppServer, dash_world: DashWorld) -> None:
    from playwright.sync_api import expect

    shots = Shots()
    base = server.base
    # Head office sees a list of estates; someone with one estate lands on it directly.
    context, page, errors = new_page(browser, DESKTOP)
    log_in(page, base, "head-office")
    expect(page.locator(f'[data-estate="{dash_world.other_estate}"]')).to_be_visible()
    shots(page, "02-home-head-office")
    context.close()

    context, page, more = new_page(browser, DESKTOP)
    errors += more
    log_in(page, base, "zhang.gong")
    expect(page).to_have_url(f"{base}/estates/{dash_world.estate}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator('[data-room="PR1"]')).to_be_visible()
    shots(page, "05-estate")
    for code in ("HS1", "PUMP1", "FIRE1", "HWP1"):
        page.goto(f"{base}/rooms/{dash_world.rooms[code]}")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
        shots(page, f"06-room-{code}")
    page.goto(f"{base}/devices/{dash_world.devices['TR1']}")
    expect(page.locator("table.points")).to_be_visible()
    shots(page, "07-device-TR1")
    page.goto(f"{base}/devices/{dash_world.devices['LV1']}?range=week")
    shots(page, "07-device-LV1-week")
    page.goto(f"{base}/devices/{dash_world.devices['HW-3-1-1201']}")
    expect(page.locator("text=最近抄表读数")).to_be_visible()
    shots(page, "07-device-HW-meter")
    page.goto(f"{base}/ingest")
    expect(page.locator("text=GHOST-7")).to_be_visible()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    shots(page, "08-ingest")
    page.goto(f"{base}/rooms/{dash_world.other_room_id}")
    expect(page.locator("h1")).to_have_text("未找到")
    shots(page, "09-not-found")
    context.close()

    context, page, more = new_page(browser, DESKTOP)
    log_in(page, base, "steward-user")
    page.goto(f"{base}/rooms/{dash_world.rooms['PR1']}")
    expect(page.locator("h1")).to_have_text("无权访问")
    shots(page, "09-forbidden-steward")
    context.close()
    assert not errors + more, errors + more


def test_pages_fit_a_375px_phone(browser: Any, server: AppServer, dash_world: DashWorld) -> None:
    from playwright.sync_api import expect

    shots = Shots()
    base = server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "zhang.gong")
    pages = {
        "estate": f"/estates/{dash_world.estate}",
        "room-PR1": f"/rooms/{dash_world.rooms['PR1']}",
        "room-PUMP1": f"/rooms/{dash_world.rooms['PUMP1']}",
        "device-LV1": f"/devices/{dash_world.devices['LV1']}",
        "ingest": "/ingest",
    }
    for name, path in pages.items():
        page.goto(f"{base}{path}")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
        wait_for_charts(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name} is {width}px wide on a {PHONE['width']}px phone"
        shots(page, f"10-phone-{name}", first_screen=True)
    context.close()
    assert not errors, errors


@pytest.mark.broker
def test_a_reading_published_over_mqtt_shows_up_live(
    browser: Any,
    server: AppServer,
    feeder: Feeder,
    dash_world: DashWorld,
    mosquitto: MosquittoProcess,
    tmp_path: Path,
) -> None:
    """The whole chain: MQTT publish → Mosquitto → ``steward run ingest`` → commit + NOTIFY → API → browser."""
    import json

    from playwright.sync_api import expect

    ingest = IngestProcess(dash_world.url, mosquitto.url, tmp_path / "logs", client_id="steward-ingest-dash")
    feeder.silent.add("PUMP1-TANK")  # from now on only MQTT speaks for this tank
    publisher = OraclePublisher("127.0.0.1", mosquitto.port, client_id="dash-pub")
    context, page, errors = new_page(browser, PHONE)
    try:
        ingest.start()
        log_in(page, server.base, "zhang.gong")
        page.goto(f"{server.base}/rooms/{dash_world.rooms['PUMP1']}")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
        point = dash_world.point_ids[("PUMP1-TANK", "tank_level_m")]
        tile = page.locator(f'.tile[data-point="{point}"] [data-field="text"]')
        expect(tile).not_to_have_text("3.33")
        topic, payload = telemetry(dash_world.estate, "PUMP1-TANK", {"tank_level_m": 3.33})
        publisher.publish_all([("tank", topic, json.dumps(payload).encode())])
        publisher.drain()
        assert "tank" in publisher.log.acked
        expect(tile).to_have_text("3.33", timeout=LIVE_TIMEOUT_MS)
        Shots()(page, "11-phone-room-PUMP1-after-mqtt", first_screen=True)
    finally:
        publisher.close()
        feeder.silent.discard("PUMP1-TANK")
        ingest.stop()
        context.close()
    assert not errors, errors


def test_notice_queue_on_a_phone_and_the_printable_notice(
    browser: Any, server: AppServer, dash_world: DashWorld
) -> None:
    """The clerk approves a renewal notice on a 375 px phone and opens its A4 printable page (screenshots)."""
    from tests.dashboards.test_billing_notice_pages import new_notice

    notice_id, number = new_notice(dash_world)
    shots = Shots()
    base = server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "billing_clerk-user")
    page.goto(f"{base}/billing/notices")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the notice queue is {width}px wide on a {PHONE['width']}px phone"
    shots(page, "20-phone-notice-queue", first_screen=True)
    row = page.locator(f'tr[data-notice="{notice_id}"]')
    row.locator('form[action$="/approve"] button').click()
    page.wait_for_load_state()
    assert page.locator(f'tr[data-notice="{notice_id}"]').get_attribute("data-status") == "approved"
    page.goto(f"{base}/billing/notices/{notice_id}/print")
    assert number in page.inner_text("article.notice")
    shots(page, "21-notice-print")
    context.close()
    assert not errors, errors
