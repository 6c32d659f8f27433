"""The daily summary page (每日汇总, ``/summary/daily``): the seeded day's figures (tests/support/summary.py) with links
to the tickets and rounds it names, the same numbers as ``/api/summary/daily``, Chinese first with the English
toggle, the nav entry, the estate scope (another estate is 404) and the role rule of alarms.policy."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.dashboards.conftest import DashWorld, login
from tests.support.summary import DAY, seed_summary_day

PAGE = f"/summary/daily?date={DAY.isoformat()}"
NEXT = DAY + timedelta(days=1)


def section(html: str, element_id: str) -> str:
    return html.split(f'id="{element_id}"', 1)[1].split("</section>", 1)[0]


def count(html: str, name: str) -> int:
    found = re.search(rf'data-count="{name}">(\d+)<', html)
    assert found, name
    return int(found.group(1))


def test_the_page_shows_the_day_with_links(dash_client: TestClient, dash_world: DashWorld) -> None:
    seeded = seed_summary_day(dash_world.engine, dash_world.estate)
    login(dash_client, "supervisor-user")
    page = dash_client.get(f"{PAGE}&estate={dash_world.estate}")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'lang="zh-CN"' in html
    assert '<a href="/summary/daily">每日汇总</a>' in html  # in the navigation
    assert f"统计时段 {DAY.isoformat()} 00:00 至 {NEXT.isoformat()} 00:00" in html
    assert "当日未发送" in html

    tickets = section(html, "sum-tickets")
    assert (count(tickets, "opened"), count(tickets, "closed"), count(tickets, "open"), count(tickets, "breached")) == (
        2,
        1,
        1,
        1,
    )
    assert f'<a href="/tickets/{seeded.breached_id}" class="code">{seeded.breached_number}</a>' in tickets
    assert "到场时限" in tickets
    assert f"应于 {DAY.isoformat()} 09:20 前" in tickets
    assert seeded.closed_number not in tickets  # closed that day: counted, not named

    complaints = section(html, "sum-complaints")
    assert (count(complaints, "opened"), count(complaints, "open"), count(complaints, "breached")) == (1, 1, 0)

    rounds = section(html, "sum-rounds")
    assert f'data-schedule="{seeded.schedule_name}"' in rounds
    assert f'href="/rooms/{seeded.room_id}/rounds?round={seeded.missed_round_id}"' in rounds  # the missed round
    assert "未巡检" in rounds

    alarms = section(html, "sum-alarms")
    raised = re.search(r'data-severity="alarm">.*?<td class="num">(\d+)</td><td class="num">(\d+)</td>', alarms)
    assert raised
    assert raised.groups() == ("1", "0")

    # The JSON API says the same (the page's login cookie works for it).
    [item] = dash_client.get(f"/api/summary/daily?estate={dash_world.estate}&date={DAY.isoformat()}").json()["items"]
    assert (item["tickets"]["opened"], item["tickets"]["closed"], item["tickets"]["open"]) == (2, 1, 1)
    assert item["complaints"]["open"] == count(complaints, "open")

    dash_client.cookies.set("lang", "en")
    english = dash_client.get(f"{PAGE}&estate={dash_world.estate}").text
    assert 'lang="en"' in english
    assert "Daily summary" in english
    assert "1. Repair tickets" in english
    assert "Past-due tickets" in english
    assert "Missed" in english


def test_stewards_get_ticket_links_but_not_the_equipment_calendars(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    seeded = seed_summary_day(dash_world.engine, dash_world.estate)
    login(dash_client, "steward-user")
    html = dash_client.get(PAGE).text  # one estate: the page opens on it
    assert f'href="/tickets/{seeded.breached_id}"' in html
    assert "/rooms/" not in section(html, "sum-rounds")  # rounds are equipment pages (alarms.policy ROUND_READERS)


def test_scope_and_roles(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client, "steward-user")
    assert dash_client.get(f"/summary/daily?estate={dash_world.other_estate}").status_code == 404
    assert dash_client.get("/summary/daily?estate=no-such-estate").status_code == 404
    assert f'value="{dash_world.other_estate}"' not in dash_client.get("/summary/daily").text
    for user in ("engineer-user", "card_admin-user", "billing_clerk-user"):
        login(dash_client, user)
        r = dash_client.get("/summary/daily")
        assert r.status_code == 403, user
        assert 'href="/summary/daily"' not in dash_client.get("/tickets" if user == "engineer-user" else "/").text
    login(dash_client, "head-office")
    page = dash_client.get(f"/summary/daily?estate={dash_world.other_estate}")
    assert page.status_code == 200
    assert f'value="{dash_world.estate}"' in page.text
    assert f'value="{dash_world.other_estate}"' in page.text


def test_today_by_default_and_odd_dates_fall_back_to_today(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client, "manager-user")
    today = dash_client.get("/summary/daily")
    assert today.status_code == 200
    assert "每日 18:30 自动发送" in today.text or "已于" in today.text
    for odd in ("2019-02-30", "2199-01-01", "yesterday"):
        r = dash_client.get(f"/summary/daily?date={odd}")
        assert r.status_code == 200, odd
        assert 'rel="next"' not in r.text  # today has no next day
