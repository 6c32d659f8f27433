"""Chromium at 375 px: the customer-service supervisor opens 每日汇总 of the seeded day (tests/support/summary.py) on a
phone; the figures and the past-due ticket are there, nothing scrolls sideways, the ticket link opens the ticket, and
the print layout hides the navigation. Screenshots go to the test's tmp directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    PHONE,
    browser,
    log_in,
    new_page,
)
from tests.support.summary import DAY, seed_summary_day


@pytest.fixture(scope="module")
def summary_server(
    dash_world: DashWorld,
    browser: Any,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    app = AppServer(dash_world.url, tmp_path_factory.mktemp("summary-server"))
    try:
        yield app.start()
    finally:
        app.stop()


def test_the_daily_summary_on_a_phone(
    browser: Any,  # noqa: F811
    summary_server: AppServer,
    dash_world: DashWorld,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    seeded = seed_summary_day(dash_world.engine, dash_world.estate)
    base = summary_server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "supervisor-user")
    page.goto(f"{base}/")
    page.click('nav a[href="/summary/daily"]')  # from the navigation
    expect(page.locator("h1")).to_contain_text("每日汇总")
    page.goto(f"{base}/summary/daily?estate={dash_world.estate}&date={DAY.isoformat()}")
    expect(page.locator('#sum-stats [data-stat="tickets_opened"]')).to_have_text("2")
    expect(page.locator('#sum-stats [data-stat="breached"]')).to_have_text("1")
    expect(page.locator('#sum-stats [data-stat="missed"]')).to_have_text("1")
    expect(page.locator(f'#sum-tickets li[data-ticket="{seeded.breached_id}"]')).to_contain_text("到场时限")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "daily-summary-375.png"), full_page=True)

    page.emulate_media(media="print")
    assert not page.locator("header.topbar").is_visible()
    assert not page.locator("#sum-print").is_visible()
    expect(page.locator("#sum-tickets")).to_be_visible()
    page.screenshot(path=str(tmp_path / "daily-summary-print.png"), full_page=True)
    page.emulate_media(media="screen")

    page.click(f'#sum-tickets a[href="/tickets/{seeded.breached_id}"]')
    expect(page.locator("h1")).to_contain_text(seeded.breached_number)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["daily-summary-375.png", "daily-summary-print.png"]
    assert errors == []
    context.close()
