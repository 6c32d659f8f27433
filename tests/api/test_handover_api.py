"""Shift handover over the JSON API (api/routes/handover.py) with the clock pinned at the boundary: the draft names
the day shift at 19:59, the engineer hands it over, the one who handed over cannot sign, the supervisor signs at
20:00 once, and the night shift is on the table. Who may call which route is the access matrix (test_access.py)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from accounts.const import Role
from tests.support.clock import pinned
from tests.support.world import World, bearer

SH = ZoneInfo("Asia/Shanghai")
BEFORE = datetime(2026, 11, 20, 19, 59, tzinfo=SH)
BOUNDARY = datetime(2026, 11, 20, 20, 0, tzinfo=SH)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_hand_over_and_sign_over_the_api(client: TestClient, api_world: World) -> None:
    code = api_world.estate
    engineer, supervisor = bearer(api_world, Role.engineer), bearer(api_world, Role.supervisor)
    with pinned(BEFORE):
        draft = client.get(f"/api/estates/{code}/handover", headers=engineer).json()
        assert draft["shift"]["code"] == "day"
        assert (_at(draft["shift"]["start"]), _at(draft["shift"]["end"])) == (
            BEFORE.replace(hour=8, minute=0),
            BOUNDARY,
        )
        assert draft["record"] is None
        assert set(draft["facts"]["counts"]) >= {"alarms_raised", "tickets_open", "rounds_missed"}
        r = client.post(
            f"/api/estates/{code}/handover",
            headers=engineer,
            json={"notes": "一切正常 / all normal", "shift_start": draft["shift"]["start"]},
        )
        assert r.status_code == 200, r.text
        record = r.json()
        assert (record["signed"], record["notes"]) == (False, "一切正常 / all normal")

    with pinned(BOUNDARY):
        own = client.post(f"/api/handovers/{record['id']}/sign", headers=engineer, json={})
        assert own.status_code == 409, own.text
        signed = client.post(f"/api/handovers/{record['id']}/sign", headers=supervisor, json={"note": "接班"})
        assert signed.status_code == 200, signed.text
        assert (signed.json()["signed"], _at(signed.json()["signed_at"])) == (True, BOUNDARY)
        again = client.post(f"/api/handovers/{record['id']}/sign", headers=bearer(api_world, Role.manager), json={})
        assert again.status_code == 409
        amend = client.post(
            f"/api/estates/{code}/handover",
            headers=engineer,
            json={"notes": "补充", "shift_start": draft["shift"]["start"]},
        )
        assert amend.status_code == 409  # final once signed
        assert client.get(f"/api/estates/{code}/handover", headers=engineer).json()["shift"]["code"] == "night"
        listed = client.get(f"/api/estates/{code}/handovers", headers=engineer).json()["items"]
        assert any(item["id"] == record["id"] and item["signed_at"] for item in listed)


def test_shift_times_must_tile_the_day(client: TestClient, api_world: World) -> None:
    manager = bearer(api_world, Role.manager)
    gap = {"shifts": [{"code": "day", "name_zh": "白班", "starts": "08:00", "ends": "18:00"}]}
    r = client.put(f"/api/estates/{api_world.other_estate}/shifts", headers=manager, json=gap)
    assert r.status_code == 404  # not the manager's estate
    r = client.put(f"/api/estates/{api_world.estate}/shifts", headers=manager, json=gap)
    assert r.status_code == 422, r.text
    shown = client.get(f"/api/estates/{api_world.estate}/shifts", headers=manager).json()
    assert [(s["code"], s["starts"], s["ends"]) for s in shown["shifts"]] == [
        ("day", "08:00", "20:00"),
        ("night", "20:00", "08:00"),
    ]
