"""The access-card pages (dashboards/access.py): register with search, a household's quota and the issue form,
lost with a replacement, return, move-out, the printable 《智能卡发放登记表》, and who sees card numbers."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import AccessCard
from tests.dashboards.conftest import DashWorld, login
from tests.support.access_world import card_for, new_uid, unit_code_of


def _unit(world: DashWorld) -> str:
    return unit_code_of(world.engine, card_for(world.engine, world.estate))


def _card(world: DashWorld, card_id: int) -> AccessCard:
    with Session(world.engine) as s:
        return s.scalars(select(AccessCard).where(AccessCard.id == card_id)).one()


def test_the_card_desk_issues_from_the_household_page(dash_client: TestClient, dash_world: DashWorld) -> None:
    unit = _unit(dash_world)
    login(dash_client, "card_admin-user")
    home = dash_client.get("/access/cards")
    assert home.status_code == 200
    assert '<a href="/access/cards">门禁卡</a>' in home.text  # in the navigation
    page = dash_client.get(f"/access/household?estate={dash_world.estate}&unit={unit}")
    assert page.status_code == 200
    assert 'id="quota"' in page.text
    assert "免费卡额度" in page.text
    assert 'id="issue-form"' in page.text
    uid = new_uid()
    form = {
        "estate": dash_world.estate,
        "unit": unit,
        "card_type": "family",
        "uid": uid.lower(),
        "holder_name": "孙七",
        "holder_phone": "13700000000",
        "card_format": "mifare4",
        "method": "counter",
    }
    r = dash_client.post("/access/household/issue", data=form)
    assert r.status_code == 303, r.text
    card_id = int(re.fullmatch(r"/access/cards/(\d+)", r.headers["location"]).group(1))  # type: ignore[union-attr]
    card = dash_client.get(r.headers["location"])
    assert "已发卡并登记" in card.text
    assert uid in card.text
    assert _card(dash_world, card_id).holder_name == "孙七"
    # The same UID again: refused, back on the household page with the reason.
    again = dash_client.post("/access/household/issue", data=form)
    assert again.status_code == 303
    assert "该卡正在使用中" in dash_client.get(again.headers["location"]).text
    # Search by UID finds it; the printable form carries the register's fields.
    found = dash_client.get(f"/access/cards?estate={dash_world.estate}&q={uid}")
    assert f'data-card="{card_id}"' in found.text
    printed = dash_client.get(f"/access/cards/{card_id}/print")
    assert printed.status_code == 200
    for text in ("智能卡发放登记表", "孙七", uid, "家属卡", "card_admin-user", "领卡人签字"):
        assert text in printed.text


def test_lost_with_replacement_and_return(dash_client: TestClient, dash_world: DashWorld) -> None:
    card_id = card_for(dash_world.engine, dash_world.estate)
    login(dash_client, "card_admin-user")
    new = new_uid()
    r = dash_client.post(f"/access/cards/{card_id}/lost", data={"replacement_uid": new, "card_format": "mifare4"})
    assert r.status_code == 303
    assert _card(dash_world, card_id).status == "lost"
    replacement = int(r.headers["location"].rsplit("/", 1)[1])
    assert _card(dash_world, replacement).uid == new
    assert "已挂失" in dash_client.get(r.headers["location"]).text
    back = dash_client.post(f"/access/cards/{replacement}/return", data={"method": "counter"})
    assert back.status_code == 303
    assert _card(dash_world, replacement).status == "returned"


def test_move_out_from_the_household_page(dash_client: TestClient, dash_world: DashWorld) -> None:
    card_id = card_for(dash_world.engine, dash_world.estate)
    unit = unit_code_of(dash_world.engine, card_id)
    login(dash_client, "card_admin-user")
    r = dash_client.post("/access/household/move-out", data={"estate": dash_world.estate, "unit": unit})
    assert r.status_code == 303
    assert _card(dash_world, card_id).status == "revoked"


def test_stewards_read_without_card_numbers_and_cannot_act(dash_client: TestClient, dash_world: DashWorld) -> None:
    card_id = card_for(dash_world.engine, dash_world.estate)
    uid = _card(dash_world, card_id).uid
    login(dash_client, "steward-user")
    page = dash_client.get(f"/access/cards/{card_id}")
    assert page.status_code == 200
    assert uid not in page.text
    assert "********" in page.text
    assert 'id="lost-form"' not in page.text
    assert dash_client.post(f"/access/cards/{card_id}/lost", data={}).status_code == 403
    assert uid not in dash_client.get(f"/access/cards/{card_id}/print").text


def test_other_roles_and_estates(dash_client: TestClient, dash_world: DashWorld) -> None:
    theirs = card_for(dash_world.engine, dash_world.other_estate)
    login(dash_client, "engineer-user")
    assert dash_client.get("/access/cards").status_code == 403
    assert 'href="/access/cards"' not in dash_client.get("/").text
    login(dash_client, "card_admin-user")
    assert dash_client.get(f"/access/cards/{theirs}").status_code == 404
    assert dash_client.get(f"/access/cards/{theirs}/print").status_code == 404
    assert dash_client.post(f"/access/cards/{theirs}/return", data={}).status_code == 404
    assert dash_client.get(f"/access/household?estate={dash_world.other_estate}&unit=1-1-101").status_code == 404


def test_english_toggle(dash_client: TestClient, dash_world: DashWorld) -> None:
    card_id = card_for(dash_world.engine, dash_world.estate)
    login(dash_client, "card_admin-user")
    dash_client.cookies.set("lang", "en")
    page = dash_client.get(f"/access/cards/{card_id}")
    assert "Report lost" in page.text
    assert "Print the issue form" in page.text
    dash_client.cookies.delete("lang")


def test_the_swipe_log_page_is_the_desks_and_audited(dash_client: TestClient, dash_world: DashWorld) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func

    from storage.models import AccessEvent, AuditLog, Device, Estate

    card_id = card_for(dash_world.engine, dash_world.estate)
    uid = _card(dash_world, card_id).uid
    with Session(dash_world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == dash_world.estate)).one()
        controller = s.scalars(
            select(Device.id).where(Device.estate_id == estate_id, Device.kind == "door_controller").limit(1)
        ).one()
        ts = datetime(2026, 11, 2, 0, 0, tzinfo=UTC) + timedelta(seconds=card_id)
        s.add(AccessEvent(ts=ts, controller_id=controller, door="1-1-main", card_uid=uid, granted=True))
        before = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "access.swipes.read"))
    login(dash_client, "steward-user")
    assert dash_client.get("/access/swipes").status_code == 403
    assert 'id="swipes-link"' not in dash_client.get("/access/cards").text
    login(dash_client, "card_admin-user")
    assert 'id="swipes-link"' in dash_client.get("/access/cards").text
    page = dash_client.get(f"/access/swipes?estate={dash_world.estate}&card={uid}&granted=yes")
    assert page.status_code == 200
    assert "刷卡记录" in page.text
    assert f'href="/access/cards/{card_id}"' in page.text
    with Session(dash_world.engine) as s:
        after = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "access.swipes.read"))
    assert after == (before or 0) + 1


def test_a_staff_card_from_the_register(dash_client: TestClient, dash_world: DashWorld) -> None:
    card_for(dash_world.engine, dash_world.estate)  # the estate has doors
    login(dash_client, "card_admin-user")
    assert 'id="staff-form"' in dash_client.get("/access/cards").text
    form = {"estate": dash_world.estate, "staff_role": "engineer", "uid": new_uid(), "holder_name": "吴工"}
    r = dash_client.post("/access/cards/staff", data=form)
    assert r.status_code == 303
    card_id = int(r.headers["location"].rsplit("/", 1)[1])
    card = _card(dash_world, card_id)
    assert (card.card_type, card.staff_role, card.unit_id) == ("staff", "engineer", None)
    bad = dash_client.post("/access/cards/staff", data={**form, "uid": new_uid(), "staff_role": "janitor"})
    assert bad.headers["location"].startswith("/access/cards?estate=")


def test_controllers_sync_page_and_the_card_page_show_pending_then_synced(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    from sqlalchemy import update

    from access import sync
    from core import clock
    from storage.models import Outbox

    card_id = card_for(dash_world.engine, dash_world.estate)  # queues its controllers' change: 待同步
    login(dash_client, "steward-user")
    assert dash_client.get("/access/controllers").status_code == 403
    assert 'id="sync-link"' not in dash_client.get("/access/cards").text
    card = dash_client.get(f"/access/cards/{card_id}")
    assert 'id="card-controllers"' in card.text
    assert "待同步" in card.text

    login(dash_client, "engineer-user")  # read-only: the controllers page, in the navigation
    page = dash_client.get(f"/access/controllers?estate={dash_world.estate}")
    assert page.status_code == 200
    assert '<a href="/access/controllers">门禁控制器同步</a>' in page.text
    assert 'id="sync-table"' in page.text
    assert "待同步" in page.text
    assert dash_client.get(f"/access/controllers?estate={dash_world.other_estate}").status_code == 404

    # Every command of the estate's controllers acknowledged: the sync job marks them synced.
    with Session(dash_world.engine) as s, s.begin():
        ids = sync.controller_ids(s, _card(dash_world, card_id).estate_id)
        s.execute(
            update(Outbox)
            .where(Outbox.device_id.in_(ids), Outbox.acked_at.is_(None))
            .values(status="acknowledged", acked_at=clock.now())
        )
        sync.track(s, clock.now(), estate_id=_card(dash_world, card_id).estate_id)
    login(dash_client, "card_admin-user")
    card = dash_client.get(f"/access/cards/{card_id}")
    assert "已同步" in card.text
    assert "待同步" not in card.text
    assert 'id="sync-link"' in dash_client.get("/access/cards").text
    dash_client.cookies.set("lang", "en")
    assert "Synced" in dash_client.get(f"/access/controllers?estate={dash_world.estate}").text
    dash_client.cookies.delete("lang")
