"""``/api/summary/daily``: the figures of a seeded day (tests/support/summary.py), the estate scope (another estate
is 404 like a missing one, head office sees both), the role rule of alarms.policy, and the date checks.

Who may call it at all is also a row of the role × route matrix (test_access.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from accounts.const import Role
from tests.support.summary import DAY, at, seed_summary_day
from tests.support.world import World, bearer


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def summary(client: TestClient, world: World, who: Role | str, query: str) -> Any:
    return client.get(f"/api/summary/daily?{query}", headers=bearer(world, who))


def test_the_figures_of_the_seeded_day(client: TestClient, api_world: World) -> None:
    seeded = seed_summary_day(api_world.engine, api_world.estate)
    r = summary(client, api_world, Role.steward, f"estate={api_world.estate}&date={DAY.isoformat()}")
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert (item["estate"], item["date"], item["timezone"]) == (api_world.estate, DAY.isoformat(), "Asia/Shanghai")
    assert (when(item["start"]), when(item["end"])) == (at(0), at(0, days=1))
    t = item["tickets"]
    assert (t["opened"], t["closed"], t["open"]) == (2, 1, 1)
    assert t["opened_by_priority"] == {"urgent": 1, "high": 0, "normal": 1, "minor": 0}
    assert t["open_by_priority"] == {"urgent": 1, "high": 0, "normal": 0, "minor": 0}
    # Closed the next morning, but past its on-site clock and open that evening: named as it stood then.
    assert [(b["number"], b["clocks"], when(b["due_at"])) for b in t["breached"]] == [
        (seeded.breached_number, ["on_site"], at(9, 20))
    ]
    c = item["complaints"]
    assert (c["opened"], c["closed"], c["open"], c["breached"]) == (1, 0, 1, [])
    [group] = [g for g in item["rounds"] if g["schedule"] == seeded.schedule_name]
    assert (group["total"], group["by_status"]["satisfied"], group["by_status"]["missed"]) == (2, 1, 1)
    assert item["rounds_total"]["missed"] == 1
    assert item["alarms"] == {
        "raised": {"critical": 0, "alarm": 1, "warning": 0},
        "open": {"critical": 0, "alarm": 0, "warning": 0},
    }
    assert item["callbacks"] == {"done": 0, "due": 0, "overdue": 0, "waiting": []}
    assert item["sent_at"] is None  # the worker never ran in 2016


def test_scoped_staff_see_only_their_estates(client: TestClient, api_world: World) -> None:
    seed_summary_day(api_world.engine, api_world.other_estate)
    day = f"date={DAY.isoformat()}"
    mine = summary(client, api_world, Role.supervisor, day)
    assert mine.status_code == 200, mine.text
    assert [i["estate"] for i in mine.json()["items"]] == [api_world.estate]
    other = summary(client, api_world, Role.supervisor, f"estate={api_world.other_estate}&{day}")
    missing = summary(client, api_world, Role.supervisor, f"estate=no-such-estate&{day}")
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()
    everything = summary(client, api_world, "head-office", day)
    # Head office sees every estate (other tests of the module may have added estates of their own).
    assert {api_world.estate, api_world.other_estate} <= {i["estate"] for i in everything.json()["items"]}
    [theirs] = summary(client, api_world, "head-office", f"estate={api_world.other_estate}&{day}").json()["items"]
    assert theirs["tickets"]["opened"] == 2
    assert summary(client, api_world, "noestate-engineer", day).status_code == 403  # engineers: not their report


def test_roles_outside_the_policy_are_refused(client: TestClient, api_world: World) -> None:
    for role in (Role.engineer, Role.card_admin, Role.billing_clerk):
        assert summary(client, api_world, role, "").status_code == 403
    for role in (Role.admin, Role.steward, Role.supervisor, Role.manager, Role.viewer):
        r = summary(client, api_world, role, "")
        assert r.status_code == 200, r.text
        assert [i["estate"] for i in r.json()["items"]] == [api_world.estate]  # today, in the estate's zone


def test_dates_that_do_not_exist_or_have_not_begun_are_422(client: TestClient, api_world: World) -> None:
    for query in ("date=2019-02-30", "date=2199-01-01", "date=19-06-12", "date=2019-6-12", "estate=APIA"):
        assert summary(client, api_world, Role.steward, query).status_code == 422, query
