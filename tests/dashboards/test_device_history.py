"""Issue 15 §7 acceptance: a device's history with a range picker (日 / 周 / 月 / 自定义). Each range takes the
bucket its span calls for; the chart's min/avg/max buckets and the CSV export equal what /api/points/{id}/series
serves for the same span (samples seeded under a pinned clock); bad custom ranges are refused with a Chinese
message; the export has the page's permission and estate scoping; and the page in chromium at 1366 and 375 px."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_token
from core.settings import Settings
from dashboards import device_history, i18n
from facility import series
from steward.app import create_app
from storage.models import Device, Point
from tests.dashboards.support import AppServer
from tests.support.clock import SH, pinned
from tests.support.world import PASSWORD, add_samples, estate_file, own_database, populate

ESTATE, OTHER = "hist", "histother"
NOW = datetime(2026, 11, 26, 10, 30, tzinfo=SH)
SEEDED_DAYS = 50
STEP = timedelta(minutes=6)
EQUIPMENT = {Role.admin, Role.engineer, Role.supervisor, Role.manager, Role.viewer}  # as tests/api spells it out


@dataclass
class HistoryWorld:
    url: str
    engine: Engine
    device: int
    point: int
    other_device: int
    token: str


def _value(i: int) -> float:
    # A daily swing with every other sample 3.1 V higher: each bucket has a visible min–max band around its
    # average, and none of the three is a round number.
    return 226.0 + 5.0 * math.sin(2 * math.pi * i * STEP / timedelta(days=1)) + (i % 2) * 3.1


@pytest.fixture(scope="module")
def hist(pg_server_url: str) -> Iterator[HistoryWorld]:
    with own_database(pg_server_url, "steward_history") as (url, engine), pinned(NOW):
        with Session(engine) as s, s.begin():
            made = populate(s, [estate_file("rooms", ESTATE), estate_file("rooms", OTHER)], staff_in=[ESTATE])
            token = create_token(s, made.staff[Role.engineer], "history-test")
            device = s.scalars(select(Device).where(Device.code == f"{ESTATE.upper()}-LV1")).one()
            other = s.scalars(select(Device).where(Device.code == f"{OTHER.upper()}-LV1")).one()
            point = s.scalars(select(Point).where(Point.device_id == device.id, Point.metric == "voltage_a_v")).one()
            ids = device.id, other.id, point.id
        start = NOW - timedelta(days=SEEDED_DAYS)
        n = int((NOW - start) / STEP)
        add_samples(engine, ids[2], [(start + i * STEP, _value(i)) for i in range(n)])
        yield HistoryWorld(url, engine, ids[0], ids[2], ids[1], token)


@pytest.fixture
def client(hist: HistoryWorld) -> Iterator[TestClient]:
    app = create_app(Settings(), engine=hist.engine)
    with pinned(NOW), TestClient(app, follow_redirects=False) as c:
        yield c


def login(client: TestClient, username: str = "engineer-user") -> None:
    client.cookies.clear()
    r = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text


def page_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert m
    return dict(json.loads(m.group(1)))


def api_buckets(
    client: TestClient, hist: HistoryWorld, start: datetime, end: datetime, bucket: str
) -> list[dict[str, Any]]:
    r = client.get(
        f"/api/points/{hist.point}/series",
        params={"start": start.isoformat(), "end": end.isoformat(), "bucket": bucket},
        headers={"Authorization": f"Bearer {hist.token}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["bucket"] == bucket
    return list(r.json()["items"])


def local_ms(ts: str) -> int:
    return i18n.chart_ms(datetime.fromisoformat(ts), SH)


def day(d: str, *, plus: int = 0) -> datetime:
    return datetime.fromisoformat(d).replace(tzinfo=SH) + timedelta(days=plus)


PRESETS = [
    ("day", timedelta(hours=24), "5m"),
    ("week", timedelta(days=7), "1h"),
    ("month", timedelta(days=30), "1h"),
]
CUSTOM = [
    ("2026-11-20", "2026-11-20", "5m"),  # one day (both ends are included)
    ("2026-11-20", "2026-11-21", "5m"),
    ("2026-11-18", "2026-11-21", "15m"),
    ("2026-11-01", "2026-11-25", "1h"),
    ("2026-10-01", "2026-11-25", "1d"),
]


def test_span_buckets() -> None:
    assert series.bucket_for_span(timedelta(hours=24)) is series.Bucket.m5
    assert series.bucket_for_span(timedelta(days=2)) is series.Bucket.m5
    assert series.bucket_for_span(timedelta(days=3)) is series.Bucket.m15
    assert series.bucket_for_span(timedelta(days=30)) is series.Bucket.h1
    assert series.bucket_for_span(timedelta(days=400)) is series.Bucket.d1


@pytest.mark.parametrize(("name", "span", "bucket"), PRESETS)
def test_presets_draw_the_apis_buckets(
    client: TestClient, hist: HistoryWorld, name: str, span: timedelta, bucket: str
) -> None:
    login(client)
    r = client.get(f"/devices/{hist.device}?range={name}")
    assert r.status_code == 200, r.text
    assert f'class="active" data-range="{name}"' in r.text
    assert i18n.t("bucket_note", "zh", bucket=i18n.BUCKET_NAMES[bucket][0]) in r.text
    data = page_data(r.text)
    assert data["x_min"] == i18n.chart_ms(NOW - span, SH)
    assert data["append"] is (name == "day")
    (chart,) = [c for c in data["charts"] if any(s["point_id"] == hist.point for s in c["series"])]
    assert chart["band"] is True
    rows = next(s["data"] for s in chart["series"] if s["point_id"] == hist.point)
    want = api_buckets(client, hist, NOW - span, NOW, bucket)
    assert len(rows) == len(want) > 0
    for (x, avg, lo, hi), item in zip(rows, want, strict=True):
        assert x == local_ms(item["bucket"])
        digits = i18n.decimals("V") + 1  # the chart's precision: one digit finer than the value display
        assert (lo, avg, hi) == tuple(round(item[k], digits) for k in ("min", "avg", "max"))
    assert f"/devices/{hist.device}/history.csv?range={name}" in r.text


@pytest.mark.parametrize(("first", "last", "bucket"), CUSTOM)
def test_custom_ranges_are_whole_local_days(
    client: TestClient, hist: HistoryWorld, first: str, last: str, bucket: str
) -> None:
    login(client)
    r = client.get(f"/devices/{hist.device}", params={"range": "custom", "from": first, "to": last})
    assert r.status_code == 200, r.text
    assert 'class="active" data-range="custom"' in r.text
    assert f'name="from" value="{first}"' in r.text
    data = page_data(r.text)
    assert data["x_min"] == i18n.chart_ms(day(first), SH)
    assert data["x_max"] == i18n.chart_ms(day(last, plus=1), SH)
    assert data["append"] is False
    assert i18n.t("bucket_note", "zh", bucket=i18n.BUCKET_NAMES[bucket][0]) in r.text


@pytest.mark.parametrize(("name", "span", "bucket"), PRESETS)
def test_preset_csv_equals_the_api(
    client: TestClient, hist: HistoryWorld, name: str, span: timedelta, bucket: str
) -> None:
    login(client)
    r = client.get(f"/devices/{hist.device}/history.csv?range={name}")
    assert_csv_equals_api(client, hist, r, NOW - span, NOW, bucket)


@pytest.mark.parametrize(("first", "last", "bucket"), CUSTOM)
def test_custom_csv_equals_the_api(client: TestClient, hist: HistoryWorld, first: str, last: str, bucket: str) -> None:
    login(client)
    r = client.get(f"/devices/{hist.device}/history.csv", params={"from": first, "to": last})
    assert f"{ESTATE.upper()}-LV1_{first}_{last}.csv" in r.headers["content-disposition"]
    assert_csv_equals_api(client, hist, r, day(first), day(last, plus=1), bucket)


def assert_csv_equals_api(
    client: TestClient, hist: HistoryWorld, r: Any, start: datetime, end: datetime, bucket: str
) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the Chinese headers as UTF-8
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert tuple(rows[0]) == device_history.CSV_HEADER == ("时间", "点位", "单位", "最小", "平均", "最大", "样本数")
    mine = [row for row in rows[1:] if row[1] == "A相电压"]
    want = api_buckets(client, hist, start, end, bucket)
    assert len(mine) == len(want) > 0
    for (ts, _, unit, lo, avg, hi, n), item in zip(mine, want, strict=True):
        local = datetime.fromisoformat(item["bucket"]).astimezone(SH)
        assert ts == local.strftime("%Y-%m-%d %H:%M")
        assert unit == "V"
        assert (float(lo), float(avg), float(hi), int(n)) == (item["min"], item["avg"], item["max"], item["n"])
    assert sum(int(row[6]) for row in mine) == sum(item["n"] for item in want)


BAD = [
    ({"range": "custom", "from": "2026-11-20", "to": "2026-11-19"}, "结束日期不能早于开始日期"),
    ({"range": "custom", "from": "2026-13-01", "to": "2026-11-19"}, "日期格式不正确"),
    ({"range": "custom", "from": "2025-01-01", "to": "2026-11-19"}, "最长 400 天"),
    ({"range": "custom", "from": "2026-11-20"}, "请选择开始日期和结束日期"),
    ({"range": "custom"}, "请选择开始日期和结束日期"),
    ({"from": "2026-11-27", "to": "2026-11-28"}, "开始日期不能晚于今天"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_ranges_are_refused_in_chinese(
    client: TestClient, hist: HistoryWorld, params: dict[str, str], message: str
) -> None:
    login(client)
    page = client.get(f"/devices/{hist.device}", params=params)
    assert page.status_code == 400
    assert 'id="history-error"' in page.text
    assert message in page.text
    assert 'class="chart"' not in page.text  # no chart of some other range under the error
    assert 'data-export="csv"' not in page.text
    export = client.get(f"/devices/{hist.device}/history.csv", params=params)
    assert export.status_code == 400
    assert message in export.text


def test_bad_ranges_in_english(client: TestClient, hist: HistoryWorld) -> None:
    login(client)
    client.cookies.set("lang", "en")
    r = client.get(f"/devices/{hist.device}", params={"from": "2026-11-20", "to": "2026-11-01"})
    assert r.status_code == 400
    assert "The end date cannot be before the start date" in r.text
    export = client.get(f"/devices/{hist.device}/history.csv", params={"range": "week"})
    assert export.content.decode("utf-8-sig").startswith("Time,Point,Unit,Min,Avg,Max,Samples")
    assert ",Voltage A-N,V," in export.content.decode("utf-8-sig")


def test_unknown_range_is_422(client: TestClient, hist: HistoryWorld) -> None:
    login(client)
    assert client.get(f"/devices/{hist.device}?range=1y").status_code == 422
    assert client.get(f"/devices/{hist.device}/history.csv?range=1y").status_code == 422


def test_another_estates_device_is_404_like_a_missing_one(client: TestClient, hist: HistoryWorld) -> None:
    login(client)
    for device in (hist.other_device, 999_999):
        assert client.get(f"/devices/{device}?range=week").status_code == 404
        assert client.get(f"/devices/{device}/history.csv?range=week").status_code == 404


@pytest.mark.parametrize("role", list(Role))
def test_who_may_open_the_history(client: TestClient, hist: HistoryWorld, role: Role) -> None:
    login(client, f"{role.value}-user")
    for path in (
        f"/devices/{hist.device}?range=custom&from=2026-11-20&to=2026-11-21",
        f"/devices/{hist.device}/history.csv?from=2026-11-20&to=2026-11-21",
    ):
        r = client.get(path)
        assert r.status_code == (200 if role in EQUIPMENT else 403), (role, path, r.status_code)


def test_the_csv_needs_a_login(client: TestClient, hist: HistoryWorld) -> None:
    client.cookies.clear()
    r = client.get(f"/devices/{hist.device}/history.csv?range=day")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")


def test_the_history_in_chromium(hist: HistoryWorld) -> None:
    """The picker, the band and the line at 1366 and 375 px. The server runs on the real clock, so the page asks
    for a custom range of the seeded (past) days, which reads the same at any hour."""
    from playwright.sync_api import expect, sync_playwright

    from tests.dashboards.test_browser import CHROMIUM_ARGS, chromium_executable, new_page, output_dir

    executable = chromium_executable()
    server = AppServer(hist.url, output_dir().parent / "logs")
    try:
        server.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            try:
                for name, viewport in (
                    ("1366", {"width": 1366, "height": 900}),
                    ("375", {"width": 375, "height": 812}),
                ):
                    context, page, errors = new_page(browser, viewport)
                    page.goto(f"{server.base}/login")
                    page.fill("input[name=username]", "engineer-user")
                    page.fill("input[name=password]", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_load_state()
                    errors.clear()  # this page's own errors (the landing page after the login is another's)
                    page.goto(f"{server.base}/devices/{hist.device}?range=week")
                    # Pick a custom range through the form, as an engineer would.
                    page.fill("input[name=from]", "2026-11-18")
                    page.fill("input[name=to]", "2026-11-21")
                    page.click(".history-picker button[type=submit]")
                    page.wait_for_load_state()
                    expect(page.locator('.segmented a[data-range="custom"]')).to_have_class(re.compile("active"))
                    page.wait_for_function(
                        "document.querySelectorAll('.chart').length > 0 && document.querySelectorAll('.chart').length"
                        " === document.querySelectorAll('.chart canvas').length"
                    )
                    assert "15 分钟" in page.locator(".history .footnote").inner_text()
                    # The average line, then the band: an invisible line at the minimums and an area stacked on it.
                    drawn = page.evaluate(
                        "(() => { const o = echarts.getInstanceByDom(document.querySelector('.chart')).getOption();"
                        " return o.series.map((s) => [s.stack || '', !!(s.areaStyle), s.data.length]); })()"
                    )
                    assert [d[:2] for d in drawn] == [["", False], ["band-0", False], ["band-0", True]], drawn
                    assert drawn[0][2] == drawn[1][2] == drawn[2][2] == 4 * 24 * 4
                    # The tooltip gives a bucket's average and its min–max, not the band's helper series.
                    tip = page.evaluate(
                        "(() => { const c = echarts.getInstanceByDom(document.querySelector('.chart'));"
                        " const f = c.getOption().tooltip[0].formatter;"
                        " return f([{seriesIndex: 0, seriesName: 'A相电压', marker: '',"
                        " axisValue: Date.UTC(2026, 10, 18, 8),"
                        " data: [0, 230.25, 228.7, 231.8]}, {seriesIndex: 1, seriesName: 'x', data: [0, 1]}]); })()"
                    )
                    assert tip == "2026-11-18 08:00<br>A相电压 <b>230.3</b> (最小–最大 228.7–231.8)", tip
                    csv_href = page.locator('[data-export="csv"]').get_attribute("href")
                    assert csv_href == f"/devices/{hist.device}/history.csv?range=custom&from=2026-11-18&to=2026-11-21"
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= viewport["width"] + 1, f"page overflows at {name}px: {width}"
                    page.locator("#history").screenshot(path=str(output_dir() / f"device-history-{name}.png"))
                    page.goto(f"{server.base}/devices/{hist.device}?range=custom&from=2026-11-20&to=2026-11-01")
                    expect(page.locator("#history-error")).to_have_text("结束日期不能早于开始日期")
                    page.locator("#history").screenshot(path=str(output_dir() / f"device-history-error-{name}.png"))
                    errors = [e for e in errors if "400" not in e]  # the refused range's own status
                    assert not errors, errors
                    context.close()
            finally:
                browser.close()
    finally:
        server.stop()
