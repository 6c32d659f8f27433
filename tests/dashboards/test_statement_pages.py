"""Quarterly statement pages, the printable statement and the manual-reading pages (dashboards/billing_statements.py).

The shared dashboard world is committed: each test finds its own rows by id or by its own distinct values.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboards import pdf
from storage.models import BillingPeriod, Estate, ManualReading, Ticket
from tests.dashboards.conftest import DashWorld, login
from tests.support.billing_world import billing_place, statement_for


def test_the_clerk_lists_prints_and_reruns_a_quarters_statements(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    mine = statement_for(dash_world.engine, dash_world.estate)
    theirs = statement_for(dash_world.engine, dash_world.other_estate)
    login(dash_client, "billing_clerk-user")
    page = dash_client.get(f"/billing/statements?estate={dash_world.estate}&quarter=2026Q4")
    assert page.status_code == 200
    assert "季度对账单" in page.text
    assert '<a href="/billing/statements">对账单</a>' in page.text  # in the navigation
    assert f'data-statement="{mine}"' in page.text
    assert f'data-statement="{theirs}"' not in page.text
    assert dash_client.get(f"/billing/statements/{theirs}/print").status_code == 404  # another estate's
    one = dash_client.get(f"/billing/statements/{mine}/print")
    assert one.status_code == 200
    assert "@page { size: A4" in one.text
    assert one.text.count('class="statement"') == 1
    for label in ("热水费季度对账单", "期初余额", "本期用水", "上期补收", "期末余额", "2026Q4"):
        assert label in one.text
    batch = dash_client.get(f"/billing/statements/print?estate={dash_world.estate}&quarter=2026Q4")
    assert f'data-statement="{mine}"' in batch.text
    r = dash_client.post("/billing/statements/run", data={"estate": dash_world.estate, "quarter": "2026Q4"})
    assert r.status_code == 303
    assert "对账单已生成" in dash_client.get(r.headers["location"]).text
    # English toggle: the same statement in English.
    dash_client.cookies.set("lang", "en")
    en = dash_client.get(f"/billing/statements/{mine}/print")
    assert "Hot-water quarterly statement" in en.text
    assert "Closing" in en.text


def test_closing_a_quarter_from_the_page(dash_client: TestClient, dash_world: DashWorld) -> None:
    login(dash_client, "billing_clerk-user")
    r = dash_client.post("/billing/statements/close", data={"estate": dash_world.estate, "quarter": "2002Q1"})
    assert r.status_code == 303
    page = dash_client.get(r.headers["location"])
    assert "季度已结账" in page.text
    assert 'data-status="closed"' in page.text
    assert 'id="close-period"' not in page.text
    again = dash_client.post("/billing/statements/close", data={"estate": dash_world.estate, "quarter": "2002Q1"})
    assert "已结账" in dash_client.get(again.headers["location"]).text  # refused with the reason, nothing changes
    with Session(dash_world.engine) as s:
        period = s.scalars(
            select(BillingPeriod)
            .join(Estate, Estate.id == BillingPeriod.estate_id)
            .where(Estate.code == dash_world.estate, BillingPeriod.period == "2002Q1")
        ).one()
        assert (period.status, period.closed_by) == ("closed", "billing_clerk-user")


@pytest.mark.parametrize(("user", "status"), [("engineer-user", 403), ("steward-user", 200), ("viewer-user", 403)])
def test_who_sees_the_statements(dash_client: TestClient, dash_world: DashWorld, user: str, status: int) -> None:
    login(dash_client, user)
    assert dash_client.get("/billing/statements").status_code == status
    assert (
        dash_client.post(
            "/billing/statements/close", data={"estate": dash_world.estate, "quarter": "2002Q2"}
        ).status_code
        == 403
    )


def test_the_engineer_records_a_manual_reading_and_a_mismatch_opens_a_ticket(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    place = billing_place(dash_world.engine, dash_world.estate)
    code = f"{dash_world.estate.upper()}-HWB"
    login(dash_client, "engineer-user")
    page = dash_client.get(f"/billing/manual-readings?estate={dash_world.estate}")
    assert page.status_code == 200
    assert 'id="manual-reading-form"' in page.text
    assert code in page.text
    r = dash_client.post(
        "/billing/manual-readings",
        data={"estate": dash_world.estate, "device": code, "read_at": "2026-11-26T07:13", "value": "9999.5"},
    )
    assert r.status_code == 303
    listed = dash_client.get(r.headers["location"]).text
    assert "抄表读数已登记" in listed
    with Session(dash_world.engine) as s:
        reading = s.scalars(
            select(ManualReading).where(
                ManualReading.device_id == place.meter_id,
                ManualReading.read_at == datetime.fromisoformat("2026-11-26T07:13:00+08:00"),
            )
        ).one()
        ticket = s.get(Ticket, reading.ticket_id)
        assert ticket is not None
        assert ticket.device_id == place.meter_id
    assert reading.verdict == "mismatch"
    assert not reading.in_sop_window
    assert f'data-reading="{reading.id}" data-verdict="mismatch"' in listed
    assert f'href="/tickets/{ticket.id}"' in listed
    bad = dash_client.post(
        "/billing/manual-readings",
        data={"estate": dash_world.estate, "device": code, "read_at": "not a time", "value": "1"},
    )
    assert "抄表时间无效" in dash_client.get(bad.headers["location"]).text


def test_stewards_see_readings_without_the_form_and_viewers_not_at_all(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    login(dash_client, "steward-user")
    page = dash_client.get(f"/billing/manual-readings?estate={dash_world.estate}")
    assert page.status_code == 200
    assert 'id="manual-reading-form"' not in page.text
    r = dash_client.post(
        "/billing/manual-readings",
        data={"estate": dash_world.estate, "device": "X", "read_at": "2026-11-26T07:00", "value": "1"},
    )
    assert r.status_code == 403
    login(dash_client, "viewer-user")
    assert dash_client.get("/billing/manual-readings").status_code == 403


def test_statement_pdf_export(dash_client: TestClient, dash_world: DashWorld) -> None:
    if pdf.chromium() is None:
        pytest.fail("chromium is required for the PDF export (apt-get install chromium fonts-noto-cjk)")
    mine = statement_for(dash_world.engine, dash_world.estate)
    login(dash_client, "billing_clerk-user")
    r = dash_client.get(f"/billing/statements/{mine}/pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF")
