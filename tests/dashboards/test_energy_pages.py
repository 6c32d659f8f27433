"""Issue 15 §4 acceptance: the energy page's figures for a building equal the sum of its meters' consumption
worked out independently from the registers (a rollover and a replaced meter among them, tests/support/
energy_world.py); the Excel export opens with openpyxl and holds the same numbers; each chart's CSV holds the
chart's data; who may open them (the role × route matrix of the pages) and on which estate; the JSON API
says the same; and the page in chromium at 1366 px and 375 px (screenshots)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_user
from core.settings import Settings
from dashboards import energy_view
from facility import energy_rollup
from steward.app import create_app
from tests.dashboards.support import AppServer
from tests.support import energy_world as ew
from tests.support.clock import pinned
from tests.support.world import PASSWORD, own_database, staff_per_role

ESTATE, OTHER = "entest", "enother"
MONTH = "2026-10"
OCT = (date(2026, 10, 1), date(2026, 11, 1))
SEP = (date(2026, 9, 1), date(2026, 10, 1))
EQUIPMENT = {Role.admin, Role.engineer, Role.supervisor, Role.manager, Role.viewer}  # spelled out, as tests/api does
PAGES = [
    f"/energy?estate={ESTATE}&month={MONTH}",
    f"/energy/report.xlsx?estate={ESTATE}&month={MONTH}",
    f"/energy/chart.csv?estate={ESTATE}&month={MONTH}&chart=daily-electricity_meter",
]


@dataclass
class EnergyPagesWorld:
    url: str
    engine: Engine
    world: ew.EnergyWorld


@pytest.fixture(scope="module")
def energy_db(pg_server_url: str) -> Iterator[EnergyPagesWorld]:
    with own_database(pg_server_url, "steward_energy") as (url, engine), pinned(ew.NOW):
        with Session(engine) as s, s.begin():
            world = ew.seed(s, ESTATE)
            ew.seed(s, OTHER)
            staff_per_role(s, [ESTATE])
            create_user(s, username="head-office", password=PASSWORD, role=Role.admin, all_estates=True)
        with Session(engine) as s, s.begin():
            while energy_rollup.refresh(s, ew.NOW).more:
                pass
        yield EnergyPagesWorld(url, engine, world)


@pytest.fixture
def client(energy_db: EnergyPagesWorld) -> Iterator[TestClient]:
    app = create_app(Settings(), engine=energy_db.engine)
    with pinned(ew.NOW), TestClient(app, follow_redirects=False) as c:
        yield c


def login(client: TestClient, username: str) -> None:
    client.cookies.clear()
    r = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text


def cells(html: str) -> dict[tuple[str, str], dict[str, str]]:
    """The summary table: (kind, building code or "") → {cell name: text}."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    table = html[html.index('id="energy-summary"') :]
    table = table[: table.index("</table>")]
    for kind, building, row in re.findall(
        r'<tr data-kind="([^"]+)" data-building="([^"]*)"[^>]*>(.*?)</tr>', table, re.S
    ):
        out[(kind, building)] = dict(re.findall(r'data-cell="([a-z_]+)">([^<]*)<', row))
    return out


def test_page_figures_equal_the_registers(client: TestClient, energy_db: EnergyPagesWorld) -> None:
    login(client, "engineer-user")
    r = client.get(f"/energy?estate={ESTATE}&month={MONTH}")
    assert r.status_code == 200, r.text
    assert "能耗报表" in r.text
    got = cells(r.text)
    meters = energy_db.world.meters
    for kind in ew.KINDS:
        for building in ("1", "2", ""):
            if (kind, building) == ("cold_water_meter", "2"):
                assert (kind, building) not in got  # building 2 has no cold-water meters
                continue
            row = got[(kind, building)]
            b = building or None
            units = ew.total(meters, kind, b, *OCT, master=False)
            assert row["units"] == energy_view.text(kind, units), (kind, building)
            assert row["previous"] == energy_view.text(kind, ew.total(meters, kind, b, *SEP, master=False))
    master = ew.total(meters, "cold_water_meter", "1", *OCT, master=True)
    units = ew.total(meters, "cold_water_meter", "1", *OCT, master=False)
    assert got[("cold_water_meter", "1")]["master"] == energy_view.text("cold_water_meter", master)
    assert got[("cold_water_meter", "1")]["loss"] == energy_view.text("cold_water_meter", master - units)
    assert 'id="energy-vacant"' in r.text
    assert 'data-unit="1-1-102"' in r.text
    assert f"/energy/report.xlsx?estate={ESTATE}&amp;month={MONTH}" in r.text


def test_the_excel_export_holds_the_same_numbers(client: TestClient, energy_db: EnergyPagesWorld) -> None:
    from openpyxl import load_workbook

    login(client, "manager-user")
    r = client.get(f"/energy/report.xlsx?estate={ESTATE}&month={MONTH}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == energy_view_xlsx_type()
    assert "attachment" in r.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(r.content), data_only=True)
    assert wb.sheetnames == ["月度汇总", "每日用量", "空置房用量", "用量排行"]
    summary = wb["月度汇总"]
    rows = list(summary.iter_rows(values_only=True))
    header = rows.index(next(row for row in rows if row and row[0] == "能源类别"))
    table = {(row[0], row[2]): row for row in rows[header + 1 :] if row and row[0]}
    meters = energy_db.world.meters
    labels = {"electricity_meter": "用电", "cold_water_meter": "冷水", "hot_water_meter": "热水"}
    for kind in ew.KINDS:
        for building, label in (("1", "1幢"), ("2", "2幢"), (None, "全小区")):
            if (kind, building) == ("cold_water_meter", "2"):
                continue  # building 2 has no cold-water meters
            row = table[(labels[kind], label)]
            want = ew.total(meters, kind, building, *OCT, master=False)
            assert dec(row[3]) == energy_view.q(kind, want), (kind, building)
            assert dec(row[7]) == energy_view.q(kind, ew.total(meters, kind, building, *SEP, master=False))
    cw1 = table[("冷水", "1幢")]
    assert dec(cw1[4]) == ew.total(meters, "cold_water_meter", "1", *OCT, master=True)
    daily = list(wb["每日用量"].iter_rows(values_only=True))
    columns = list(daily[0])
    col = columns.index("用电 1幢 (kWh)")
    for row in daily[1:]:
        day = row[0].date() if hasattr(row[0], "date") else row[0]
        assert dec(row[col]) == ew.day_total(meters, "electricity_meter", "1", day), day
    assert len(daily) == 1 + 31


def energy_view_xlsx_type() -> str:
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def dec(value: Any) -> Decimal:
    """A workbook number as a Decimal (openpyxl reads them back as float or int)."""
    return Decimal(str(value)).normalize() if value is not None else Decimal(0)


def test_each_charts_csv_holds_its_data(client: TestClient, energy_db: EnergyPagesWorld) -> None:
    login(client, "engineer-user")
    meters = energy_db.world.meters
    r = client.get(f"/energy/chart.csv?estate={ESTATE}&month={MONTH}&chart=daily-hot_water_meter")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["日期", "1幢 (m³)", "2幢 (m³)"]
    assert len(rows) == 1 + 31
    for day, b1, b2 in rows[1:]:
        d = date.fromisoformat(day)
        assert Decimal(b1) == ew.day_total(meters, "hot_water_meter", "1", d)
        assert Decimal(b2) == ew.day_total(meters, "hot_water_meter", "2", d)
    r = client.get(f"/energy/chart.csv?estate={ESTATE}&month={MONTH}&chart=compare-electricity_meter")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == ["1幢", "2幢"]
    assert Decimal(rows[1][1]) == ew.total(meters, "electricity_meter", "1", *OCT, master=False)
    assert client.get(f"/energy/chart.csv?estate={ESTATE}&month={MONTH}&chart=nope").status_code == 404


@pytest.mark.parametrize("role", list(Role))
def test_who_may_open_the_energy_pages(client: TestClient, role: Role) -> None:
    login(client, f"{role.value}-user")
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == (200 if role in EQUIPMENT else 403), (role, path, r.status_code)


def test_nav_links_the_page_for_equipment_roles_only(client: TestClient) -> None:
    login(client, "engineer-user")
    assert 'href="/energy"' in client.get(f"/energy?estate={ESTATE}").text
    login(client, "steward-user")
    assert 'href="/energy"' not in client.get("/tickets").text


def test_another_estates_report_is_404_like_a_missing_one(client: TestClient) -> None:
    login(client, "engineer-user")
    for path in PAGES:
        other = client.get(path.replace(ESTATE, OTHER))
        missing = client.get(path.replace(ESTATE, "no-such-estate"))
        assert other.status_code == missing.status_code == 404
    login(client, "head-office")
    assert client.get(f"/energy?estate={OTHER}&month={MONTH}").status_code == 200


def test_english(client: TestClient) -> None:
    login(client, "engineer-user")
    client.cookies.set("lang", "en")
    html = client.get(f"/energy?estate={ESTATE}&month={MONTH}").text
    assert "Energy and water report" in html
    assert "Households" in html
    assert "Vacant units with consumption" in html


def test_the_json_api_says_the_same(client: TestClient, energy_db: EnergyPagesWorld) -> None:
    login(client, "engineer-user")
    r = client.get(f"/api/estates/{ESTATE}/energy", params={"month": MONTH})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["month"], body["partial"]) == (MONTH, False)
    meters = energy_db.world.meters
    for u in body["usage"]:
        want = ew.total(meters, u["kind"], u["building_code"], *OCT, master=False)
        assert Decimal(u["units"]) == want, u
    assert client.get(f"/api/estates/{OTHER}/energy").status_code == 404
    assert client.get(f"/api/estates/{ESTATE}/energy", params={"month": "2026-13"}).status_code == 422


def test_the_page_in_chromium(energy_db: EnergyPagesWorld) -> None:
    from tests.dashboards.test_browser import CHROMIUM_ARGS, chromium_executable, new_page, output_dir

    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    server = AppServer(energy_db.url, output_dir().parent / "logs")
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
                    page.goto(f"{server.base}/energy?estate={ESTATE}&month={MONTH}")
                    page.wait_for_function(
                        "document.querySelectorAll('.chart').length > 0 && document.querySelectorAll('.chart').length"
                        " === document.querySelectorAll('.chart canvas').length"
                    )
                    assert page.locator("#energy-summary tr[data-kind]").count() == 8
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= viewport["width"] + 1, f"page overflows at {name}px: {width}"
                    page.screenshot(path=str(output_dir() / f"energy-{name}.png"), full_page=True)
                    assert not errors, errors
                    context.close()
            finally:
                browser.close()
    finally:
        server.stop()
