"""A transformer overheat alarm becomes a repair ticket and is worked to the callback, in a real browser.

Debian's chromium, headless, driven by Playwright, against ``uvicorn steward.asgi:app`` in a child process (as
tests/dashboards/test_browser.py). The alarm is raised the production way: winding-temperature readings
above 155 °C are decoded and written by ingest's own code with the real ``AlarmEvaluator`` hook, whose
``open_for_alarms`` opens the ticket in the same transaction; the commit's NOTIFY wakes the board's
``/live/tickets`` stream, which swaps the new card in without a reload. Then a steward dispatches it, the
engineer (on a 375 px phone) accepts, arrives and resolves, and the steward records the callback.
Screenshots: ``ticket-01-board.png`` … ``ticket-07-rounds.png`` beside the other dashboard screenshots.

Without a chromium binary this skips, unless ``STEWARD_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Alarm, Point, Ticket
from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    DESKTOP,
    LIVE_TIMEOUT_MS,
    PHONE,
    browser,
    log_in,
    new_page,
    output_dir,
)
from tests.dashboards.test_ticket_pages import install_rules, overheat, seed_rounds, user_id


@pytest.fixture(scope="module")
def ticket_server(dash_world: DashWorld, browser: Any) -> Iterator[AppServer]:  # noqa: F811
    install_rules(dash_world.engine)
    app = AppServer(dash_world.url, output_dir().parent / "logs")
    try:
        yield app.start()  # stopped also when it never came up
    finally:
        app.stop()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=True)


def _alarm_ticket(dash_world: DashWorld, metric: str) -> tuple[int, str]:
    with Session(dash_world.engine) as s:
        pid = s.scalar(select(Point.id).where(Point.device_id == dash_world.devices["TR2"], Point.metric == metric))
        row = s.execute(
            select(Ticket.id, Ticket.number)
            .join(Alarm, Alarm.ticket_id == Ticket.id)
            .where(Alarm.point_id == pid)
            .order_by(Alarm.id.desc())
        ).first()
        assert row is not None, "the overheat alarm opened no ticket"
        return int(row[0]), str(row[1])


def test_overheat_alarm_to_callback_in_the_browser(
    browser: Any,  # noqa: F811
    ticket_server: AppServer,
    dash_world: DashWorld,
) -> None:
    from playwright.sync_api import expect

    base = ticket_server.base
    metric = "winding_temp_a_c"
    steward_ctx, desk, errors = new_page(browser, DESKTOP)
    log_in(desk, base, "steward-user")
    desk.goto(f"{base}/tickets")
    expect(desk.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    expect(desk.locator('.board-col[data-status="received"] h2')).to_contain_text("待派单")

    # 158 °C then 161.5 °C on TR2's A winding (TR1 is test_ticket_pages's): alarm and ticket in the ingest commit.
    overheat(dash_world.engine, dash_world.estate, "TR2", metric)
    ticket_id, number = _alarm_ticket(dash_world, metric)
    card = desk.locator(f'.board-col[data-status="received"] .ticket-card[data-ticket="{ticket_id}"]')
    expect(card).to_be_visible(timeout=LIVE_TIMEOUT_MS)  # arrived over SSE: no reload
    expect(card).to_contain_text(number)
    expect(card).to_contain_text("较急")
    expect(card.locator(".sla")).to_have_class(re.compile(r"\bsla-ok\b"))
    countdown = card.locator(".sla-text")
    # An alarm-severity ticket (§4's platform table): 2 hours to be on site.
    expect(countdown).to_have_text(re.compile(r"^剩 (1 小时 [0-5]\d 分|2 小时 00 分)$"))
    # The ticker counts seconds in the last hour: move this card's due time 10 minutes ahead to see it tick.
    card.locator(".sla[data-due]").evaluate("el => { el.dataset.due = String(Date.now() + 600000); }")
    expect(countdown).to_have_text(re.compile(r"^剩 (9|10) 分 \d\d 秒$"))
    before = countdown.inner_text()
    desk.wait_for_timeout(2100)
    assert countdown.inner_text() != before, "the SLA countdown is not ticking"
    shot(desk, "ticket-01-board")

    # The steward dispatches it to zhang.gong (张工).
    card.click()
    desk.wait_for_url(f"{base}/tickets/{ticket_id}")
    expect(desk.locator("#ticket-status")).to_have_text("已受理")
    desk.select_option('#form-dispatch select[name="assignee_id"]', str(user_id(dash_world.engine, "zhang.gong")))
    desk.fill('#form-dispatch input[name="note"]', "请立即检查 2# 变压器风机")
    desk.click("#form-dispatch button[type=submit]")
    expect(desk.locator("#ticket-status")).to_have_text("已派单")
    expect(desk.locator("#flash")).to_have_text("已派单")
    expect(desk.locator("#assignee")).to_contain_text("张工")
    shot(desk, "ticket-02-dispatched")

    # The engineer, on a phone: accept, on site, resolve.
    eng_ctx, phone, more = new_page(browser, PHONE)
    errors += more
    log_in(phone, base, "zhang.gong")
    phone.goto(f"{base}/tickets/{ticket_id}")
    expect(phone.locator("#form-dispatch")).to_have_count(0)
    phone.click("#form-accept button")
    expect(phone.locator("#ticket-status")).to_have_text("已接单")
    phone.click("#form-on-site button")
    expect(phone.locator("#ticket-status")).to_have_text("已到场")
    shot(phone, "ticket-03-on-site")
    # 完工 waits for the alarm to be acknowledged (issue 15 §8): the form says so, a try is refused with a message.
    expect(phone.locator("#resolve-blocked")).to_contain_text("尚未确认")
    phone.fill('#form-resolve textarea[name="work_done"]', "清理风机滤网")
    phone.click("#form-resolve button[type=submit]")
    expect(phone.locator("#flash")).to_contain_text("尚未确认")
    expect(phone.locator("#ticket-status")).to_have_text("已到场")
    with Session(dash_world.engine) as s:
        unacknowledged = list(s.scalars(select(Alarm.id).where(Alarm.ticket_id == ticket_id, Alarm.state == "active")))
    assert unacknowledged, "the overheat alarm is still unacknowledged"
    phone.goto(f"{base}/alarms")
    for alarm_id in unacknowledged:
        phone.click(f'[data-alarm-point="{alarm_id}"] form[action$="/acknowledge"] button')
        phone.wait_for_load_state()
    phone.goto(f"{base}/tickets/{ticket_id}")
    expect(phone.locator("#resolve-blocked")).to_have_count(0)
    phone.fill('#form-resolve textarea[name="work_done"]', "清理风机滤网，更换 A 相测温探头，温度恢复 82 °C")
    phone.fill('#form-resolve input[name="parts"]', "PT100 测温探头 1 支")
    phone.fill('#form-resolve input[name="labour_minutes"]', "45")
    phone.click("#form-resolve button[type=submit]")
    expect(phone.locator("#ticket-status")).to_have_text("已完工")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the ticket page is {width}px wide on a {PHONE['width']}px phone"
    shot(phone, "ticket-04-resolved")
    eng_ctx.close()

    # The steward calls back: by phone, satisfaction 5.
    desk.goto(f"{base}/tickets/{ticket_id}")
    desk.select_option('#form-callback select[name="channel"]', "phone")
    desk.check('#form-callback input[name="satisfaction"][value="5"]')
    desk.fill('#form-callback input[name="note"]', "设备运行正常")
    desk.click("#form-callback button[type=submit]")
    expect(desk.locator("#ticket-status")).to_have_text("已回访")
    expect(desk.locator("#callback")).to_contain_text("电话回访")
    steps = desk.locator("#timeline .ev")
    expected = [
        ("opened", "system"),
        ("dispatched", "steward-user"),
        ("accepted", "zhang.gong"),
        ("on_site", "zhang.gong"),
        ("resolved", "zhang.gong"),
        ("callback", "steward-user"),
    ]
    got = [
        (steps.nth(i).get_attribute("data-action"), steps.nth(i).get_attribute("data-actor"))
        for i in range(steps.count())
    ]
    assert got == expected, got
    timeline = desk.locator("#timeline")
    for text in ("受理", "派单", "接单", "到场", "完工", "回访", "张工", "派给 张工", "满意度 5"):
        expect(timeline).to_contain_text(text)
    shot(desk, "ticket-05-callback")

    # The board moved the card along; the alarm list links the ticket; English shows the same board.
    desk.goto(f"{base}/tickets")
    expect(desk.locator(f'.board-col[data-status="callback_done"] [data-ticket="{ticket_id}"]')).to_be_visible()
    context_closed = False
    try:
        desk.goto(f"{base}/lang/en?next=/tickets")
        expect(desk.locator("h1")).to_have_text("Ticket board")
        expect(desk.locator('.board-col[data-status="callback_done"] h2')).to_contain_text("Called back")
        desk.goto(f"{base}/lang/zh?next=/tickets")
        steward_ctx.close()
        context_closed = True
    finally:
        if not context_closed:
            steward_ctx.close()

    sup_ctx, sup, more = new_page(browser, DESKTOP)
    errors += more
    log_in(sup, base, "supervisor-user")
    sup.goto(f"{base}/alarms")
    expect(sup.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    expect(sup.locator(f'a[href="/tickets/{ticket_id}"]').first).to_have_text(number)
    shot(sup, "ticket-06-alarms")
    room = dash_world.rooms["PR1"]
    rounds = seed_rounds(dash_world.engine, room)
    sup.goto(f"{base}/rooms/{room}/rounds?round={rounds.get('manual_due') or rounds['open']}")
    expect(sup.locator(".round-cell").first).to_be_visible()
    shot(sup, "ticket-07-rounds")
    sup_ctx.close()
    assert not errors, errors
