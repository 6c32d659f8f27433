"""A steward works the week's customer-service rounds on a 375 px phone, in a real browser.

Debian's chromium, headless, driven by Playwright, against ``uvicorn steward.asgi:app`` in a child process (as
tests/dashboards/test_browser.py). The sample estate's service schedules are installed and their current windows
created the way the worker's rounds job does, at the moment the server also lives in (the rounds are whatever
windows hold that moment, so the test passes at any hour). The steward opens 我的巡查任务, taps the patrol of a
building, records a finding (which opens a ticket) and sees the task recorded; a manager opens the estate's service
round calendar on a desktop. Screenshots: ``service-01-my-tasks.png`` … ``service-04-calendar.png``.

Without a chromium binary this skips, unless ``STEWARD_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.service_rounds import ensure_service_schedules, evaluate_service_rounds
from core import clock
from storage.models import Estate, RoundTask, Ticket
from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    DESKTOP,
    PHONE,
    browser,
    log_in,
    new_page,
    output_dir,
)


@pytest.fixture(scope="module")
def service_server(dash_world: DashWorld, browser: Any) -> Iterator[AppServer]:  # noqa: F811
    with Session(dash_world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == dash_world.estate)).one()
        ensure_service_schedules(s, estate_id)
        evaluate_service_rounds(s, clock.now())
    app = AppServer(dash_world.url, output_dir().parent / "logs")
    try:
        yield app.start()
    finally:
        app.stop()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=True)


def test_a_steward_records_a_patrol_finding_on_a_phone(
    browser: Any,  # noqa: F811
    service_server: AppServer,
    dash_world: DashWorld,
) -> None:
    from playwright.sync_api import expect

    base = service_server.base
    ctx, phone, errors = new_page(browser, PHONE)
    log_in(phone, base, "steward-user")
    phone.goto(f"{base}/service-tasks")
    expect(phone.locator("h1")).to_contain_text("我的巡查任务")
    cards = phone.locator("#pending-tasks a.csr-task")
    expect(cards.first).to_be_visible()
    kinds = set(cards.evaluate_all("els => els.map(e => e.dataset.kind)"))
    assert kinds <= {"household_visits", "estate_patrol"}, kinds  # a steward's rounds only
    assert "estate_patrol" in kinds
    # Fits the phone: nothing wider than the screen, and every task a big touch target.
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for box in cards.evaluate_all("els => els.map(e => e.getBoundingClientRect().height)"):
        assert box >= 48
    shot(phone, "service-01-my-tasks")

    patrol = phone.locator('#pending-tasks a.csr-task[data-kind="estate_patrol"]').first
    task_id = int(patrol.get_attribute("data-task") or 0)
    patrol.click()
    phone.wait_for_url(f"{base}/service-tasks/{task_id}")
    expect(phone.locator("#form-task")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.check('#form-task input[name="outcome"][value="finding"]')
    phone.fill('#form-task textarea[name="finding"]', "单元门闭门器损坏，门关不严")
    phone.select_option('#form-task select[name="category"]', "access")
    phone.fill('#form-task input[name="notes"]', "已拍照")
    shot(phone, "service-02-task-form")
    submit = phone.locator("#form-task button[type=submit]")
    assert (submit.bounding_box() or {"height": 0})["height"] >= 48
    submit.click()
    phone.wait_for_url(f"{base}/service-tasks")
    expect(phone.locator("#flash")).to_have_text("巡查任务已记录")
    recorded = phone.locator(f'#recorded-tasks [data-task="{task_id}"]')
    expect(recorded).to_contain_text("已完成")
    expect(recorded.locator("a.code")).to_contain_text("GD")
    expect(phone.locator(f'#pending-tasks a.csr-task[data-task="{task_id}"]')).to_have_count(0)
    shot(phone, "service-03-recorded")
    with Session(dash_world.engine) as s:
        task = s.get(RoundTask, task_id)
        assert task is not None
        assert (task.status, task.outcome, task.performed_by) == ("done", "finding", "steward-user")
        ticket = s.get(Ticket, task.ticket_id)
        assert ticket is not None
        assert (ticket.source, ticket.category) == ("patrol", "access")
        assert "单元门闭门器损坏" in ticket.title

    # The manager's desktop: the estate's service round calendar, the patrol's round opened.
    mctx, desk, more = new_page(browser, DESKTOP)
    errors += more
    log_in(desk, base, "manager-user")
    desk.goto(f"{base}/estates/{dash_world.estate}/service-rounds")
    expect(desk.locator("h1")).to_contain_text("客服巡查日历")
    expect(desk.locator(".round-row")).to_have_count(5)
    desk.locator('.round-row[data-kind="estate_patrol"] a.csr-cell').last.click()
    expect(desk.locator("#round-detail")).to_be_visible()
    expect(desk.locator(f'#round-detail tr[data-task="{task_id}"]')).to_contain_text("已完成")
    desk.evaluate("window.scrollTo(0, 0)")  # the sticky top bar stays at the top of the full-page shot
    shot(desk, "service-04-calendar")
    desk.click("#lang-toggle")
    expect(desk.locator("h1")).to_contain_text("Service rounds")
    ctx.close()
    mctx.close()
    assert errors == []
