"""Shift handover and the wall display in a real browser (Debian's chromium, headless, driven by Playwright, against
``uvicorn steward.asgi:app`` as tests/dashboards/test_browser.py runs it).

- The record of a stormy day shift — handed over at 19:59 and signed at 20:00 under a pinned clock in this process
  — prints on exactly one A4 page: chromium renders it with the print stylesheet (``page.pdf``), and the PDF has
  one page; the sheet measured under print media fits the page's content box.
- The handover page at 1366 px and 375 px: the outgoing engineer hands over with notes, another signs.
- The wall display at 1920×1080: a manager issues a display token, the screen enters it once, reloads without a
  login prompt, rotates from the overview to the rooms with live values, and drops to the connect page when the
  token is revoked.

Screenshots: ``handover-*.png`` and ``wall-1920-*.png`` beside the other dashboard screenshots.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session

from alarms import handover
from storage.models import Estate, ShiftHandover
from tests.dashboards.conftest import DashWorld
from tests.dashboards.support import AppServer, Feeder, InProcessIngest, telemetry
from tests.dashboards.test_browser import (  # noqa: F401 - `browser`, `feeder` and `server` are fixtures
    DESKTOP,
    LIVE_TIMEOUT_MS,
    PHONE,
    browser,
    feeder,
    log_in,
    new_page,
    output_dir,
    server,
)
from tests.support.clock import pinned
from tests.support.handover import HandoverPlace, busy_day_shift_committed, local, user

DAY = date(2026, 11, 24)
WALL = {"width": 1920, "height": 1080}
A4_CONTENT_HEIGHT_MM = 297 - 2 * 10  # handover_print.css: @page { margin: 10mm 11mm }
A4_SIDE_MARGIN_MM = 11
PX_PER_MM = 96 / 25.4


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def place(dash_world: DashWorld) -> HandoverPlace:
    # A storm: a dozen more alarms and tickets of each kind than the record can list (it prints the first rows
    # of each and "另有 n 条").
    p = busy_day_shift_committed(dash_world.engine, DAY, extra=12)
    ingest = InProcessIngest(dash_world.engine)  # knows the new estate's transformer
    ingest.send(
        [
            telemetry(
                p.code,
                p.device_code,
                {"winding_temp_a_c": 172.2, "winding_temp_b_c": 68.4, "winding_temp_c_c": 69.0, "room_temp_c": 31.5},
            )
        ]
    )
    return p


@pytest.fixture(scope="module")
def signed_record(dash_world: DashWorld, place: HandoverPlace) -> int:
    """交班 at 19:59 by 李工, 接班签字 at 20:00 by 王工, under a pinned clock."""
    notes = (
        "1号变压器A相绕组温度持续偏高（峰值 176.5 °C），风机已强制开启，已通知厂家明早到场。\n低压柜指示灯工单待配件。"
    )
    with pinned(local(DAY, 19, 59)) as clock, Session(dash_world.engine) as s, s.begin():
        estate = s.get(Estate, place.estate_id)
        assert estate is not None
        rec = handover.hand_over(s, estate, user(s, place, "eng1"), notes=notes, now=clock.t)
        rec_id = rec.id
    with pinned(local(DAY, 20)) as clock, Session(dash_world.engine) as s, s.begin():
        handover.sign(s, rec_id, user(s, place, "eng2"), visible={place.estate_id}, now=clock.t, note="已当面核对")
    return int(rec_id)


def test_the_signed_record_prints_on_one_a4_page(
    browser: Any,  # noqa: F811
    server: AppServer,  # noqa: F811
    dash_world: DashWorld,
    place: HandoverPlace,
    signed_record: int,
) -> None:
    from playwright.sync_api import expect

    with Session(dash_world.engine) as s:
        rec = s.get(ShiftHandover, signed_record)
        assert rec is not None
        assert rec.signed_at == local(DAY, 20)
        assert rec.snapshot["counts"]["alarms_raised"] > 12
        assert rec.snapshot["counts"]["tickets_opened"] > 12
    for name, viewport in (("1366", DESKTOP), ("375", PHONE)):
        context, page, errors = new_page(browser, viewport)
        log_in(page, server.base, place.users["eng2"])
        page.goto(f"{server.base}/handover/{signed_record}")
        expect(page.locator("#ho-record h1")).to_have_text("工程部交接班记录")
        expect(page.locator("#ho-record")).to_have_attribute("data-signed", "true")
        expect(page.locator("#ho-record .signatures")).to_contain_text("王工")
        expect(page.locator("#ho-record")).to_contain_text("另有")  # the storm is cut, and says so
        shot(page, f"handover-record-{name}")
        assert not errors, errors
        context.close()

    # Printed: the PDF chromium makes with the print stylesheet has one page; and laid out at the A4 content width
    # (210 mm less the margins) under print media, the sheet is no taller than the page's content box.
    width_px = round((210 - 2 * A4_SIDE_MARGIN_MM) * PX_PER_MM)
    context, page, errors = new_page(browser, {"width": width_px, "height": 1200})
    log_in(page, server.base, place.users["eng2"])
    page.goto(f"{server.base}/handover/{signed_record}")
    page.emulate_media(media="print")
    expect(page.locator(".print-bar")).to_be_hidden()
    height_px = page.evaluate("document.getElementById('ho-record').getBoundingClientRect().height")
    assert height_px <= A4_CONTENT_HEIGHT_MM * PX_PER_MM, f"{height_px:.0f} px is taller than A4's content box"
    pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages == 1, f"the record printed on {pages} pages"
    (output_dir() / "handover-record.pdf").write_bytes(pdf)
    assert not errors, errors
    context.close()


def test_hand_over_and_sign_in_the_browser(
    browser: Any,  # noqa: F811
    server: AppServer,  # noqa: F811
    place: HandoverPlace,
    signed_record: int,
) -> None:
    """At whatever time the test runs: the shift on the table is handed over by one engineer and signed by another
    (the boundary itself is pinned in test_handover_pages and tests/alarms/test_handover.py)."""
    from playwright.sync_api import expect

    context, page, errors = new_page(browser, DESKTOP)
    log_in(page, server.base, place.users["eng1"])
    page.goto(f"{server.base}/handover?estate={place.code}")
    expect(page.locator("h1")).to_contain_text("交接班")
    expect(page.locator("#ho-shift")).to_have_attribute("data-state", "draft")
    shot(page, "handover-01-draft-1366")
    page.fill("#form-hand-over textarea[name=notes]", "夜间注意1号变压器温度；水泵房一切正常。")
    page.click("#form-hand-over button[type=submit]")
    expect(page.locator("#flash")).to_contain_text("已交班")
    expect(page.locator("#ho-shift")).to_have_attribute("data-state", "handed")
    expect(page.locator("#form-sign")).to_have_count(0)
    assert not errors, errors
    context.close()

    context, phone, errors = new_page(browser, PHONE)
    log_in(phone, server.base, place.users["eng2"])
    phone.goto(f"{server.base}/handover?estate={place.code}")
    expect(phone.locator("#form-sign")).to_be_visible()
    shot(phone, "handover-02-sign-375")
    phone.fill("#form-sign input[name=note]", "已接班")
    phone.click("#form-sign button[type=submit]")
    expect(phone.locator("#flash")).to_contain_text("已接班签字")
    shot(phone, "handover-03-signed-375")
    assert not errors, errors
    context.close()


def test_the_wall_display_at_1920(
    browser: Any,  # noqa: F811
    server: AppServer,  # noqa: F811
    feeder: Feeder,  # noqa: F811
    dash_world: DashWorld,
    place: HandoverPlace,
) -> None:
    from playwright.sync_api import expect

    admin_ctx, admin, admin_errors = new_page(browser, DESKTOP)
    log_in(admin, server.base, place.users["manager"])
    admin.goto(f"{server.base}/wall/tokens?estate={place.code}")
    admin.fill("#form-wall-token input[name=name]", "监控中心大屏")
    admin.click("#form-wall-token button[type=submit]")
    secret = admin.locator("#wall-secret").inner_text().strip()
    assert secret.startswith("std_")
    shot(admin, "wall-tokens-1366")

    screen_ctx, screen, errors = new_page(browser, WALL)
    screen.goto(f"{server.base}/wall?estate={place.code}&every=5")
    expect(screen).to_have_url(re.compile(r"/wall/connect\?estate="))
    screen.fill("input[name=token]", secret)
    screen.click("button[type=submit]")
    expect(screen).to_have_url(re.compile(rf"/wall\?estate={place.code}$"))
    expect(screen.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    expect(screen.locator("#wall-strip")).to_have_attribute("data-severity", "critical")
    expect(screen.locator(".wall-alarm").first).to_contain_text("A相绕组温度")
    expect(screen.locator('.wall-room[data-room="PR1"]')).to_have_class(re.compile(r"\bsev-critical\b"))
    shot(screen, "wall-1920-overview", full_page=False)

    # No prompt after the first: the screen reloads straight into its wall.
    screen.goto(f"{server.base}/wall?estate={place.code}&every=5")
    expect(screen).to_have_url(re.compile(r"/wall\?estate="))
    # The rotation: the overview for 5 s, then the power room (its live values), then the pump room.
    expect(screen.locator("body")).to_have_attribute("data-slide", f"room-{place.room_id}", timeout=12_000)
    expect(screen.locator(".wall-slide.is-current .tile-value .num").first).not_to_have_text("—")
    # The room's system diagram heads its slide, the transformer in alarm drawn in the critical colour.
    expect(screen.locator(".wall-slide.is-current .wall-diagram svg.diagram")).to_be_visible()
    expect(screen.locator(".wall-slide.is-current .wall-diagram .dg-node.sev-critical").first).to_be_visible()
    shot(screen, "wall-1920-room", full_page=False)

    # The sample estate's wall as its engineer sees it (live values from the feeder), at 1920 too.
    staff_ctx, staff, staff_errors = new_page(browser, WALL)
    log_in(staff, server.base, "zhang.gong")
    staff.goto(f"{server.base}/wall?estate={dash_world.estate}&every=60")
    expect(staff.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)
    shot(staff, "wall-1920-sample-overview", full_page=False)
    assert not staff_errors, staff_errors
    staff_ctx.close()

    # Revoked: within a live tick the screen ends up at the connect page, saying why.
    admin.goto(f"{server.base}/wall/tokens?estate={place.code}")
    admin.locator("tr", has_text="监控中心大屏").locator("button[type=submit]").click()
    expect(admin.locator("tr", has_text="监控中心大屏").locator("button")).to_have_count(0)  # revoked: no button
    expect(screen).to_have_url(re.compile(r"/wall/connect"), timeout=LIVE_TIMEOUT_MS + 10_000)
    expect(screen.locator("#wall-connect-error")).to_contain_text("已撤销或过期")
    shot(screen, "wall-1920-revoked", full_page=False)
    # The stream's refusal after the revocation is expected; nothing else may fail.
    assert not [e for e in errors if "/live/wall" not in e and "EventSource" not in e], errors
    assert not admin_errors, admin_errors
    screen_ctx.close()
    admin_ctx.close()
