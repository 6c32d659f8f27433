"""The ticket board and the alarm list as a newcomer sees them (issue 15 §8), in real headless chromium at 1366 px
and 375 px: the urgent transformer ticket heads its column, the card of a ticket whose alarm recovered by itself
says 报警已恢复, and the three phase alarms of one transformer are one compact card whose place fits one line.

The server runs in a child process on the wall clock, so the seeded times are relative to ``clock.now()`` and the
test asserts only orders and layout, never a time. Screenshots: ``newcomer-board-{1366,375}.png`` and
``newcomer-alarms-{1366,375}.png`` beside the other dashboard screenshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core import clock
from storage.models import Alarm
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
from tests.support.handover import HandoverPlace, add_alarm, add_ticket, seed_place


@pytest.fixture(scope="module")
def newcomer_server(dash_world: DashWorld, browser: Any) -> Iterator[AppServer]:  # noqa: F811
    app = AppServer(dash_world.url, output_dir().parent / "logs")
    try:
        yield app.start()
    finally:
        app.stop()


def seed(dash_world: DashWorld) -> tuple[HandoverPlace, dict[str, int], list[int]]:
    now = clock.now()
    with Session(dash_world.engine) as s, s.begin():
        place = seed_place(s)
        ids = {
            "normal": add_ticket(s, place, title="走廊灯不亮", received_at=now - timedelta(hours=2), priority="normal"),
            "high": add_ticket(s, place, title="水泵异响", received_at=now - timedelta(hours=1), priority="high"),
            "urgent": add_ticket(
                s, place, title="1号变压器绕组超温", received_at=now - timedelta(minutes=4), priority="urgent"
            ),
        }
        phases = []
        for metric in ("winding_temp_a_c", "winding_temp_b_c", "winding_temp_c_c"):
            alarm_id = add_alarm(
                s, place, metric=metric, severity="critical", raised_at=now - timedelta(minutes=4), title="绕组温度紧急"
            )
            phases.append(alarm_id)
        recovered = add_alarm(
            s,
            place,
            metric="room_temp_c",
            severity="alarm",
            raised_at=now - timedelta(hours=1),
            cleared_at=now - timedelta(minutes=30),
            title="配电房室温高",
        )
        for alarm_id, ticket in [*((a, ids["urgent"]) for a in phases), (recovered, ids["high"])]:
            alarm = s.get(Alarm, alarm_id)
            assert alarm is not None
            alarm.ticket_id = ticket
    return place, ids, phases


def test_board_and_alarm_list_at_1366_and_375(
    browser: Any,  # noqa: F811
    newcomer_server: AppServer,
    dash_world: DashWorld,
) -> None:
    from playwright.sync_api import expect

    place, ids, phases = seed(dash_world)
    base = newcomer_server.base
    for viewport in (DESKTOP, PHONE):
        width = viewport["width"]
        ctx, page, errors = new_page(browser, viewport)
        log_in(page, base, place.users["supervisor"])

        page.goto(f"{base}/tickets?estate={place.code}")
        received = page.locator('.board-col[data-status="received"] .ticket-card')
        expect(received).to_have_count(3)
        order = [int(received.nth(i).get_attribute("data-ticket") or 0) for i in range(3)]
        assert order == [ids["urgent"], ids["high"], ids["normal"]]
        expect(page.locator(f'.ticket-card[data-ticket="{ids["high"]}"] .tc-alarm')).to_contain_text("报警已恢复")
        expect(page.locator(f'.ticket-card[data-ticket="{ids["urgent"]}"] .tc-alarm')).to_contain_text("报警未确认 3")
        page.screenshot(path=str(output_dir() / f"newcomer-board-{width}.png"), full_page=True)

        page.goto(f"{base}/alarms?estate={place.code}")
        group = page.locator("article.alarm-group")
        expect(group).to_have_count(1)
        assert sorted(int(i) for i in (group.get_attribute("data-alarms") or "").split()) == sorted(phases)
        expect(group.locator(".alarm-point")).to_have_count(3)
        expect(group.locator("h2")).to_contain_text("3 条报警")
        # The place reads on one line (the newcomer saw it wrap to four), and the card uses the width it has.
        where = group.locator(".alarm-where").bounding_box()
        line = page.evaluate(
            "(() => { const s = getComputedStyle(document.querySelector('.alarm-where'));"
            " const lh = parseFloat(s.lineHeight); return isNaN(lh) ? 1.3 * parseFloat(s.fontSize) : lh; })()"
        )
        assert where is not None
        assert where["height"] < 1.6 * line
        card = group.bounding_box()
        assert card is not None
        assert card["width"] >= min(width - 60, 520)
        page.screenshot(path=str(output_dir() / f"newcomer-alarms-{width}.png"), full_page=True)
        assert not errors, errors
        ctx.close()
