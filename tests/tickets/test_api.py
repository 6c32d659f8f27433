"""The tickets API: roles per step, the assignee rule, reporter masking, estate scoping, countdowns, 409s.

`core.clock` is pinned for every test: at noon Shanghai time, or at each of the INSTANTS for the tests that
take ``instant`` (the breach countdowns)."""

from __future__ import annotations

import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_token, create_user
from api.routes import tickets as routes
from core.settings import Settings
from steward.app import create_app
from storage.models import AuditLog
from tests.support.clock import INSTANTS, SH, FrozenClock, pinned, same_day_due
from tests.support.world import PASSWORD, make_estate, staff_per_role
from tickets.const import CallbackChannel, Category, Priority, Source, TicketStatus

NOON = INSTANTS["sh-1200"]


@dataclass(frozen=True)
class World:
    estate: str
    other_estate: str
    tokens: dict[str, str]
    ids: dict[str, int]


@pytest.fixture(scope="module")
def world(engine: Engine) -> World:
    with Session(engine) as s, s.begin():
        mine, other = make_estate(s), make_estate(s)
        tokens, ids = {}, {}
        suffix = uuid.uuid4().hex[:6]
        staff = {
            r.value: u for r, u in staff_per_role(s, [mine.code], username=lambda r: f"tk-{r.value}-{suffix}").items()
        }
        staff["engineer2"] = create_user(
            s, username=f"tk-engineer2-{suffix}", password=PASSWORD, role=Role.engineer, estates=[mine.code]
        )
        for name, user in staff.items():
            tokens[name], ids[name] = create_token(s, user, "tests"), user.id
        outsider = create_user(
            s, username=f"tk-out-{suffix}", password=PASSWORD, role=Role.steward, estates=[other.code]
        )
        tokens["outsider"] = create_token(s, outsider, "tests")
    return World(mine.code, other.code, tokens, ids)


@pytest.fixture(autouse=True)
def frozen(request: pytest.FixtureRequest) -> Iterator[FrozenClock]:
    at = request.getfixturevalue("instant") if "instant" in request.fixturenames else NOON
    with pinned(at) as c:
        yield c


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), engine=engine)) as c:
        yield c


def h(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[who]}"}


def create(client: TestClient, world: World, who: str = "steward", **kw: Any) -> dict[str, Any]:
    body = {
        "estate": world.estate,
        "category": "hot_water",
        "title": "厨房无热水",
        "unit": "1-1-101",
        "reporter_name": "张三丰",
        "reporter_phone": "13812345678",
        **kw,
    }
    r = client.post("/api/tickets", json=body, headers=h(world, who))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def post(client: TestClient, world: World, who: str, ticket: int, step: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/api/tickets/{ticket}/{step}", json=body if body is not None else {}, headers=h(world, who))


def test_vocabularies_match_the_domain() -> None:
    for alias, enum in (
        (routes.StatusName, TicketStatus),
        (routes.PriorityName, Priority),
        (routes.CategoryName, Category),
        (routes.SourceName, Source),
        (routes.ChannelName, CallbackChannel),
    ):
        assert set(typing.get_args(alias)) == {e.value for e in enum}


def test_lifecycle_through_the_api(client: TestClient, world: World) -> None:
    t = create(client, world)
    assert t["status"] == "received"
    assert t["status_zh"] == "已受理"
    assert t["number"].startswith("GD")
    assert [c["clock"] for c in t["clocks"]] == ["on_site", "resolve"]
    assert 14 * 60 < t["seconds_remaining"] <= 15 * 60  # hot water: on site within 15 minutes
    tid = t["id"]
    r = post(client, world, "steward", tid, "dispatch", {"assignee_id": world.ids["engineer"]})
    assert r.status_code == 200, r.text
    assert post(client, world, "engineer2", tid, "accept").status_code == 403  # not the assignee
    assert post(client, world, "engineer", tid, "accept").status_code == 200
    assert post(client, world, "engineer", tid, "on-site").status_code == 200
    r = post(
        client,
        world,
        "engineer",
        tid,
        "resolve",
        {"work_done": "更换混水阀", "labour_minutes": 40, "resident_signoff": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["callback_due_at"] is not None
    assert post(client, world, "engineer", tid, "callback", {"channel": "phone", "satisfaction": 5}).status_code == 403
    r = post(client, world, "steward", tid, "callback", {"channel": "phone", "satisfaction": 5, "note": "满意"})
    assert r.status_code == 200, r.text
    r = post(client, world, "steward", tid, "close", {})
    assert r.status_code == 200, r.text
    detail = client.get(f"/api/tickets/{tid}", headers=h(world, "manager")).json()
    assert detail["status"] == "closed"
    assert detail["clocks"] == []
    assert detail["satisfaction"] == 5
    assert [e["action"] for e in detail["events"]] == [
        "opened",
        "dispatched",
        "accepted",
        "on_site",
        "resolved",
        "callback",
        "closed",
    ]
    r = post(client, world, "steward", tid, "reopen", {"reason": "又不热了"})
    assert r.status_code == 200
    assert r.json()["status"] == "dispatched"
    assert r.json()["reopened_count"] == 1


def test_roles_per_step(client: TestClient, world: World) -> None:
    tid = create(client, world)["id"]
    for who in ("viewer", "engineer", "card_admin", "billing_clerk"):
        assert post(client, world, who, tid, "dispatch", {"assignee_id": world.ids["engineer"]}).status_code == 403
    for who in ("viewer", "engineer", "billing_clerk"):
        r = client.post(
            "/api/tickets", json={"estate": world.estate, "category": "water", "title": "x"}, headers=h(world, who)
        )
        assert r.status_code == 403
    assert client.get("/api/tickets", headers=h(world, "card_admin")).status_code == 403
    assert client.get(f"/api/tickets/{tid}", headers=h(world, "viewer")).status_code == 200
    # A supervisor may step in for the assignee.
    assert post(client, world, "supervisor", tid, "dispatch", {"assignee_id": world.ids["engineer"]}).status_code == 200
    assert post(client, world, "supervisor", tid, "on-site").status_code == 200


def test_invalid_transitions_are_409(client: TestClient, world: World) -> None:
    tid = create(client, world)["id"]
    r = post(client, world, "supervisor", tid, "resolve", {"work_done": "done"})
    assert r.status_code == 409
    assert " / " in r.json()["detail"]
    assert post(client, world, "steward", tid, "close", {}).status_code == 409  # cancelling needs a reason
    assert post(client, world, "steward", tid, "reopen", {"reason": "x"}).status_code == 409
    assert post(client, world, "steward", tid, "feedback", {"text": "not a complaint"}).status_code == 409
    assert post(client, world, "steward", tid, "close", {"reason": "业主撤销"}).status_code == 200


def test_bad_input_is_422(client: TestClient, world: World) -> None:
    tid = create(client, world)["id"]
    assert post(client, world, "steward", tid, "callback", {"channel": "phone", "satisfaction": 6}).status_code == 422
    assert post(client, world, "steward", tid, "dispatch", {"assignee_id": 1, "admin": True}).status_code == 422
    assert post(client, world, "steward", tid, "comment", {"text": "   "}).status_code == 422
    r = post(client, world, "steward", tid, "warranty", {"party": "开发商", "due_at": "2030-01-01T00:00:00"})
    assert r.status_code == 422  # naive time
    assert client.get("/api/tickets?status=open", headers=h(world, "steward")).status_code == 422
    assert client.get("/api/tickets/0", headers=h(world, "steward")).status_code == 422


def test_unknown_assignee_unit_and_estate_are_404(client: TestClient, world: World) -> None:
    tid = create(client, world)["id"]
    assert post(client, world, "steward", tid, "dispatch", {"assignee_id": 2_000_000_000}).status_code == 404
    r = client.post(
        "/api/tickets",
        json={"estate": world.estate, "category": "water", "title": "x", "unit": "9-9-999"},
        headers=h(world, "steward"),
    )
    assert r.status_code == 404
    r = client.post(
        "/api/tickets",
        json={"estate": world.other_estate, "category": "water", "title": "x"},
        headers=h(world, "steward"),
    )
    assert r.status_code == 404


def test_reporter_is_masked_for_roles_without_personal_data(client: TestClient, world: World, engine: Engine) -> None:
    tid = create(client, world)["id"]
    for who, masked in (
        ("steward", False),
        ("manager", False),
        ("admin", False),
        ("engineer", True),
        ("supervisor", True),
        ("viewer", True),
    ):
        d = client.get(f"/api/tickets/{tid}", headers=h(world, who)).json()
        assert d["masked"] is masked
        assert (d["reporter_name"], d["reporter_phone"]) == (
            ("张**", "138****5678") if masked else ("张三丰", "13812345678")
        )
        listed = client.get(f"/api/tickets?estate={world.estate}&limit=500", headers=h(world, who)).json()["items"]
        assert next(i for i in listed if i["id"] == tid)["reporter_phone"] == d["reporter_phone"]
    with Session(engine) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "tickets.read").order_by(AuditLog.id.desc())).first()
        assert row is not None
        assert row.detail["masked"] is True
        assert "13812345678" not in str(row.detail)
        assert s.scalars(select(AuditLog).where(AuditLog.action == "tickets.create")).first() is not None


def test_other_estates_tickets_are_404(client: TestClient, world: World) -> None:
    theirs = create(client, world, "outsider", estate=world.other_estate, unit=None)["id"]
    ours = create(client, world)["id"]
    assert client.get(f"/api/tickets/{theirs}", headers=h(world, "steward")).status_code == 404
    assert post(client, world, "steward", theirs, "comment", {"text": "hi"}).status_code == 404
    assert client.get(f"/api/tickets/{ours}", headers=h(world, "outsider")).status_code == 404
    assert client.get(f"/api/tickets?estate={world.other_estate}", headers=h(world, "steward")).status_code == 404
    ids = {i["id"] for i in client.get("/api/tickets?limit=500", headers=h(world, "steward")).json()["items"]}
    assert ours in ids
    assert theirs not in ids


def test_list_filters_and_breach_countdowns(
    client: TestClient, world: World, instant: datetime, frozen: FrozenClock
) -> None:
    complaint = create(client, world, source="complaint", category="other", title="噪音投诉", unit=None)
    general = create(client, world, category="electrical", priority="minor")
    frozen.advance(timedelta(minutes=21))
    q = f"/api/tickets?estate={world.estate}&open_only=true&status=received&status=dispatched&limit=500"
    items = {i["id"]: i for i in client.get(q, headers=h(world, "steward")).json()["items"]}
    assert items[general["id"]]["breached"] is True  # on site within 20 min
    assert items[general["id"]]["seconds_remaining"] < 0
    assert items[general["id"]]["seconds_remaining"] == -60  # 21 min after receipt, on site due at 20 min
    assert datetime.fromisoformat(items[general["id"]]["resolve_due_at"]) == same_day_due(instant)  # minor
    assert items[complaint["id"]]["breached"] is False
    assert [c["clock"] for c in items[complaint["id"]]["clocks"]] == ["feedback", "resolve"]
    only = client.get("/api/tickets?source=complaint&category=other&limit=500", headers=h(world, "steward"))
    assert {i["source"] for i in only.json()["items"]} == {"complaint"}
    by_due = client.get("/api/tickets?sort=due&open_only=true&limit=500", headers=h(world, "steward")).json()
    dues = [i["resolve_due_at"] for i in by_due["items"] if i["resolve_due_at"]]
    assert dues == sorted(dues, key=datetime.fromisoformat)


def test_warranty_feedback_and_comment(client: TestClient, world: World) -> None:
    tid = create(client, world, source="complaint", category="civil", title="外墙渗水")["id"]
    due = (NOON + timedelta(days=15)).isoformat()
    r = post(client, world, "steward", tid, "warranty", {"party": "开发商客服部", "due_at": due, "ref": "LXD-9"})
    assert r.status_code == 200, r.text
    assert r.json()["warranty_party"] == "开发商客服部"
    assert post(client, world, "steward", tid, "feedback", {"text": "已转开发商"}).json()["feedback_at"] is not None
    r = post(client, world, "engineer", tid, "comment", {"text": "需搭脚手架"})
    assert r.status_code == 200
    assert r.json()["events"][-1]["detail"] == {"text": "需搭脚手架"}
    assert post(client, world, "viewer", tid, "comment", {"text": "x"}).status_code == 403


def test_warranty_table_routes_a_new_ticket_to_the_developer_and_the_report_reads_back(
    client: TestClient, world: World
) -> None:
    """Issue 14 part 6 through the API: the manager records the handover and edits a period; a ticket logged
    afterwards goes to the developer by itself; an outage is called back in person; the report counts it."""
    url = f"/api/estates/{world.estate}/warranty"
    r = client.put(
        f"{url}/handover", json={"handover_on": "2026-03-01", "developer": "绿苑置业"}, headers=h(world, "manager")
    )
    assert r.status_code == 200, r.text
    assert r.json()["handovers"] == [
        {"building": None, "handover_on": "2026-03-01", "developer": "绿苑置业", "response_days": 7}
    ]
    assert (
        client.put(
            f"{url}/handover", json={"handover_on": "2026-03-01", "developer": "x"}, headers=h(world, "steward")
        ).status_code
        == 403
    )
    r = client.put(f"{url}/terms", json={"item": "decoration", "years": 3}, headers=h(world, "manager"))
    terms = {t["item"]: t for t in r.json()["terms"]}
    assert (terms["decoration"]["years"], terms["decoration"]["default"]) == (3, False)
    assert (terms["heating"]["heating_seasons"], terms["heating"]["default"]) == (2, True)
    assert (
        client.put(
            f"{url}/terms", json={"item": "mep", "years": 2, "heating_seasons": 2}, headers=h(world, "manager")
        ).status_code
        == 422
    )

    t = create(client, world, category="electrical", fault="outage", title="单元停电")
    assert (t["warranty_party"], t["fault"]) == ("绿苑置业", "outage")
    assert datetime.fromisoformat(t["warranty_due_at"].replace("Z", "+00:00")) == NOON + timedelta(days=7)
    assert [
        e["action"] for e in client.get(f"/api/tickets/{t['id']}", headers=h(world, "steward")).json()["events"]
    ] == [
        "opened",
        "warranty_routed",
    ]
    post(client, world, "steward", t["id"], "dispatch", {"assignee_id": world.ids["engineer"]})
    post(client, world, "engineer", t["id"], "on-site")
    post(client, world, "engineer", t["id"], "resolve", {"work_done": "开发商未到，工程部抢修"})
    r = client.post(
        f"/api/tickets/{t['id']}/callback", json={"channel": "phone", "satisfaction": 5}, headers=h(world, "steward")
    )
    assert r.status_code == 409
    done = post(client, world, "steward", t["id"], "callback", {"channel": "in_person", "satisfaction": 5})
    assert done.json()["status"] == "callback_done"

    month = NOON.astimezone(SH).strftime("%Y-%m")
    report = client.get(
        f"/api/estates/{world.estate}/callback-report?month={month}", headers=h(world, "manager")
    ).json()
    assert report["month"] == month
    assert report["in_person"] >= 1
    assert report["callbacks"] == sum(report["by_channel"].values())
    assert (
        client.get(f"/api/estates/{world.other_estate}/callback-report", headers=h(world, "manager")).status_code == 404
    )
    # The module's world goes back to no warranty cover.
    client.put(
        f"{url}/handover", json={"handover_on": "2001-01-01", "developer": "绿苑置业"}, headers=h(world, "manager")
    )
