"""The billing pages on the server side: the account list (balances, days left, low rows highlighted), one account,
the top-up form paying once per rendering however often it is submitted, tariffs never in the past, held intervals
confirmed by the engineer, both languages, and the roles and estate scope of billing/policy.py.

The world is the dashboards' one (tests/dashboards/conftest.py), with a billed household added to each estate by
tests/support/billing_world.py; every test finds its own rows rather than counting.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import unquote

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing import notices, overview, queries, supply
from billing.const import NoticeKind, SupplyState
from core import clock
from storage.models import BillingAccount, BillingHold, Device, Outbox, Payment, Tariff
from tests.dashboards.conftest import DashWorld, login
from tests.support.billing_world import billing_place, fresh_account, new_hold


def flash(r: object) -> str:
    return unquote(r.cookies.get("steward_flash") or "")  # type: ignore[attr-defined]


def test_the_account_list_shows_balances_days_left_and_highlights_low_ones(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    place = billing_place(dash_world.engine, dash_world.estate)
    empty = fresh_account(dash_world.engine, dash_world.estate)
    login(dash_client, "billing_clerk-user")
    r = dash_client.get("/billing")
    assert r.status_code == 200, r.text
    html = r.text
    assert "热水账户" in html
    assert 'href="/billing"' in html  # the nav link the clerk gets
    row = re.search(rf'<tr class="([^"]*)" data-account="{place.account_id}">(.*?)</tr>', html, re.S)
    assert row is not None
    assert row.group(1) == ""  # plenty left: not highlighted
    assert "¥" in row.group(2)
    assert " 天" in row.group(2)
    low = re.search(rf'<tr class="([^"]*)" data-account="{empty}">(.*?)</tr>', html, re.S)
    assert low is not None
    assert low.group(1) == "low"
    assert "余额不足" in low.group(2)
    assert "¥0.00" in low.group(2)
    assert "暂无用量" in low.group(2)
    # The other estate's households are not listed; naming its code is 404.
    other = billing_place(dash_world.engine, dash_world.other_estate)
    assert f'data-account="{other.account_id}"' not in html
    assert dash_client.get(f"/billing?estate={dash_world.other_estate}").status_code == 404
    # English on the toggle.
    dash_client.cookies.set("lang", "en")
    en = dash_client.get("/billing").text
    assert "Hot-water accounts" in en
    assert "Running low" in en


def test_roles_follow_the_billing_policy(dash_client: TestClient, dash_world: DashWorld) -> None:
    place = billing_place(dash_world.engine, dash_world.estate)
    login(dash_client, "engineer-user")
    assert dash_client.get("/billing").status_code == 403
    assert dash_client.get(f"/billing/accounts/{place.account_id}").status_code == 403
    assert dash_client.get("/billing/holds").status_code == 200  # the engineer records meter replacements
    login(dash_client, "steward-user")
    page = dash_client.get(f"/billing/accounts/{place.account_id}")
    assert page.status_code == 200
    assert "top-up-form" not in page.text  # a steward reads balances but takes no money
    r = dash_client.post(
        f"/billing/accounts/{place.account_id}/top-up", data={"amount": "10", "method": "counter", "key": "k" * 12}
    )
    assert r.status_code == 403


def test_the_account_page_has_readings_charges_ledger_and_holds(dash_client: TestClient, dash_world: DashWorld) -> None:
    place = billing_place(dash_world.engine, dash_world.estate)
    new_hold(dash_world.engine, dash_world.estate)
    login(dash_client, "billing_clerk-user")
    r = dash_client.get(f"/billing/accounts/{place.account_id}")
    assert r.status_code == 200
    html = r.text
    for heading in ("最近读数", "计费明细", "账户流水", "暂停计费区间", "缴费充值"):
        assert heading in html, heading
    assert "缴费" in html
    assert "扣费" in html
    assert "疑似换表" in html
    assert f"/live/billing?view=account\\u0026account_id={place.account_id}" in html  # the page's stream
    other = billing_place(dash_world.engine, dash_world.other_estate)
    assert dash_client.get(f"/billing/accounts/{other.account_id}").status_code == 404


def _form_key(html: str) -> str:
    m = re.search(r'name="key" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


def test_a_double_submitted_top_up_form_pays_once(dash_client: TestClient, dash_world: DashWorld) -> None:
    account = fresh_account(dash_world.engine, dash_world.estate)
    login(dash_client, "billing_clerk-user")
    first_render = dash_client.get(f"/billing/accounts/{account}").text
    key = _form_key(first_render)
    assert _form_key(dash_client.get(f"/billing/accounts/{account}").text) != key  # a new key per rendering
    form = {"amount": "88.50", "method": "counter", "key": key}
    r1 = dash_client.post(f"/billing/accounts/{account}/top-up", data=form)
    r2 = dash_client.post(f"/billing/accounts/{account}/top-up", data=form)
    assert (r1.status_code, r2.status_code) == (303, 303)
    assert '"k": "ok"' in flash(r1)
    assert "flash_top_up" in flash(r1)
    assert "flash_top_up_replayed" in flash(r2)
    with Session(dash_world.engine) as s:
        paid = s.scalars(select(Payment).where(Payment.account_id == account)).all()
        assert [(p.amount_fen, p.actor) for p in paid] == [(8850, "billing_clerk-user")]
        assert queries.balance(s, account).derived_fen == 8850
    dash_client.cookies.set("steward_flash", r2.cookies["steward_flash"])
    page = dash_client.get(f"/billing/accounts/{account}")
    assert "该表单已提交过，未重复收费" in page.text
    assert "¥88.50" in page.text


def test_a_bad_amount_is_refused_with_a_message(dash_client: TestClient, dash_world: DashWorld) -> None:
    account = fresh_account(dash_world.engine, dash_world.estate)
    login(dash_client, "billing_clerk-user")
    for amount in ("12.345", "-5", "0", "abc", ""):
        key = _form_key(dash_client.get(f"/billing/accounts/{account}").text)
        r = dash_client.post(f"/billing/accounts/{account}/top-up", data={"amount": amount, "key": key})
        assert r.status_code == 303
        assert '"k": "error"' in flash(r), amount
    with Session(dash_world.engine) as s:
        assert s.scalars(select(Payment).where(Payment.account_id == account)).all() == []


def test_tariffs_page_adds_future_prices_only(dash_client: TestClient, dash_world: DashWorld) -> None:
    billing_place(dash_world.engine, dash_world.estate)
    login(dash_client, "billing_clerk-user")
    page = dash_client.get(f"/billing/tariffs?estate={dash_world.estate}")
    assert page.status_code == 200
    assert "热水价格" in page.text
    assert "元/m³" in page.text
    assert 'method="post" action="/billing/tariffs"' not in page.text  # the clerk may not set prices
    login(dash_client, "manager-user")
    assert (
        'method="post" action="/billing/tariffs"'
        in dash_client.get(f"/billing/tariffs?estate={dash_world.estate}").text
    )
    past = {"estate": dash_world.estate, "effective_from": "2020-01-01", "price": "25.00"}
    r = dash_client.post("/billing/tariffs", data=past)
    assert '"k": "error"' in flash(r)
    assert "不得追溯" in flash(r)
    future = {
        "estate": dash_world.estate,
        "effective_from": "2032-07-01",
        "price": "25.50",
        "up_to": "10",
        "price2": "30",
    }
    r = dash_client.post("/billing/tariffs", data=future)
    assert "flash_tariff" in flash(r), flash(r)
    with Session(dash_world.engine) as s:
        starts = [t.effective_from.date().isoformat() for t in s.scalars(select(Tariff))]
    assert "2020-01-01" not in starts
    shown = dash_client.get(f"/billing/tariffs?estate={dash_world.estate}").text
    assert "¥25.50" in shown
    assert "¥30.00" in shown
    assert "月用量 10 m³ 以内" in shown


def test_the_engineer_confirms_a_held_interval(dash_client: TestClient, dash_world: DashWorld) -> None:
    hold = new_hold(dash_world.engine, dash_world.estate)
    other = new_hold(dash_world.engine, dash_world.other_estate)
    login(dash_client, "engineer-user")
    page = dash_client.get("/billing/holds").text
    assert f'data-hold="{hold}"' in page
    assert f'data-hold="{other}"' not in page
    form = {"old_final": "120.5", "new_initial": "0.5", "replaced_at": "2028-01-01T08:00", "kind": "replacement"}
    r = dash_client.post(f"/billing/holds/{hold}/confirm", data=form)
    assert "flash_confirm_hold" in flash(r), flash(r)
    assert dash_client.post(f"/billing/holds/{other}/confirm", data=form).status_code == 404
    with Session(dash_world.engine) as s:
        assert s.get(BillingHold, hold).status == "confirmed"  # type: ignore[union-attr]
        assert s.get(BillingHold, other).status == "held"  # type: ignore[union-attr]
    assert f'data-hold="{hold}"' not in dash_client.get("/billing/holds").text


def test_the_live_stream_refuses_without_a_login(dash_client: TestClient) -> None:
    r = dash_client.get("/live/billing")
    assert r.status_code == 401


def test_the_account_page_shows_supply_state_valve_commands_and_notices(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    """A restricted household: the page names the state, the close command with the meter's ack, and the notices."""
    account_id = fresh_account(dash_world.engine, dash_world.estate)

    def mark() -> tuple[int, ...]:
        with Session(dash_world.engine) as s:
            estate_id = s.scalars(select(BillingAccount.estate_id).where(BillingAccount.id == account_id)).one()
            return overview.change_mark(s, [estate_id])

    before = mark()
    with Session(dash_world.engine) as s, s.begin():
        account = s.get(BillingAccount, account_id)
        assert account is not None
        s.add(
            Device(
                estate_id=account.estate_id,
                code=f"HWV-{account_id}",
                kind="hot_water_meter",
                unit_id=account.unit_id,
                has_valve=True,
            )
        )
        s.flush()
        now = clock.now()
        notice = notices.draft_for(
            s, account_id, NoticeKind.restriction, now=now, actor="page-test", effective_at=now + timedelta(days=17)
        )
        change = supply.change(
            s, account, SupplyState.restricted, now=now, actor="page-test", reason="页面测试限供", notice_id=notice.id
        )
        [outbox_id] = change.outbox_ids
        number = notice.number
    restricted = mark()
    assert restricted != before  # the open account pages re-render: a notice and a supply change
    with Session(dash_world.engine) as s, s.begin():  # as ingest records the meter's ack
        s.execute(update(Outbox).where(Outbox.id == outbox_id).values(status="acknowledged", acked_at=now))
    assert mark() != restricted
    login(dash_client, "billing_clerk-user")
    html = dash_client.get(f"/billing/accounts/{account_id}").text
    assert 'id="supply" data-state="restricted"' in html
    assert "供水状态" in html
    assert "限供" in html
    assert f'data-command="{outbox_id}" data-status="acknowledged"' in html
    assert "关阀" in html
    assert "设备已确认" in html
    assert "页面测试限供" in html
    assert 'data-kind="restriction" data-status="draft"' in html
    assert number in html
    assert "限供通知" in html
    dash_client.get(f"/lang/en?next=/billing/accounts/{account_id}")
    en = dash_client.get(f"/billing/accounts/{account_id}").text
    dash_client.get(f"/lang/zh?next=/billing/accounts/{account_id}")
    assert "Restricted" in en
    assert "Acknowledged" in en
    assert "Close valve" in en
    # A household never restricted: normal supply, no notices yet.
    untouched = fresh_account(dash_world.engine, dash_world.estate)
    html = dash_client.get(f"/billing/accounts/{untouched}").text
    assert 'id="supply" data-state="normal"' in html
    assert "正常供水" in html


def test_the_account_page_shows_a_refused_valve_command_with_its_reason(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    """A meter that answered the close command with "rejected" (ingest closes the row 'refused')."""
    account_id = fresh_account(dash_world.engine, dash_world.estate)
    with Session(dash_world.engine) as s, s.begin():
        account = s.get(BillingAccount, account_id)
        assert account is not None
        s.add(
            Device(
                estate_id=account.estate_id,
                code=f"HWV-{account_id}",
                kind="hot_water_meter",
                unit_id=account.unit_id,
                has_valve=True,
            )
        )
        s.flush()
        now = clock.now()
        notice = notices.draft_for(
            s, account_id, NoticeKind.restriction, now=now, actor="page-test", effective_at=now + timedelta(days=17)
        )
        change = supply.change(
            s, account, SupplyState.restricted, now=now, actor="page-test", reason="拒绝测试", notice_id=notice.id
        )
        [outbox_id] = change.outbox_ids
        s.execute(
            update(Outbox)
            .where(Outbox.id == outbox_id)
            .values(status="refused", acked_at=now, last_error="rejected", next_attempt_at=None)
        )
    login(dash_client, "billing_clerk-user")
    html = dash_client.get(f"/billing/accounts/{account_id}").text
    assert f'data-command="{outbox_id}" data-status="refused"' in html
    assert "已拒绝" in html
    assert "拒绝原因：设备拒绝执行" in html
    dash_client.get(f"/lang/en?next=/billing/accounts/{account_id}")
    en = dash_client.get(f"/billing/accounts/{account_id}").text
    dash_client.get(f"/lang/zh?next=/billing/accounts/{account_id}")
    assert "Refused" in en
    assert "Reason: Rejected by the device" in en
