"""The notice queue page, printable notices (A4, one per page) and the PDF export (dashboards/billing_notices.py).

Notices are drafted by billing.notices in the shared dashboard world (committed: the world is shared, so each
test finds its own rows by id). The PDF comes from the machine's headless Chromium.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notices
from billing import service as billing_service
from billing.const import NoticeKind
from core import clock
from dashboards import pdf
from storage.models import BillingNotice, Building, Estate, Resident, Unit
from tests.dashboards.conftest import DashWorld, login


def new_notice(world: DashWorld, estate: str | None = None, *, approved: bool = False) -> tuple[int, str]:
    """A fresh renewal notice for the estate's first unit (committed); returns (id, number)."""
    with Session(world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == (estate or world.estate))).one()
        unit_id = s.scalars(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate_id)
            .order_by(Unit.id)
            .limit(1)
        ).one_or_none()
        if unit_id is None:  # the second estate has meters but no households: give it one
            building = Building(estate_id=estate_id, code="N1", name="通知楼")
            s.add(building)
            s.flush()
            unit = Unit(building_id=building.id, code="N1-1-101", floor=1, area_m2=Decimal("80.00"))
            s.add(unit)
            s.flush()
            unit_id = unit.id
        if not s.scalar(select(Resident.id).where(Resident.unit_id == unit_id)):
            s.add(Resident(unit_id=unit_id, name="王大明", phone="13900000000", role="owner"))
        account = billing_service.open_account(s, unit_id)
        notice = notices.draft_for(s, account.id, NoticeKind.renewal, now=clock.now(), actor="page-test")
        if approved:
            notices.approve(s, notice.id, actor="page-test")
        return notice.id, notice.number


def status_of(world: DashWorld, notice_id: int) -> str:
    with Session(world.engine) as s:
        return s.scalars(select(BillingNotice.status).where(BillingNotice.id == notice_id)).one()


def test_queue_lists_the_viewers_estates_and_approves_then_sends(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    mine, number = new_notice(dash_world)
    theirs, _ = new_notice(dash_world, dash_world.other_estate)  # numbers run per estate: compare ids
    login(dash_client, "billing_clerk-user")
    page = dash_client.get("/billing/notices")
    assert page.status_code == 200
    assert "通知队列" in page.text
    assert '<a href="/billing/notices">热水通知</a>' in page.text  # in the navigation
    assert number in page.text
    assert f'data-notice="{mine}"' in page.text
    assert f'data-notice="{theirs}"' not in page.text  # another estate's notice is not listed …
    assert dash_client.get(f"/billing/notices/{theirs}/print").status_code == 404  # … nor printable
    assert dash_client.post(f"/billing/notices/{theirs}/approve").status_code == 404
    r = dash_client.post(f"/billing/notices/{mine}/approve", data={"back": "/billing/notices?status=pending"})
    assert r.status_code == 303
    assert r.headers["location"] == "/billing/notices?status=pending"
    assert status_of(dash_world, mine) == "approved"
    assert "通知已审批" in dash_client.get("/billing/notices?status=pending").text
    dash_client.post(f"/billing/notices/{mine}/send")
    assert status_of(dash_world, mine) == "sent"
    # Sending again is refused with the domain's message, nothing changes.
    r = dash_client.post(f"/billing/notices/{mine}/send")
    assert r.status_code == 303
    assert "须先审批" in dash_client.get("/billing/notices").text
    dash_client.cookies.set("lang", "en")
    en = dash_client.get("/billing/notices?status=sent")
    assert "Notice queue" in en.text
    assert number in en.text


def test_cancel_needs_a_reason_and_stewards_may_only_look(dash_client: TestClient, dash_world: DashWorld) -> None:
    notice_id, number = new_notice(dash_world)
    login(dash_client, "steward-user")
    page = dash_client.get("/billing/notices")
    assert number in page.text
    assert f'action="/billing/notices/{notice_id}/approve"' not in page.text
    assert dash_client.post(f"/billing/notices/{notice_id}/approve").status_code == 403
    login(dash_client, "engineer-user")
    assert dash_client.get("/billing/notices").status_code == 403
    login(dash_client, "manager-user")
    dash_client.post(f"/billing/notices/{notice_id}/cancel", data={"reason": ""})
    assert status_of(dash_world, notice_id) == "draft"
    dash_client.post(f"/billing/notices/{notice_id}/cancel", data={"reason": "已当面缴费"})
    assert status_of(dash_world, notice_id) == "cancelled"


def test_printable_notice_is_a4_one_per_page_and_masks_the_holder(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    first, n1 = new_notice(dash_world, approved=True)
    _, n2 = new_notice(dash_world, approved=True)
    login(dash_client, "billing_clerk-user")
    one = dash_client.get(f"/billing/notices/{first}/print")
    assert one.status_code == 200
    assert "@page { size: A4" in one.text
    assert "page-break-after: always" in one.text
    assert one.text.count('class="notice"') == 1
    assert "热水续费通知书" in one.text
    assert n1 in one.text
    assert "王大明" not in one.text
    assert "王**" in one.text
    batch = dash_client.get("/billing/notices/print?status=approved")
    assert batch.status_code == 200
    numbers = re.findall(r'data-number="([^"]+)"', batch.text)
    assert n1 in numbers
    assert n2 in numbers
    assert numbers.index(n1) < numbers.index(n2)  # oldest first, as the clerk hands them out


def test_pdf_export_has_the_chinese_text(dash_client: TestClient, dash_world: DashWorld) -> None:
    if pdf.chromium() is None:
        pytest.fail("chromium is required for the PDF export (apt-get install chromium fonts-noto-cjk)")
    notice_id, number = new_notice(dash_world)
    login(dash_client, "billing_clerk-user")
    r = dash_client.get(f"/billing/notices/{notice_id}/pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF")
    # Chromium embeds the fonts it drew the text with: a CJK font proves the Chinese was typeset, not boxed.
    assert re.search(rb"/FontName\s*/[A-Z]{6}\+(Noto\w*CJK|WenQuanYi|WQY|Droid\w*Fallback)", r.content), (
        "no CJK font in the PDF: install fonts-noto-cjk or fonts-wqy-microhei"
    )
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-", "-"], input=r.content, capture_output=True, check=True).stdout
        assert "热水续费通知书" in text.decode()
        assert number in text.decode()
    batch = dash_client.get("/billing/notices/print.pdf?status=all")
    assert batch.status_code == 200
    assert batch.content.startswith(b"%PDF")


def test_pdf_export_without_chromium_is_a_clear_503(
    dash_client: TestClient, dash_world: DashWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    notice_id, _ = new_notice(dash_world)
    monkeypatch.setenv("STEWARD_CHROMIUM", "")
    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    monkeypatch.setattr(pdf, "Path", lambda p: type("Missing", (), {"exists": lambda self: False})())
    login(dash_client, "billing_clerk-user")
    r = dash_client.get(f"/billing/notices/{notice_id}/pdf")
    assert r.status_code == 503
    assert "chromium" in r.text
