"""The notice queue through the JSON API: draft → approved → sent, conflicts on a repeated step, a reason to
cancel, a restriction notice refused when its stated date is too near (who may call what: test_access.py)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.const import Role
from billing import notices
from billing import service as billing_service
from billing.const import NoticeKind
from core import clock
from storage.models import Building, Estate, Unit
from tests.support.world import World, bearer


def draft(world: World, kind: NoticeKind = NoticeKind.renewal, *, stated_in: timedelta | None = None) -> int:
    with Session(world.engine) as s, s.begin():
        unit_id = s.scalars(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .join(Estate, Estate.id == Building.estate_id)
            .where(Estate.code == world.estate)
            .order_by(Unit.id)
            .limit(1)
        ).one()
        account = billing_service.open_account(s, unit_id)
        now = clock.now()
        effective = now + stated_in if stated_in is not None else None
        return notices.draft_for(s, account.id, kind, now=now, actor="api-test", effective_at=effective).id


def test_approve_send_and_conflicts(client: TestClient, api_world: World) -> None:
    clerk = bearer(api_world, Role.billing_clerk)
    notice_id = draft(api_world)
    got = client.get(f"/api/billing/notices/{notice_id}", headers=clerk)
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "draft"
    assert body["number"].startswith("RS-")
    assert "热水续费通知书" in body["body"]
    assert client.post(f"/api/billing/notices/{notice_id}/send", headers=clerk).status_code == 409
    approved = client.post(f"/api/billing/notices/{notice_id}/approve", headers=clerk).json()
    assert (approved["status"], approved["approved_by"]) == ("approved", "billing_clerk-user")
    sent = client.post(f"/api/billing/notices/{notice_id}/send", headers=clerk).json()
    assert sent["status"] == "sent"
    assert sent["sent_at"] is not None
    assert client.post(f"/api/billing/notices/{notice_id}/send", headers=clerk).status_code == 409
    again = client.post(f"/api/billing/notices/{notice_id}/cancel", headers=clerk, json={"reason": "x"})
    assert again.status_code == 409  # a sent notice is proof: it is never withdrawn
    listed = client.get("/api/billing/notices", params={"status": "sent"}, headers=clerk).json()
    assert notice_id in [n["id"] for n in listed]


def test_cancel_needs_a_reason(client: TestClient, api_world: World) -> None:
    manager = bearer(api_world, Role.manager)
    notice_id = draft(api_world)
    assert client.post(f"/api/billing/notices/{notice_id}/cancel", headers=manager, json={}).status_code == 422
    r = client.post(f"/api/billing/notices/{notice_id}/cancel", headers=manager, json={"reason": "已缴费"})
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"


def test_a_restriction_notice_is_not_sent_too_late(client: TestClient, api_world: World) -> None:
    clerk = bearer(api_world, Role.billing_clerk)
    late = draft(api_world, NoticeKind.restriction, stated_in=timedelta(days=14, hours=23))
    client.post(f"/api/billing/notices/{late}/approve", headers=clerk)
    r = client.post(f"/api/billing/notices/{late}/send", headers=clerk)
    assert r.status_code == 409
    assert "15" in r.text
    on_time = draft(api_world, NoticeKind.restriction, stated_in=timedelta(days=15, minutes=5))
    client.post(f"/api/billing/notices/{on_time}/approve", headers=clerk)
    assert client.post(f"/api/billing/notices/{on_time}/send", headers=clerk).json()["status"] == "sent"
