"""Customer-service rounds over HTTP: the JSON API (calendar, tasks by role, one task, record) and the pages (estate
calendar, 我的巡查任务 and a task's form), with estate scoping: a steward of apia neither sees nor records apib's.

The world is built and every request made with `core.clock` pinned at NOW (a Thursday morning in Shanghai), so the
week's rounds and the first half-week's are under way. apia has one building of two households (both occupied) plus
the households added below; apib is seen only by head office.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.const import Role
from alarms.service_rounds import ensure_service_schedules, evaluate_service_rounds
from core.settings import Settings
from steward.app import create_app
from storage.models import Building, Estate, RoundTask, Ticket, Unit
from tests.support.clock import SH, pinned
from tests.support.service_rounds import new_service_task
from tests.support.world import PASSWORD, World, bearer, build_world

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=SH)


@pytest.fixture(scope="module")
def world(pg_server_url: str) -> Iterator[World]:
    with pinned(NOW), build_world(pg_server_url, prefix="steward_csr_api") as w:
        with Session(w.engine) as s, s.begin():
            for code in ("apia", "apib"):
                estate_id = s.scalars(select(Estate.id).where(Estate.code == code)).one()
                building = Building(estate_id=estate_id, code="CS9", name="9幢")
                s.add(building)
                s.flush()
                for i, occupancy in enumerate(("vacant", "renovating", "renovating", "occupied")):
                    s.add(
                        Unit(
                            building_id=building.id,
                            code=f"9-1-{101 + i}",
                            floor=1,
                            area_m2=Decimal("90.00"),
                            occupancy=occupancy,
                        )
                    )
                s.flush()
                ensure_service_schedules(s, estate_id, now=NOW)
            evaluate_service_rounds(s, NOW)
        yield w


@pytest.fixture(autouse=True)
def _now() -> Iterator[None]:
    with pinned(NOW):
        yield


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), engine=world.engine), follow_redirects=False) as c:
        yield c


def task_ids(world: World, estate: str, kind: str) -> list[int]:
    with Session(world.engine) as s:
        return list(
            s.scalars(
                select(RoundTask.id)
                .join(Estate, Estate.id == RoundTask.estate_id)
                .where(Estate.code == estate, RoundTask.status == "pending")
                .where(RoundTask.round_id.in_(_rounds_of_kind(s, kind)))
                .order_by(RoundTask.id)
            )
        )


def _rounds_of_kind(s: Session, kind: str) -> list[int]:
    from storage.models import InspectionRound

    return list(s.scalars(select(InspectionRound.id).where(InspectionRound.kind == kind)))


# --- the JSON API ------------------------------------------------------------------------------------------------


def test_calendar(client: TestClient, world: World) -> None:
    r = client.get("/api/estates/apia/service-rounds", headers=bearer(world, Role.viewer))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {s["kind"] for s in body["schedules"]} == {
        "vacant_units",
        "renovation_check",
        "renovation_sample",
        "household_visits",
        "estate_patrol",
    }
    by_kind = {i["kind"]: i for i in body["items"]}
    assert by_kind["vacant_units"]["tasks"] == 1
    assert by_kind["renovation_check"]["tasks"] == 2
    assert by_kind["renovation_sample"]["tasks"] == 1  # ceil(20 % of 2)
    assert by_kind["household_visits"]["tasks"] == 1  # ceil(2 % of 3)
    assert by_kind["estate_patrol"]["tasks"] == 2  # the estate's building and 9幢
    assert by_kind["estate_patrol"]["status_zh"] == "进行中"
    assert client.get("/api/estates/apia/service-rounds", headers=bearer(world, Role.card_admin)).status_code == 403


def test_tasks_follow_the_role(client: TestClient, world: World) -> None:
    def kinds(role: Role, scope: str = "mine") -> set[str]:
        r = client.get(f"/api/estates/apia/service-tasks?scope={scope}", headers=bearer(world, role))
        assert r.status_code == 200, r.text
        return {t["kind"] for t in r.json()["items"]}

    assert kinds(Role.steward) == {"household_visits", "estate_patrol"}
    assert kinds(Role.engineer) == {"vacant_units", "renovation_check"}
    assert kinds(Role.supervisor) == {"renovation_sample"}
    every = {"vacant_units", "renovation_check", "renovation_sample", "household_visits", "estate_patrol"}
    assert kinds(Role.manager) == every
    assert kinds(Role.steward, "all") == every


def test_record_a_task_with_a_finding(client: TestClient, world: World) -> None:
    task_id = task_ids(world, "apia", "estate_patrol")[0]
    h = bearer(world, Role.steward)
    r = client.post(
        f"/api/service-tasks/{task_id}/record",
        json={"finding": {"text": "9幢单元门闭门器损坏", "category": "access"}, "notes": "已拍照"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["outcome"], body["performed_by"]) == ("done", "finding", "steward-user")
    assert body["ticket_number"].startswith("GD")
    with Session(world.engine) as s:
        ticket = s.get(Ticket, body["ticket_id"])
        assert ticket is not None
        assert (ticket.source, ticket.category, ticket.received_by) == ("patrol", "access", "steward-user")
    again = client.post(f"/api/service-tasks/{task_id}/record", json={}, headers=h)
    assert again.status_code == 409, again.text
    assert client.get(f"/api/service-tasks/{task_id}", headers=h).json()["status_zh"] == "已完成"


def test_record_refusals(client: TestClient, world: World) -> None:
    task_id = task_ids(world, "apia", "household_visits")[0]
    h = bearer(world, Role.steward)
    skipped = client.post(f"/api/service-tasks/{task_id}/record", json={"status": "skipped"}, headers=h)
    assert skipped.status_code == 422, skipped.text  # a reason is required
    bad = client.post(
        f"/api/service-tasks/{task_id}/record", json={"finding": {"text": "x", "category": "plumbing"}}, headers=h
    )
    assert bad.status_code == 422
    viewer = client.post(f"/api/service-tasks/{task_id}/record", json={}, headers=bearer(world, Role.viewer))
    assert viewer.status_code == 403
    ok = client.post(
        f"/api/service-tasks/{task_id}/record", json={"status": "skipped", "notes": "住户不在家"}, headers=h
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "skipped"


def test_a_steward_of_apia_cannot_see_or_record_apibs(client: TestClient, world: World) -> None:
    theirs = task_ids(world, "apib", "estate_patrol")[0]
    h = bearer(world, Role.steward)
    assert client.get(f"/api/service-tasks/{theirs}", headers=h).status_code == 404
    assert client.post(f"/api/service-tasks/{theirs}/record", json={}, headers=h).status_code == 404
    assert client.get("/api/estates/apib/service-tasks", headers=h).status_code == 404
    assert client.get("/api/estates/apib/service-rounds", headers=h).status_code == 404
    missing = client.get("/api/service-tasks/2000000000", headers=h)
    assert (missing.status_code, missing.json()) == (404, client.get(f"/api/service-tasks/{theirs}", headers=h).json())
    with Session(world.engine) as s:
        assert s.get(RoundTask, theirs).status == "pending"  # type: ignore[union-attr]
    # Head office sees every estate.
    hq = {"Authorization": f"Bearer {world.named_tokens['hq-manager']}"}
    assert client.get(f"/api/service-tasks/{theirs}", headers=hq).status_code == 200


# --- the pages ---------------------------------------------------------------------------------------------------


def login(client: TestClient, username: str) -> None:
    r = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text


def test_task_pages_record_a_task(client: TestClient, world: World) -> None:
    login(client, "steward-user")
    page = client.get("/service-tasks")
    assert page.status_code == 200
    assert "我的巡查任务" in page.text
    assert '<a href="/service-tasks">巡查任务</a>' in page.text
    task_id = task_ids(world, "apia", "estate_patrol")[-1]
    assert f'href="/service-tasks/{task_id}"' in page.text
    form = client.get(f"/service-tasks/{task_id}")
    assert form.status_code == 200
    assert 'id="form-task"' in form.text
    assert "提交记录" in form.text
    r = client.post(f"/service-tasks/{task_id}/record", data={"outcome": "ok", "notes": "楼道整洁"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/service-tasks"
    after = client.get("/service-tasks")
    assert "巡查任务已记录" in after.text
    assert f'data-task="{task_id}" data-status="done"' in after.text
    # English.
    client.cookies.set("lang", "en")
    assert "My round tasks" in client.get("/service-tasks").text


def test_task_page_refusals(client: TestClient, world: World) -> None:
    theirs = task_ids(world, "apib", "estate_patrol")[0]
    login(client, "steward-user")
    assert client.get(f"/service-tasks/{theirs}").status_code == 404
    assert client.post(f"/service-tasks/{theirs}/record", data={"outcome": "ok"}).status_code == 404
    mine = new_service_task(world.engine, "apia")
    # Skipped without a reason: refused, back to the form with the message, nothing recorded.
    skipped = client.post(f"/service-tasks/{mine}/record", data={"outcome": "skipped"})
    assert (skipped.status_code, skipped.headers["location"]) == (303, f"/service-tasks/{mine}")
    assert "请填写未能完成的原因" in client.get(f"/service-tasks/{mine}").text
    with Session(world.engine) as s:
        assert s.get(RoundTask, mine).status == "pending"  # type: ignore[union-attr]
    login(client, "billing_clerk-user")
    assert client.get("/service-tasks").status_code == 403
    login(client, "viewer-user")
    assert client.get("/estates/apia/service-rounds").status_code == 200
    assert (
        client.post(f"/service-tasks/{task_ids(world, 'apia', 'vacant_units')[0]}/record", data={}).status_code == 403
    )


def test_calendar_page(client: TestClient, world: World) -> None:
    login(client, "engineer-user")
    page = client.get("/estates/apia/service-rounds")
    assert page.status_code == 200
    for name in ("空置房检查（每季度）", "装修户检查（每周2次）", "管家走访（每周）", "小区全面巡查"):
        assert name in page.text
    assert "2026 Q4" in page.text
    with Session(world.engine) as s:
        from storage.models import InspectionRound

        patrol = s.scalars(
            select(InspectionRound.id)
            .join(Estate, Estate.id == InspectionRound.estate_id)
            .where(Estate.code == "apia", InspectionRound.kind == "estate_patrol")
        ).first()
    detail = client.get(f"/estates/apia/service-rounds?round={patrol}")
    assert 'id="round-detail"' in detail.text
    assert "9幢" in detail.text
    assert client.get("/estates/apib/service-rounds").status_code == 404
    assert 'href="/estates/apia/service-rounds"' in client.get("/estates/apia").text
    # Beside the equipment rooms' round calendars too.
    assert 'href="/estates/apia/service-rounds"' in client.get(f"/rooms/{world.room_id}/rounds").text
