"""The device-commands read behind the commands page and GET /api/commands: origin and its links (the household
account of a supply change, the repair ticket of an alarm's valve closure, the alarm an unacknowledged command
raised), filters, paging and the estate scope."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from billing import service as billing_service
from billing import supply
from billing.const import SupplyState
from core.errors import InvalidInput
from storage.models import Alarm, AlarmRuleRow, Outbox
from storage.outbox_reads import command_status_counts, commands_page
from tests.support.clock import INSTANTS
from tests.support.ops import add_command
from tests.support.world import make_estate
from tickets import service as tickets

T0 = INSTANTS["sh-1200"]


@pytest.fixture(autouse=True)
def _own_outbox(session: Session) -> None:
    # Other modules commit outbox rows to the shared database; this transaction (rolled back) starts without them.
    session.execute(delete(Outbox))


def test_origins_links_filters_and_scope(session: Session) -> None:
    place, other = make_estate(session), make_estate(session)
    account = billing_service.open_account(session, place.unit_id)
    restricted = supply.change(session, account, SupplyState.restricted, now=T0, actor="zhou", reason="欠费限供")
    (billing_id,) = restricted.outbox_ids
    ticket = tickets.open_ticket(
        session,
        estate_id=place.estate_id,
        source="manual",
        category="water",
        priority="high",
        title="空置房水表走字",
        received_by="system",
    )
    alarm_cmd = add_command(
        session, place.valve_meter_id, reason="vacant_flow", ticket=ticket.number, status="failed", last_error="no ack"
    )
    rule = AlarmRuleRow(code="t.cmd", kind="command", metric="-", title_zh="指令", title_en="cmd", params={})
    session.add(rule)
    session.flush()
    alarm = Alarm(
        rule_id=rule.id,
        subject=f"device:{place.valve_meter_id}",
        device_id=place.valve_meter_id,
        estate_id=place.estate_id,
        severity="alarm",
        raised_at=T0,
        detail={"outbox_id": alarm_cmd},
    )
    session.add(alarm)
    theirs = add_command(session, other.valve_meter_id, reason="billing_restriction")
    session.flush()

    page = commands_page(session, estate_ids=[place.estate_id])
    rows = {r.id: r for r in page.items}
    assert set(rows) == {billing_id, alarm_cmd}
    assert page.total == 2
    billing_row, alarm_row = rows[billing_id], rows[alarm_cmd]
    assert (billing_row.origin, billing_row.reason, billing_row.action) == ("billing", "billing_restriction", "close")
    assert billing_row.account_id == account.id
    assert billing_row.ticket_id is None
    assert (alarm_row.origin, alarm_row.ticket_id, alarm_row.ticket_number) == ("alarm", ticket.id, ticket.number)
    assert (alarm_row.alarm_id, alarm_row.status, alarm_row.last_error) == (alarm.id, "failed", "no ack")

    def ids(**kw: object) -> set[int]:
        return {r.id for r in commands_page(session, estate_ids=[place.estate_id], **kw).items}  # type: ignore[arg-type]

    assert ids(origins={"billing"}) == {billing_id}
    assert ids(status="failed") == {alarm_cmd}
    assert ids(command="valve", action="close") == {billing_id, alarm_cmd}
    assert ids(command="acl") == set()
    assert ids(device_code=f"{place.code.upper()}-MV") == {billing_id, alarm_cmd}
    assert ids(device_code=f"{other.code.upper()}-MV") == set()
    assert {r.id for r in commands_page(session, estate_ids=[other.estate_id]).items} == {theirs}
    assert {billing_id, alarm_cmd, theirs} <= {r.id for r in commands_page(session, estate_ids=None).items}
    assert commands_page(session, estate_ids=[]).total == 0
    one = commands_page(session, estate_ids=[place.estate_id], limit=1, offset=1)
    assert (len(one.items), one.total) == (1, 2)
    counts = command_status_counts(session, estate_ids=[place.estate_id], origins={"billing"})
    assert (counts["pending"], counts["failed"]) == (1, 0)
    with pytest.raises(InvalidInput):
        commands_page(session, origins={"ufo"})
    with pytest.raises(InvalidInput):
        commands_page(session, status="lost")
