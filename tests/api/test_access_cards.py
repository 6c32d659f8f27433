"""The access-card API end to end on the API world: issue with the household's quota, lost + replacement,
return, move-out, search, and who sees card numbers (access/policy.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from access import policy as access_policy
from accounts.const import Role
from storage.models import AuditLog, Building, Estate, Unit
from tests.api.test_access import CARD_DESK, CARD_READERS, SYNC_READERS
from tests.support.access_world import card_for, new_uid
from tests.support.clock import SH
from tests.support.world import World, bearer


def _household(world: World) -> str:
    """A fresh unit of apia with 2 registered occupants (its own quota), and a gate (card_for)."""
    card_for(world.engine, world.estate)
    with Session(world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == world.estate)).one()
        building_id = s.scalars(select(Building.id).where(Building.estate_id == estate_id).limit(1)).one()
        code = f"Q-{uuid.uuid4().hex[:6]}"
        s.add(Unit(building_id=building_id, code=code, floor=1, area_m2=Decimal("80.00"), registered_occupants=2))
    return code


def issue(client: TestClient, world: World, unit: str, **kw: Any) -> Any:
    body = {"card_type": "owner", "uid": new_uid(), "holder_name": "王五", "unit_code": unit, **kw}
    return client.post(f"/api/access/estates/{world.estate}/cards", json=body, headers=bearer(world, Role.card_admin))


def test_the_roles_spelled_out_are_the_policy() -> None:
    A = access_policy.Action
    assert {r for r in Role if access_policy.may(r.value, A.view_register)} == CARD_READERS
    assert {r for r in Role if access_policy.may(r.value, A.manage_cards)} == CARD_DESK
    assert {r for r in Role if access_policy.may(r.value, A.view_uids)} == {Role.admin, Role.card_admin}
    assert {r for r in Role if access_policy.may(r.value, A.read_swipes)} == {Role.admin, Role.card_admin}
    assert {r for r in Role if access_policy.may(r.value, A.view_sync)} == SYNC_READERS


def test_issue_to_a_household_with_its_quota(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    h = bearer(api_world, Role.card_admin)
    before = client.get(f"/api/access/estates/{api_world.estate}/units/{unit}/cards", headers=h).json()
    assert (before["free_allowed"], before["free_left"], before["next_fee_fen"], before["cards"]) == (2, 2, 0, [])
    uid = new_uid()
    first = issue(client, api_world, unit, uid=" ".join([uid[:4].lower(), uid[4:]]))  # as a clerk might type it
    assert first.status_code == 201, first.text
    card = first.json()
    assert card["uid"] == uid
    assert card["wiegand26"] is not None
    assert (card["status"], card["free"], card["fee_fen"]) == ("active", True, 0)
    assert card["doors"]  # the default doors of an owner card
    assert issue(client, api_world, unit, card_type="family").json()["free"] is True
    third = issue(client, api_world, unit, card_type="family").json()
    assert (third["free"], third["fee_fen"]) == (False, 2000)
    after = client.get(f"/api/access/estates/{api_world.estate}/units/{unit}/cards", headers=h).json()
    assert (after["free_left"], after["next_fee_fen"], len(after["cards"])) == (0, 2000, 3)
    again = issue(client, api_world, unit, uid=card["uid"])
    assert again.status_code == 409, again.text
    assert issue(client, api_world, unit, uid="0011").status_code == 422  # too short for a 4-byte card


def test_lost_with_replacement_then_return(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    h = bearer(api_world, Role.card_admin)
    card = issue(client, api_world, unit).json()
    new = new_uid()
    r = client.post(f"/api/access/cards/{card['id']}/lost", json={"replacement_uid": new}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lost"]["status"] == "lost"
    assert body["replacement"]["uid"] == new
    assert body["replacement"]["replaces_id"] == card["id"]
    assert body["replacement"]["doors"] == card["doors"]
    assert client.post(f"/api/access/cards/{card['id']}/lost", json={}, headers=h).status_code == 409
    back = client.post(f"/api/access/cards/{body['replacement']['id']}/return", json={}, headers=h)
    assert back.json()["status"] == "returned"
    with Session(api_world.engine) as s:
        actions = set(
            s.scalars(
                select(AuditLog.action).where(
                    AuditLog.object.in_([f"access_card:{card['id']}", f"access_card:{body['replacement']['id']}"])
                )
            )
        )
    assert actions == {"access.card.issue", "access.card.lost", "access.card.replace", "access.card.return"}


def test_move_out_revokes_the_household(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    h = bearer(api_world, Role.card_admin)
    ids = sorted(issue(client, api_world, unit, card_type=t).json()["id"] for t in ("owner", "family", "visitor"))
    r = client.post(f"/api/access/estates/{api_world.estate}/units/{unit}/move-out", headers=h)
    assert sorted(c["id"] for c in r.json()) == ids
    assert {c["status"] for c in r.json()} == {"revoked"}
    assert client.post(f"/api/access/estates/{api_world.estate}/units/{unit}/move-out", headers=h).json() == []


def test_stewards_read_the_register_without_card_numbers(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    card = issue(client, api_world, unit, holder_name="赵六").json()
    url = f"/api/access/estates/{api_world.estate}/cards"
    admin = client.get(url, params={"q": card["uid"]}, headers=bearer(api_world, Role.card_admin)).json()
    assert [c["id"] for c in admin["items"]] == [card["id"]]
    steward = bearer(api_world, Role.steward)
    by_unit = client.get(url, params={"q": unit}, headers=steward).json()
    assert [(c["id"], c["uid"], c["wiegand26"]) for c in by_unit["items"]] == [(card["id"], "********", None)]
    assert by_unit["items"][0]["holder_name"] == "赵六"
    assert client.get(url, params={"q": card["uid"]}, headers=steward).json()["items"] == []  # no probing by UID
    one = client.get(f"/api/access/cards/{card['id']}", headers=steward).json()
    assert one["uid"] == "********"
    assert client.get(url, params={"q": "赵六", "status": "active"}, headers=steward).json()["total"] >= 1


def test_renovation_pass_and_visitor_validity(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    r = issue(client, api_world, unit, card_type="renovation", valid_until_date="2031-01-31")
    assert r.status_code == 201, r.text
    card = r.json()
    assert (card["fee_fen"], card["deposit_fen"], card["deposit_state"]) == (500, 2000, "held")
    assert datetime.fromisoformat(card["valid_until"]) == datetime(2031, 2, 1, tzinfo=SH)  # the last day included
    assert card["time_profile"] == {"days": [1, 2, 3, 4, 5, 6], "windows": [["08:00", "18:00"]]}
    assert issue(client, api_world, unit, card_type="renovation").status_code == 422  # the permit's end is required
    too_long = issue(client, api_world, unit, card_type="visitor", valid_until="2099-01-01T00:00:00+08:00")
    assert too_long.status_code == 422


def test_an_explicit_scope_and_time_profile(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    doors = issue(client, api_world, unit).json()["doors"]
    profile = {"days": [6, 7], "windows": [["09:00", "12:00"]]}
    r = issue(client, api_world, unit, card_type="visitor", doors=doors[:1], time_profile=profile)
    assert r.status_code == 201, r.text
    assert (r.json()["doors"], r.json()["time_profile"]) == (doors[:1], profile)
    backwards = {"days": [1], "windows": [["18:00", "08:00"]]}
    assert issue(client, api_world, unit, card_type="visitor", time_profile=backwards).status_code == 422
    assert issue(client, api_world, unit, doors=["no-such-door"]).status_code == 422


def test_a_live_replacement_uid_changes_nothing(client: TestClient, api_world: World) -> None:
    unit = _household(api_world)
    h = bearer(api_world, Role.card_admin)
    card, other = issue(client, api_world, unit).json(), issue(client, api_world, unit).json()
    r = client.post(f"/api/access/cards/{card['id']}/lost", json={"replacement_uid": other["uid"]}, headers=h)
    assert r.status_code == 409, r.text
    assert client.get(f"/api/access/cards/{card['id']}", headers=h).json()["status"] == "active"


def test_the_swipe_log_is_the_card_desks_and_every_read_is_audited(client: TestClient, api_world: World) -> None:
    from datetime import UTC, timedelta

    from sqlalchemy import func

    from storage.models import AccessEvent, Device

    unit = _household(api_world)
    card = issue(client, api_world, unit, holder_name="钱九").json()
    with Session(api_world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == api_world.estate)).one()
        controller = s.scalars(
            select(Device).where(Device.estate_id == estate_id, Device.kind == "door_controller").limit(1)
        ).one()
        t0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=int(card["id"]))
        s.add_all(
            [
                AccessEvent(ts=t0, controller_id=controller.id, door="d1", card_uid=card["uid"], granted=True),
                AccessEvent(
                    ts=t0 + timedelta(minutes=1),
                    controller_id=controller.id,
                    door="d1",
                    card_uid="DEADBEEF",
                    granted=False,
                    reason="not_in_acl",
                ),
            ]
        )
        audits_before = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "access.swipes.read")
        )
    url = f"/api/access/estates/{api_world.estate}/swipes"
    h = bearer(api_world, Role.card_admin)
    mine = client.get(url, params={"card": card["uid"].lower()}, headers=h).json()
    assert [(r["card_uid"], r["granted"], r["holder_name"], r["unit_code"]) for r in mine["items"]] == [
        (card["uid"], True, "钱九", unit)
    ]
    denied = client.get(url, params={"granted": "false", "since": t0.isoformat(), "door": "d1"}, headers=h).json()
    assert ("DEADBEEF", "not_in_acl", None) in [(r["card_uid"], r["reason"], r["card_id"]) for r in denied["items"]]
    assert client.get(url, headers=bearer(api_world, Role.steward)).status_code == 403
    with Session(api_world.engine) as s:
        reads = s.scalars(
            select(AuditLog).where(AuditLog.action == "access.swipes.read").order_by(AuditLog.id.desc()).limit(2)
        ).all()
        total = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "access.swipes.read"))
    assert total == (audits_before or 0) + 2
    assert {r.actor for r in reads} == {"card_admin-user"}
    assert reads[1].detail["filters"]["card"] == card["uid"].lower()


def test_controllers_show_pending_sync_after_an_issue(client: TestClient, api_world: World) -> None:
    """A card issued through the API queues its controllers' change: they show 待同步 (pending) until the ack."""
    unit = _household(api_world)
    issue(client, api_world, unit).raise_for_status()
    r = client.get(
        "/api/access/controllers", params={"estate": api_world.estate}, headers=bearer(api_world, Role.engineer)
    )
    assert r.status_code == 200
    rows = r.json()
    assert rows
    assert {row["estate_code"] for row in rows} == {api_world.estate}
    gate = next(row for row in rows if row["desired_version"] > 0)  # a controller of the card's doors
    assert gate["pending"] is True
    assert gate["desired_version"] > gate["applied_version"]
    assert gate["pending_since"] is not None
    other = client.get(
        "/api/access/controllers", params={"estate": "no-such-estate"}, headers=bearer(api_world, Role.card_admin)
    )
    assert other.status_code == 404
