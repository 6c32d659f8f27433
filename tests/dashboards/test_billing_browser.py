"""The billing clerk's pages in a real browser at 375 px (Debian's chromium, headless, driven by Playwright): the
account list and one account, with a payment committed by another connection appearing on the open account page
without a reload (``NOTIFY steward_billing`` → ``/live/billing``). Screenshots go to the test's tmp directory.

The app runs as ``uvicorn steward.asgi:app`` in a child process against the dashboards' world (as
tests/dashboards/test_browser.py). Without a chromium binary this skips, unless ``STEWARD_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from billing import service
from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    LIVE_TIMEOUT_MS,
    PHONE,
    browser,
    log_in,
    new_page,
)
from tests.support.billing_world import billing_place, fresh_account


@pytest.fixture(scope="module")
def billing_server(
    dash_world: DashWorld,
    browser: Any,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    billing_place(dash_world.engine, dash_world.estate)  # committed before the server reads
    app = AppServer(dash_world.url, tmp_path_factory.mktemp("billing-server"))
    try:
        yield app.start()
    finally:
        app.stop()


def test_the_clerk_sees_accounts_and_a_payment_arrive_live_at_375px(
    browser: Any,  # noqa: F811
    billing_server: AppServer,
    dash_world: DashWorld,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    place = billing_place(dash_world.engine, dash_world.estate)
    low = fresh_account(dash_world.engine, dash_world.estate)
    base = billing_server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "billing_clerk-user")
    page.goto(f"{base}/billing?estate={dash_world.estate}")
    expect(page.locator("h1")).to_have_text("热水账户")
    expect(page.locator(f'tr[data-account="{low}"]')).to_have_class("low")
    expect(page.locator(f'tr[data-account="{place.account_id}"] td[data-field="balance"]')).to_contain_text("¥")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    # Nothing wider than the phone: the clerk never scrolls sideways on the list.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "billing-accounts-375.png"), full_page=True)

    page.click(f'tr[data-account="{low}"] a')
    expect(page.locator("#top-up-form")).to_be_visible()
    expect(page.locator('[data-field="balance"]').first).to_have_text("¥0.00")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "billing-account-375.png"), full_page=True)

    # A bank transfer booked elsewhere (another connection, committed): the open page shows it without a reload.
    with Session(dash_world.engine) as s, s.begin():
        service.record_payment(
            s,
            account_id=low,
            amount_fen=12345,
            method="bank_transfer",
            idempotency_key=uuid.uuid4().hex,
            actor="browser-test",
        )
    expect(page.locator('[data-field="balance"]').first).to_have_text("¥123.45", timeout=LIVE_TIMEOUT_MS)

    # The form pays through the page: the balance moves and the flash says so.
    page.fill("input[name=amount]", "50")
    page.click("#top-up-form button[type=submit]")
    expect(page.locator("#flash")).to_have_text("缴费已入账")
    expect(page.locator('[data-field="balance"]').first).to_have_text("¥173.45")
    page.screenshot(path=str(tmp_path / "billing-account-paid-375.png"), full_page=True)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "billing-account-375.png",
        "billing-account-paid-375.png",
        "billing-accounts-375.png",
    ]
    assert errors == []
    context.close()
