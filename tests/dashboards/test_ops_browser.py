"""Chromium at 375 px: the engineer opens 设备指令, a command the device acknowledges meanwhile turns 已确认 without a
reload (the /live/commands stream); the manager retries a failed delivery on 通知发送记录. Nothing scrolls
sideways. Screenshots go to the test's tmp directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import clock
from storage.models import Outbox
from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    LIVE_TIMEOUT_MS,
    PHONE,
    browser,
    log_in,
    new_page,
)
from tests.dashboards.test_ops_pages import commands, deliveries


@pytest.fixture(scope="module")
def ops_server(
    dash_world: DashWorld,
    browser: Any,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    app = AppServer(dash_world.url, tmp_path_factory.mktemp("ops-server"))
    try:
        yield app.start()
    finally:
        app.stop()


def test_commands_update_live_and_a_delivery_is_retried_at_375px(
    browser: Any,  # noqa: F811
    ops_server: AppServer,
    dash_world: DashWorld,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    ids = commands(dash_world)
    base = ops_server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "engineer-user")
    page.goto(f"{base}/commands")
    expect(page.locator("h1")).to_have_text("设备指令")
    row = page.locator(f'tr[data-command="{ids["billing"]}"]')
    expect(row).to_have_attribute("data-status", "pending")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "commands-375.png"), full_page=True)

    # The device's ack lands (ingest writes it in another process): the open page shows it without a reload.
    with Session(dash_world.engine) as s, s.begin():
        now = clock.now()
        s.execute(
            update(Outbox).where(Outbox.id == ids["billing"]).values(status="acknowledged", sent_at=now, acked_at=now)
        )
    expect(row).to_have_attribute("data-status", "acknowledged", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("设备已确认")

    context.close()
    context, page, more = new_page(browser, PHONE)  # the project manager, on another phone
    log_in(page, base, "manager-user")
    sent = deliveries(dash_world)
    page.goto(f"{base}/notifications?status=failed")
    expect(page.locator("h1")).to_have_text("通知发送记录")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "notifications-375.png"), full_page=True)
    page.click(f'tr[data-delivery="{sent["failed"]}"] button[type=submit]')
    expect(page.locator("#flash")).to_have_text("已安排立即重试")
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["commands-375.png", "notifications-375.png"]
    assert errors + more == []
    context.close()
