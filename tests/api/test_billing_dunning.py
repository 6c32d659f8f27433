"""Dunning through the JSON API and the pages: import (bad file refused whole, same file twice), the ladder, the
documents as issued and printable, the masked public list, the roles and the estate scope (a clerk of apia never
reaches apib), and no outbox row from any of it.

The world (tests/support/world.py) is shared with the access matrix, which seeds unit 1-1-101 of both estates
with tests/support/dunning.py's MATRIX_CSV; every file here lists that row too, so its case stays open.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.const import Role
from storage.models import LedgerEntry, Outbox
from tests.support.dunning import MATRIX_CSV, seed_dunning
from tests.support.ops import new_task
from tests.support.world import PASSWORD, World, bearer

CSV = MATRIX_CSV + "1-1-102,2026-09,19.99,0.10\n1-1-102,2026-10,0.29,\n"
BAD = MATRIX_CSV + "1-1-102,2026-10,12.345,0\n9-9-999,2026-10,1.00,0\n1-1-102,2026-13,1.00,0\n"
READERS = {Role.admin, Role.manager, Role.billing_clerk, Role.steward}
CLERKS = {Role.admin, Role.manager, Role.billing_clerk}


def login(client: TestClient, username: str) -> None:
    client.cookies.clear()
    r = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text


def counts(world: World) -> tuple[int, int]:
    with Session(world.engine) as s:
        return (
            int(s.scalar(select(func.count()).select_from(Outbox)) or 0),
            int(s.scalar(select(func.count()).select_from(LedgerEntry)) or 0),
        )


def imported(client: TestClient, world: World, csv: str, who: Role | str = Role.billing_clerk) -> Any:
    return client.post(
        f"/api/estates/{world.estate}/dunning/imports",
        headers=bearer(world, who),
        json={"csv": csv, "filename": "fees.csv"},
    )


def test_import_ladder_documents_and_public_list_over_the_api(client: TestClient, api_world: World) -> None:
    before = counts(api_world)
    h = bearer(api_world, Role.billing_clerk)
    first = imported(client, api_world, CSV)
    assert first.status_code == 200, first.text
    again = imported(client, api_world, CSV)
    assert again.json()["batch"] == first.json()["batch"]
    assert (again.json()["cases_opened"], again.json()["cases_closed"], again.json()["rows"]) == (0, 0, 3)
    assert again.json()["total_fen"] >= 8800 + 120 + 1999 + 10 + 29

    r = client.post(f"/api/estates/{api_world.estate}/dunning/advance", headers=h)
    assert r.status_code == 200, r.text
    assert client.post(f"/api/estates/{api_world.estate}/dunning/advance", headers=h).json()["documents"] == 0

    cases = client.get(f"/api/estates/{api_world.estate}/dunning/cases", headers=h).json()
    mine = next(c for c in cases if c["unit_code"] == "1-1-102")
    assert (mine["amount_fen"], mine["late_fee_fen"], mine["stage"], mine["next_kind"]) == (
        2028,
        10,
        "reminder",
        "demand",
    )
    detail = client.get(f"/api/dunning/cases/{mine['case_id']}", headers=h).json()
    assert [s["kind"] for s in detail["ladder"]] == [
        "reminder",
        "demand",
        "urgent_demand",
        "lawyer_letter",
        "litigation",
    ]
    assert detail["ladder"][0]["done_on"] is not None
    assert detail["ladder"][1]["due"] is not None
    [doc] = detail["documents"]
    body = client.get(f"/api/dunning/documents/{doc['document_id']}", headers=h).json()["body_html"]
    assert "提示函" in body
    assert doc["number"] in body
    assert "贰拾元叁角捌分" in body  # 19.99 + 0.29 + 0.10

    public = client.get(f"/api/estates/{api_world.estate}/dunning/public-list", headers=h).json()
    assert {"unit_code": "1-1-101", "owner_masked": "张**", "amount_fen": 8800, "late_fee_fen": 120} in public
    text = str(public)
    assert not any(secret in text for secret in ("三丰", "13812345678", "李四", "13987654321"))
    assert counts(api_world) == before  # documents and tasks only: no command, no ledger entry


def test_a_bad_file_is_refused_whole_with_its_lines(client: TestClient, api_world: World) -> None:
    imported(client, api_world, CSV)
    r = imported(client, api_world, BAD)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    for expected in ("line 3", "line 4", "line 5", "第3行", "未导入任何数据", "no unit 9-9-999"):
        assert expected in detail, expected
    cases = client.get(
        f"/api/estates/{api_world.estate}/dunning/cases", headers=bearer(api_world, Role.billing_clerk)
    ).json()
    assert next(c for c in cases if c["unit_code"] == "1-1-102")["amount_fen"] == 2028  # nothing half-imported


def test_a_clerk_of_one_estate_never_reaches_the_other(client: TestClient, api_world: World) -> None:
    case_b, doc_b = seed_dunning(api_world.engine, api_world.other_estate)
    h = bearer(api_world, Role.billing_clerk)
    for path in (
        f"/api/estates/{api_world.other_estate}/dunning/cases",
        f"/api/dunning/cases/{case_b}",
        f"/api/dunning/documents/{doc_b}",
        f"/api/estates/{api_world.other_estate}/dunning/public-list",
    ):
        assert client.get(path, headers=h).status_code == 404, path
    r = client.post(f"/api/estates/{api_world.other_estate}/dunning/imports", headers=h, json={"csv": MATRIX_CSV})
    assert r.status_code == 404
    login(client, "billing_clerk-user")
    for path in (
        f"/dunning/{api_world.other_estate}",
        f"/dunning/cases/{case_b}",
        f"/dunning/documents/{doc_b}/print",
        f"/dunning/{api_world.other_estate}/public",
    ):
        assert client.get(path).status_code == 404, path
    login(client, "head-office")
    assert client.get(f"/dunning/cases/{case_b}").status_code == 200


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_pages_follow_the_policy(client: TestClient, api_world: World, role: Role) -> None:
    case_a, doc_a = seed_dunning(api_world.engine, api_world.estate)
    login(client, f"{role.value}-user")
    pages = [
        "/dunning",
        f"/dunning/{api_world.estate}",
        f"/dunning/cases/{case_a}",
        f"/dunning/{api_world.estate}/documents",
        f"/dunning/documents/{doc_a}/print",
        f"/dunning/{api_world.estate}/public",
    ]
    for path in pages:
        assert client.get(path).status_code == (200 if role in READERS else 403), (role, path)
    home = client.get("/dunning/" + api_world.estate)
    if role in READERS:
        assert ('id="form-import"' in home.text) == (role in CLERKS)
        assert ('id="form-advance"' in home.text) == (role in CLERKS)
    files = {"file": ("fees.csv", CSV.encode(), "text/csv")}
    r = client.post(f"/dunning/{api_world.estate}/import", files=files, follow_redirects=False)
    assert r.status_code == (303 if role in CLERKS else 403), (role, r.status_code)
    r = client.post(f"/dunning/{api_world.estate}/advance", follow_redirects=False)
    assert r.status_code == (303 if role in CLERKS else 403), (role, r.status_code)


def test_upload_page_lists_bad_lines_in_both_languages(client: TestClient, api_world: World) -> None:
    login(client, "billing_clerk-user")
    files = {"file": ("fees.csv", BAD.encode(), "text/csv")}
    r = client.post(f"/dunning/{api_world.estate}/import", files=files)
    assert r.status_code == 422
    assert "第3行" in r.text
    assert "未导入任何数据" in r.text
    assert "本小区没有房号 9-9-999" in r.text
    client.cookies.set("lang", "en")
    r = client.post(f"/dunning/{api_world.estate}/import", files=files)
    assert r.status_code == 422
    assert "line 4: no unit 9-9-999" in r.text
    assert "nothing imported" in r.text
    r = client.post(f"/dunning/{api_world.estate}/import", files={"file": ("fees.csv", CSV.encode(), "text/csv")})
    assert r.status_code == 200  # redirected to the estate page
    assert "Arrears imported" in r.text
    assert "1-1-102" in r.text


def test_printable_document_and_public_list(client: TestClient, api_world: World) -> None:
    _, doc_a = seed_dunning(api_world.engine, api_world.estate)
    login(client, "steward-user")
    page = client.get(f"/dunning/documents/{doc_a}/print")
    assert page.status_code == 200
    assert "size: A4" in page.text
    assert "@media print" in page.text
    assert "尊敬的张三丰业主" in page.text  # the letter goes to the owner by name
    assert "大写" in page.text
    public = client.get(f"/dunning/{api_world.estate}/public")
    assert "张**" in public.text
    assert "size: A4" in public.text
    assert not any(secret in public.text for secret in ("三丰", "13812345678", "李四", "13987654321"))
    client.cookies.set("lang", "en")
    assert "Property-fee arrears" in client.get(f"/dunning/{api_world.estate}/public").text
    nav = client.get(f"/dunning/{api_world.estate}")
    assert 'href="/dunning"' in nav.text
    assert "Units in arrears" in nav.text


def test_a_task_marked_done_over_the_api_leaves_the_open_list(client: TestClient, api_world: World) -> None:
    task_id = new_task(api_world.engine, api_world.estate)
    manager = bearer(api_world, Role.manager)
    tasks = f"/api/estates/{api_world.estate}/dunning/tasks"
    assert task_id in {t["task_id"] for t in client.get(tasks, headers=manager).json()}
    blank = client.post(f"/api/dunning/tasks/{task_id}/done", headers=manager, json={"note": "   "})
    assert blank.status_code == 422, blank.text
    r = client.post(f"/api/dunning/tasks/{task_id}/done", headers=manager, json={"note": "律师函已发出 / letter sent"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["done_by"], done["done_note"]) == (
        "done",
        "manager-user",
        "律师函已发出 / letter sent",
    )
    assert done["closed_at"]
    assert task_id not in {t["task_id"] for t in client.get(tasks, headers=manager).json()}
    everything = client.get(f"{tasks}?open_only=false", headers=manager).json()
    assert [t["done_by"] for t in everything if t["task_id"] == task_id] == ["manager-user"]
    again = client.post(f"/api/dunning/tasks/{task_id}/done", headers=manager, json={"note": "again"})
    assert again.status_code == 409, again.text
