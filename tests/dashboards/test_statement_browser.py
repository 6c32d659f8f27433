"""The statement list, a printable statement and the manual-reading form in a real browser at 375 px (Debian's
chromium, headless, driven by Playwright), as tests/dashboards/test_billing_browser.py. Screenshots go to the
test's tmp directory. Without a chromium binary this skips, unless ``STEWARD_REQUIRE_BROWSER=1``."""

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
from tests.support.billing_world import billing_place, statement_for


@pytest.fixture(scope="module")
def statement_server(
    dash_world: DashWorld,
    browser: Any,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    statement_for(dash_world.engine, dash_world.estate)  # committed before the server reads
    app = AppServer(dash_world.url, tmp_path_factory.mktemp("statement-server"))
    try:
        yield app.start()
    finally:
        app.stop()


def test_statements_and_manual_readings_work_at_375px(
    browser: Any,  # noqa: F811
    statement_server: AppServer,
    dash_world: DashWorld,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    statement = statement_for(dash_world.engine, dash_world.estate)
    base = statement_server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "billing_clerk-user")
    page.goto(f"{base}/billing/statements?estate={dash_world.estate}&quarter=2026Q4")
    expect(page.locator(f'tr[data-statement="{statement}"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "statements-375.png"), full_page=True)

    page.goto(f"{base}/billing/statements/{statement}/print")
    expect(page.locator("h1")).to_have_text("热水费季度对账单")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "statement-print-375.png"), full_page=True)

    place = billing_place(dash_world.engine, dash_world.estate)
    page.goto(f"{base}/billing/manual-readings?estate={dash_world.estate}")
    expect(page.locator("#manual-reading-form")).to_be_visible()
    page.select_option("select[name=device]", f"{dash_world.estate.upper()}-HWB")
    page.fill("input[name=read_at]", "2026-11-25T09:41")
    page.fill("input[name=value]", "8888.8")
    page.click("#manual-reading-form button[type=submit]")
    expect(page.locator("#flash")).to_have_text("抄表读数已登记")
    expect(page.locator('tr[data-verdict="mismatch"]').first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "manual-readings-375.png"), full_page=True)
    assert place.meter_id > 0
    assert errors == []
    context.close()
