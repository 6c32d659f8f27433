"""The card desk in a real browser at 375 px (Debian's chromium, headless, driven by Playwright): the register,
a household's quota and issue form, issuing a card, reporting it lost with a replacement, and the printable
《智能卡发放登记表》, and the card's controllers going from 待同步 (pending) to 已同步 (synced) once they acknowledge
the change (the acks written as ingest writes them, the access_sync job run); no page is wider than the phone.
Screenshots go to the test's tmp directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access import sync
from core import clock
from storage.models import Estate, Outbox
from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    PHONE,
    browser,
    log_in,
    new_page,
)
from tests.support.access_world import card_for, new_uid, unit_code_of


@pytest.fixture(scope="module")
def cards_server(
    dash_world: DashWorld,
    browser: Any,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    app = AppServer(dash_world.url, tmp_path_factory.mktemp("cards-server"))
    try:
        yield app.start()
    finally:
        app.stop()


def test_the_card_desk_issues_and_reports_lost_at_375px(
    browser: Any,  # noqa: F811
    cards_server: AppServer,
    dash_world: DashWorld,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    unit = unit_code_of(dash_world.engine, card_for(dash_world.engine, dash_world.estate))  # committed first
    base = cards_server.base
    context, page, errors = new_page(browser, PHONE)
    log_in(page, base, "card_admin-user")

    def fits(name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name} is {width}px wide on a {PHONE['width']}px phone"
        page.screenshot(path=str(tmp_path / f"cards-{name}-375.png"), full_page=True)

    page.goto(f"{base}/access/cards?estate={dash_world.estate}")
    expect(page.locator("h1")).to_contain_text("门禁卡登记")
    fits("register")

    page.fill("#household-find input[name=unit]", unit)
    page.click("#household-find button[type=submit]")
    expect(page.locator("#quota")).to_contain_text("免费卡额度")
    expect(page.locator("#issue-form")).to_be_visible()
    fits("household")

    uid = new_uid()
    page.select_option("#issue-form select[name=card_type]", "family")
    page.fill("#issue-form input[name=holder_name]", "周八")
    page.fill("#issue-form input[name=uid]", uid)
    page.click("#issue-form button[type=submit]")
    expect(page.locator("#flash")).to_have_text("已发卡并登记")
    expect(page.locator("#card-uid")).to_have_text(uid)
    expect(page.locator("#card-status")).to_have_text("有效")
    fits("card")

    replacement = new_uid()
    page.fill("#lost-form input[name=replacement_uid]", replacement)
    page.click("#lost-form button[type=submit]")
    expect(page.locator("#flash")).to_have_text("已挂失，该卡已从所有门禁移除")
    expect(page.locator("#card-uid")).to_have_text(replacement)  # the replacement's page
    expect(page.locator("#card-controllers")).to_contain_text("待同步")  # the change is queued, not yet applied
    fits("replacement")

    # The controllers acknowledge every queued command (as ingest records their acks); the sync job catches up.
    with Session(dash_world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == dash_world.estate)).one()
        s.execute(
            update(Outbox)
            .where(Outbox.device_id.in_(sync.controller_ids(s, estate_id)), Outbox.acked_at.is_(None))
            .values(status="acknowledged", acked_at=clock.now())
        )
        sync.track(s, clock.now(), estate_id=estate_id)
    page.reload()
    expect(page.locator("#card-controllers")).to_contain_text("已同步")
    expect(page.locator("#card-controllers")).not_to_contain_text("待同步")
    fits("replacement-synced")

    with page.expect_popup() as popup:
        page.click("#print-form")
    printed = popup.value
    printed.wait_for_load_state()
    expect(printed.locator("h1")).to_have_text("智能卡发放登记表")
    expect(printed.locator("article")).to_contain_text(replacement)
    printed.screenshot(path=str(tmp_path / "cards-print.png"), full_page=True)
    assert errors == []
    context.close()
