"""The rounds API: room calendar, one round, manual record; roles and estate scoping.

Run at each of the INSTANTS (tests/support/clock.py; the id is in the test id): the world is built with
`core.clock` pinned a day before the instant, so the schedules have been watched since the previous local
midnight, and every test runs with the clock pinned at the instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.const import Role
from alarms.rounds import ensure_default_schedules, evaluate_rounds
from core import clock
from core.settings import Settings
from steward.app import create_app
from storage.models import Estate, InspectionRound
from tests.support.clock import per_instant_module, pinned
from tests.support.world import World, bearer, build_world

pytestmark = per_instant_module


@pytest.fixture(scope="module")
def world(pg_server_url: str, instant: datetime) -> Iterator[World]:
    now = instant
    with ExitStack() as stack:
        # Built a day earlier: the schedules (anchored at that day's local midnight) have run since.
        with pinned(now - timedelta(days=1)):
            w = stack.enter_context(build_world(pg_server_url, prefix="steward_rounds_api"))
            with Session(w.engine) as s, s.begin():
                for code in ("apia", "apib"):
                    estate_id = s.scalar(select(Estate.id).where(Estate.code == code))
                    assert estate_id is not None
                    ensure_default_schedules(s, estate_id, now=now - timedelta(days=1))
                evaluate_rounds(s, now - timedelta(hours=5))
                evaluate_rounds(s, now)
        yield w


@pytest.fixture(autouse=True)
def _now(instant: datetime) -> Iterator[datetime]:
    """The API reads `core.clock` (a manual round's time, "in the future"): pinned at the instant."""
    with pinned(instant):
        yield instant


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), engine=world.engine)) as c:
        yield c


def rounds_of(world: World, estate: str) -> list[InspectionRound]:
    with Session(world.engine) as s:
        return list(
            s.scalars(
                select(InspectionRound)
                .join(Estate, Estate.id == InspectionRound.estate_id)
                .where(Estate.code == estate)
                .order_by(InspectionRound.window_start)
            )
        )


def test_room_calendar(client: TestClient, world: World, instant: datetime) -> None:
    r = client.get(
        "/api/estates/apia/rooms/PR1/rounds",
        params={"from": (instant - timedelta(hours=6)).isoformat(), "to": instant.isoformat()},
        headers=bearer(world, Role.viewer),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["estate_code"], body["room_code"], body["truncated"]) == ("apia", "PR1", False)
    items = body["items"]
    assert {i["schedule_code"] for i in items} == {"lv_2h", "hv_4h"}
    decided = [i for i in items if i["status"] != "open"]
    assert decided
    for i in decided:
        assert i["status"] in {"manual_due", "missed"}
        assert i["status_zh"] in {"待人工巡检", "未巡检"}
    due = [i for i in items if i["status"] == "manual_due"]
    for i in due:
        assert i["ticket_number"]
        # small_estate's power room has transformers only: the LV round has no telemetry to judge.
        assert i["evidence"]["required"] >= (1 if i["schedule_code"] == "hv_4h" else 0)
        assert i["evidence"]["no_data"] == i["evidence"]["required"]
    # Default range (last 2 days) works too; other estate and unknown room are 404.
    assert client.get("/api/estates/apia/rooms/PR1/rounds", headers=bearer(world, Role.engineer)).status_code == 200
    assert client.get("/api/estates/apib/rooms/PR1/rounds", headers=bearer(world, Role.engineer)).status_code == 404
    assert client.get("/api/estates/apia/rooms/NOPE/rounds", headers=bearer(world, Role.engineer)).status_code == 404
    # Extreme but valid times are not errors.
    r = client.get(
        "/api/estates/apia/rooms/PR1/rounds",
        params={"from": "0001-01-01T00:00:00+14:00", "to": "9999-12-31T23:59:59-12:00"},
        headers=bearer(world, Role.engineer),
    )
    assert r.status_code == 200, r.text
    assert client.get("/api/estates/apia/rooms/PR1/rounds", headers=bearer(world, Role.steward)).status_code == 403


def test_get_and_record_a_manual_round(client: TestClient, world: World) -> None:
    rnd = next(r for r in rounds_of(world, "apia") if r.status in ("manual_due", "missed") and r.evidence.get("points"))
    r = client.get(f"/api/rounds/{rnd.id}", headers=bearer(world, Role.viewer))
    assert r.status_code == 200, r.text
    assert r.json()["evidence_points"]
    other = rounds_of(world, "apib")[0]
    assert client.get(f"/api/rounds/{other.id}", headers=bearer(world, Role.engineer)).status_code == 404

    body = {"readings": {"room_temp_c": 29.5, "柜门": "已关"}, "notes": "现场巡检正常"}
    assert client.post(f"/api/rounds/{rnd.id}/manual", json=body, headers=bearer(world, Role.viewer)).status_code == 403
    assert (
        client.post(f"/api/rounds/{other.id}/manual", json=body, headers=bearer(world, Role.engineer)).status_code
        == 404
    )
    assert (
        client.post(f"/api/rounds/{rnd.id}/manual", json={"bogus": 1}, headers=bearer(world, Role.engineer)).status_code
        == 422
    )
    r = client.post(f"/api/rounds/{rnd.id}/manual", json=body, headers=bearer(world, Role.engineer))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["status"], out["satisfied_by"], out["performed_by"]) == ("done", "manual", "engineer-user")
    assert out["readings"] == body["readings"]
    again = client.post(f"/api/rounds/{rnd.id}/manual", json=body, headers=bearer(world, Role.engineer))
    assert again.status_code == 409
    future = (clock.now() + timedelta(hours=1)).isoformat()
    pending = next(r for r in rounds_of(world, "apia") if r.status in ("open", "manual_due", "missed"))
    r = client.post(
        f"/api/rounds/{pending.id}/manual", json={"performed_at": future}, headers=bearer(world, Role.supervisor)
    )
    assert r.status_code == 409, r.text
