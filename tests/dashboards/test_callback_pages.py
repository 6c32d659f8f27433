"""The monthly callback report page (回访统计): Chinese first with the English toggle, the figures of the month
recomputed here from the callbacks the test records, and the role rule of tickets.policy (engineers get 403)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Estate
from tests.dashboards.conftest import DashWorld, login
from tests.support.clock import SH
from tickets import service, warranty

# A month of its own in the shared, committed dashboard world: nothing else records callbacks in it.
MONTH = "2019-05"
START = datetime(2019, 5, 1, 9, 0, tzinfo=SH)
CALLBACKS = [("in_person", 5), ("in_person", 4), ("phone", 5), ("in_person", 2), ("sms", 3), ("in_person", 5)]


def _record(world: DashWorld) -> None:
    with Session(world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == world.estate)).one()
        for i, (channel, satisfaction) in enumerate(CALLBACKS):
            at = START + timedelta(days=i)
            t = service.open_ticket(
                s,
                estate_id=estate_id,
                source="resident",
                category="other",
                priority="normal",
                title=f"回访页 {i}",
                received_by="steward-user",
                reporter_phone="13800000000",
                received_at=at,
            )
            t.status = "dispatched"
            service.arrive_on_site(s, t, "engineer-user", at=at + timedelta(minutes=10))
            service.resolve(s, t, "engineer-user", work_done="修复", at=at + timedelta(hours=1))
            service.record_callback(s, t, "steward-user", channel, satisfaction, at=at + timedelta(hours=3))


def _pct(a: int, b: int) -> str:
    return f"{(Decimal(100 * a) / b).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %"


def test_callback_report_page(dash_client: TestClient, dash_world: DashWorld) -> None:
    _record(dash_world)
    login(dash_client, "steward-user")
    page = dash_client.get(f"/callbacks?month={MONTH}")
    assert page.status_code == 200
    assert 'lang="zh-CN"' in page.text
    assert "回访统计" in page.text
    assert "上门回访率" in page.text
    row = page.text.split(f'data-estate="{dash_world.estate}"', 1)[1].split("</tr>", 1)[0]
    in_person = sum(c == "in_person" for c, _ in CALLBACKS)
    satisfied = sum(s >= 3 for _, s in CALLBACKS)
    assert _pct(in_person, len(CALLBACKS)) in row  # 4 / 6 = 66.7 %: below 70 %
    assert _pct(satisfied, len(CALLBACKS)) in row  # 5 / 6 = 83.3 %
    assert row.count("未达标") == 2
    # The estate nobody but head office sees is not on the steward's page.
    assert f'data-estate="{dash_world.other_estate}"' not in page.text

    dash_client.get("/lang/en?next=/callbacks")
    english = dash_client.get(f"/callbacks?month={MONTH}")
    assert 'lang="en"' in english.text
    assert "Callback report" in english.text
    assert "In-person share" in english.text
    assert "Missed" in english.text


def test_engineers_do_not_get_the_report(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client, "engineer-user")
    assert dash_client.get("/callbacks").status_code == 403


def test_the_ticket_page_shows_the_fault_the_warranty_and_the_charge_back(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    at = datetime(2019, 6, 3, 10, 0, tzinfo=SH)
    with Session(dash_world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == dash_world.estate)).one()
        # The handover lives only as long as this transaction: the shared world's other tickets stay unrouted.
        handover = warranty.set_handover(s, estate_id, handover_on=date(2018, 9, 1), developer="绿苑置业", now=at)
        t = service.open_ticket(
            s,
            estate_id=estate_id,
            source="resident",
            category="civil",
            priority="normal",
            title="屋顶渗漏",
            received_by="steward-user",
            reporter_phone="13800000000",
            received_at=at,
            fault="leak",
        )
        s.delete(handover)
        assert warranty.charge_missed(s, at + timedelta(days=8)) == [t.id]
        ticket_id = t.id
    login(dash_client, "steward-user")
    page = dash_client.get(f"/tickets/{ticket_id}").text
    assert "漏水渗漏 · 须上门回访" in page
    assert "绿苑置业" in page
    assert "屋面及防水" in page
    assert "保修至 2023-09-01 前" in page
    assert "开发商逾期，转工程部维修并向开发商收费" in page
    dash_client.get(f"/lang/en?next=/tickets/{ticket_id}")
    page = dash_client.get(f"/tickets/{ticket_id}").text
    assert "Leak · in-person callback required" in page
    assert "Roof and waterproofing" in page
