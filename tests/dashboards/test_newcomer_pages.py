"""What a newcomer tripped over (issue 15 §8): charts that squeezed two hours into the right edge, a 近 2 天 calendar
of one cell, the ingest page's raw English and mixed zones, raw JSON for a bad page address, and a font stack
without Microsoft YaHei."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from alarms.rounds_queries import schedule_windows
from dashboards import ingest_reasons
from dashboards.i18n import COUNTERS, chart_ms
from dashboards.rooms_view import chart_window
from ingest.health import Counters
from storage.models import RoundSchedule
from tests.dashboards.conftest import DashWorld, login

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
APP_CSS = Path(__file__).resolve().parents[2] / "dashboards" / "static" / "app.css"


def _chart(first: datetime, last: datetime) -> dict[str, Any]:
    step = timedelta(hours=1)
    xs, t = [], first
    while t <= last:
        xs.append([chart_ms(t, SHANGHAI), 1.0])
        t += step
    return {"series": [{"data": xs}, {"data": []}]}


def test_two_hours_of_data_fill_the_chart_and_the_caption_says_two_hours() -> None:
    w = chart_window([_chart(NOW - timedelta(hours=2), NOW)], NOW, timedelta(hours=24), SHANGHAI, "zh")
    assert w.x_min == chart_ms(NOW - timedelta(hours=2), SHANGHAI)
    assert w.label == "近 2 小时趋势"
    assert chart_window([_chart(NOW - timedelta(hours=2), NOW)], NOW, timedelta(hours=24), SHANGHAI, "en").label == (
        "Last 2 h"
    )


def test_a_full_window_keeps_its_span_and_its_name() -> None:
    span = timedelta(hours=24)
    w = chart_window([_chart(NOW - timedelta(hours=30), NOW)], NOW, span, SHANGHAI, "zh")
    assert (w.x_min, w.label) == (chart_ms(NOW - span, SHANGHAI), "24 小时趋势")
    empty = chart_window([{"series": [{"data": []}]}], NOW, span, SHANGHAI, "zh")
    assert (empty.x_min, empty.label) == (chart_ms(NOW - span, SHANGHAI), "24 小时趋势")


def test_a_device_page_with_a_day_of_history_says_24_hours(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    page = dash_client.get(f"/devices/{dash_world.devices['LV1']}").text
    assert "24 小时趋势" in page
    assert "近 2 小时" not in page


def test_the_calendar_has_every_window_of_two_days() -> None:
    anchor = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # local midnight
    schedule = RoundSchedule(anchor=anchor, interval_minutes=120, enabled=True)
    windows = schedule_windows(schedule, NOW - timedelta(days=2), NOW)
    assert len(windows) == 25  # 24 whole windows and the current one
    assert windows[-1] == (datetime(2026, 12, 6, 2, 0, tzinfo=UTC), datetime(2026, 12, 6, 4, 0, tzinfo=UTC))
    assert all(b - a == timedelta(hours=2) for a, b in windows)
    assert schedule_windows(RoundSchedule(anchor=NOW, interval_minutes=120, enabled=False), NOW, NOW) == []


def test_ingest_reasons_in_chinese_with_times_in_the_estate_zone() -> None:
    told = ingest_reasons.quarantine_detail(
        "ts_too_old", "item 1: ts 2026-10-22T01:55:33+00:00 before 2026-11-06T01:55:33Z", "zh", SHANGHAI
    )
    assert told.label == "第 2 条：设备时间 2026-10-22 09:55:33 早于允许的最早时间 2026-11-06 09:55:33"
    assert "+00:00" in told.raw
    bad = ingest_reasons.dead_letter_reason("v: Input should be 1; ts: Field required", "zh")
    assert bad.label == "报文字段校验失败：v 取值不被接受；ts 缺少字段"
    assert ingest_reasons.dead_letter_reason("payload: Invalid JSON: EOF", "zh").label == "报文不是有效的 JSON"
    assert ingest_reasons.dead_letter_reason("payload too large: 9000 bytes", "en").label == "Payload too large"
    for reason in ingest_reasons.QUARANTINE_DETAILS:
        assert not re.search(r"[a-z]{3}", ingest_reasons.quarantine_detail(reason, "", "zh", SHANGHAI).label)


def test_every_ingest_counter_has_a_label() -> None:
    assert {f.name for f in dataclasses.fields(Counters)} <= set(COUNTERS)


def test_ingest_page_speaks_chinese_in_one_zone(dash_client: TestClient) -> None:
    login(dash_client)
    page = dash_client.get("/ingest").text
    body = page[page.index('id="live-body"') :]
    visible = re.sub(r'<[^>]+>|title="[^"]*"', " ", body.split("<script")[0])
    for raw in ("Invalid JSON", "Field required", "not registered", "unknown_device", "broker_id_reuse", "+00:00"):
        assert raw not in visible, raw
    assert "报文不是有效的 JSON" in page
    assert "报文字段校验失败" in page
    assert 'title="unknown_device"' in page  # the raw code stays in the tooltip
    assert "时间均为 Asia/Shanghai 时间" in page
    assert 'class="quarantine cards-narrow"' in page
    assert 'data-label="原因"' in page


def test_a_bad_page_address_renders_the_chinese_error_page(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client)
    r = dash_client.get("/tickets/abc")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "未找到" in r.text
    r = dash_client.get(f"/devices/{dash_world.devices['LV1']}?range=1y")
    assert r.status_code == 422
    assert "请求无效" in r.text
    # Logged out: the login form first, as for any page.
    dash_client.cookies.clear()
    assert dash_client.get("/rooms/abc").status_code == 303


def test_the_api_keeps_its_json_errors(dash_client: TestClient) -> None:
    r = dash_client.get("/api/alarms/abc")
    assert r.status_code in (401, 422)
    assert r.headers["content-type"].startswith("application/json")


def test_the_font_stack_names_the_chinese_faces_in_order() -> None:
    css = APP_CSS.read_text()
    body = css[css.index("body {") : css.index("}", css.index("body {"))]
    body = body[body.index("font:") :]
    faces = ["PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC"]
    positions = [body.index(f'"{f}"') for f in faces]
    assert positions == sorted(positions)
    assert "system-ui" not in body
    assert body.index('"Noto Sans CJK SC"') < body.index("sans-serif;")
