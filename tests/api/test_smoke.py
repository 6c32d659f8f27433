from __future__ import annotations

from fastapi.testclient import TestClient

from accounts.const import Role
from tests.support.world import PASSWORD, World, bearer


def test_login_sets_a_cookie_and_me_answers(client: TestClient, api_world: World) -> None:
    r = client.post("/api/auth/login", json={"username": "engineer-user", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert "steward_session" in r.cookies
    me = client.get("/api/auth/me")
    assert me.json()["role"] == "engineer"


def test_estates_are_scoped(client: TestClient, api_world: World) -> None:
    r = client.get("/api/estates", headers=bearer(api_world, Role.viewer))
    assert [e["code"] for e in r.json()["items"]] == ["apia"]
    assert client.get("/api/estates/apib", headers=bearer(api_world, Role.viewer)).status_code == 404


def test_series_and_live(client: TestClient, api_world: World) -> None:
    h = bearer(api_world, Role.engineer)
    r = client.get(f"/api/points/{api_world.point_id}/series", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["source"] in {"samples_hourly", "samples_1h"}
    r = client.get(f"/api/rooms/{api_world.room_id}/live", headers=h)
    assert r.status_code == 200, r.text
    assert all(v["stale"] for v in r.json())
