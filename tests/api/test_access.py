"""S3–S6, S12: who may call what, on whose estate, and what they see of residents.

``ACCESS`` is the role × route table as data. ``test_every_openapi_route_is_in_the_table`` fails when a route is
added to the API without a row here (or a row outlives its route), so no route escapes the matrix below:

- no credentials, a forged or garbage token, a stale cookie → 401 (except public routes);
- every role outside the row → 403;
- every role inside the row → 2xx on the visible estate's objects, 404 on the other estate's objects
  (the same 404 as for objects that do not exist: existence is not leaked).

The roles are spelled out here rather than imported from accounts.const, so a change to the product's role sets
shows up as a failing test and a deliberate edit of this table.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_token
from alarms import policy as alarms_policy
from api.routes.billing_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from billing import notices as billing_notices
from billing import policy as billing_policy
from billing import service as billing_service
from billing.const import NoticeKind
from core import clock
from notifications import policy as notifications_policy
from storage.models import AuditLog, Building, Estate, StaffUser, Ticket, TicketEvent, Unit
from tests.support.access_world import card_for, new_uid, unit_code_of
from tests.support.billing_world import (
    HOLD_REPLACED_AT,
    WEBHOOK_PROVIDER,
    WEBHOOK_SECRET,
    billing_place,
    new_hold,
    statement_for,
)
from tests.support.dunning import MATRIX_CSV, seed_dunning
from tests.support.handover import clear_recent_handovers, new_display_token, new_handover
from tests.support.ops import add_command, new_failed_delivery, new_task
from tests.support.service_rounds import new_service_task
from tests.support.world import PASSWORD, World, bearer
from tickets import policy as ticket_policy
from tickets.policy import Step

Public = Literal["public"]
PUBLIC: Public = "public"
A, E, S, C, B, V = Role.admin, Role.engineer, Role.steward, Role.card_admin, Role.billing_clerk, Role.viewer
SU, M = Role.supervisor, Role.manager
ANY_STAFF = frozenset(Role)
EQUIPMENT = frozenset({A, E, SU, M, V})  # 工程部, its supervisor, the project manager and read-only dashboards
ALARM_READERS = EQUIPMENT | {S}  # stewards see alarms too: residents call about them
ALARM_HANDLERS = frozenset({A, E, SU, M})
RULE_EDITORS = frozenset({A, SU, M})
TICKET_READERS = frozenset({A, E, SU, M, S, V})
TICKET_DESK = frozenset({A, S, SU, M})  # take reports, dispatch, close, reopen, route to warranty
TICKET_WORK = frozenset({A, E, SU})  # accept, on site, resolve (an engineer only on tickets assigned to them)
TICKET_CALLBACK = frozenset({A, S, M})
TICKET_COMMENT = frozenset({A, E, S, SU, M})
TICKET_EXTEND = frozenset({A, M})  # §4: a patrol finding's week, unless a manager extends it
CALLBACK_REPORT = frozenset({A, S, SU, M, V})  # the customer-service desk and those answering for its targets
WARRANTY_EDIT = frozenset({A, M})  # the project manager and head office hold the handover papers
CHARGEBACKS = frozenset({A, M, SU, B})  # the fee side bills the developer; managers follow it up
ROUND_WORK = frozenset({A, E, SU})
# alarms.policy: the customer-service rounds are read by whoever does them (stewards, engineers, the supervisor), the
# project manager and read-only dashboards; a task is recorded by the staff on site (not by the read-only viewer).
SERVICE_ROUND_READERS = frozenset({A, M, SU, E, S, V})
SERVICE_TASK_RECORDERS = frozenset({A, M, SU, E, S})
# billing/policy.py, spelled out (test_the_spelled_out_billing_roles_are_the_policy)
BILL_VIEW = frozenset({A, M, S, B})
BILL_MONEY = frozenset({A, M, B})  # top-ups, refunds, billing runs
BILL_MANAGE = frozenset({A, M})  # adjustments and tariffs
BILL_HOLDS = frozenset({A, M, B, E, SU})
NOTICE_READERS = frozenset({A, M, S, B})  # billing.policy view_notices: stewards hand notices to households
NOTICE_APPROVERS = frozenset({A, M, B})  # billing.policy approve_notices
OPERATORS = frozenset({A, E})  # ingest health, dead letters, metrics, integration tokens
ADMIN = frozenset({A})
DUNNING_READERS = frozenset({A, M, B, S})  # billing.policy view_dunning: stewards deliver the letters
DUNNING_CLERKS = frozenset({A, M, B})  # import_arrears, issue_dunning, complete_dunning_task
COMMAND_READERS = frozenset({A, E, SU, M, B})  # alarms.policy: the clerk sees billing's valve commands only
DELIVERY_READERS = frozenset({A, E, SU, M, B})  # notifications.policy
DELIVERY_RETRIERS = frozenset({A, M})
# access/policy.py: the card desk manages cards; stewards and the project manager read the register (UIDs masked).
CARD_READERS = frozenset({A, C, M, S})
CARD_DESK = frozenset({A, C})
STATEMENT_READERS = frozenset({A, M, S, B})  # billing.policy view_statements
PERIOD_CLOSERS = frozenset({A, M, B})  # billing.policy close_period
READING_RECORDERS = frozenset({A, M, B, E})  # billing.policy record_manual_reading: the clerk and the engineer
READING_VIEWERS = frozenset({A, M, B, E, SU, S})  # billing.policy view_manual_readings
# The controllers' sync state: the card desk, and engineers read-only (an unsynced controller is theirs to fix).
SYNC_READERS = CARD_DESK | {E}
# alarms.policy SUMMARY_READERS: the desk that writes the 18:30 summary, the heads it goes to, read-only dashboards.
SUMMARY_READERS = frozenset({A, S, SU, M, V})


# alarms/policy.py: the shift's engineers, their supervisor and the project manager hand over, sign and read the
# records; the supervisor (who draws up the roster), the manager and admins set the shift times.
HANDOVER = frozenset({A, E, SU, M})
SHIFT_EDITORS = frozenset({A, SU, M})
# accounts/policy.py: the project manager and admins issue and revoke the wall display's tokens.
DISPLAY_ADMINS = frozenset({A, M})

ACCESS: dict[tuple[str, str], frozenset[Role] | Public] = {
    ("GET", "/health"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/logout"): ANY_STAFF,
    ("GET", "/api/auth/me"): ANY_STAFF,
    ("POST", "/api/auth/tokens"): OPERATORS,
    ("GET", "/api/auth/tokens"): OPERATORS,
    # One's own tokens; an admin also those of the accounts it manages (other ones are 404).
    ("POST", "/api/auth/tokens/{token_id}/revoke"): OPERATORS,
    ("POST", "/api/auth/password"): ANY_STAFF,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("POST", "/api/users/{user_id}/deactivate"): ADMIN,
    ("GET", "/api/estates"): ANY_STAFF,
    ("GET", "/api/estates/{code}"): ANY_STAFF,
    ("GET", "/api/estates/{code}/buildings"): ANY_STAFF,
    ("GET", "/api/estates/{code}/units"): ANY_STAFF,
    # Every role reads residents; engineers and viewers get them masked (test_residents_are_masked_by_role).
    ("GET", "/api/estates/{code}/residents"): ANY_STAFF,
    ("GET", "/api/estates/{code}/rooms"): EQUIPMENT,
    ("GET", "/api/estates/{code}/devices"): EQUIPMENT,
    ("GET", "/api/rooms/{room_id}"): EQUIPMENT,
    ("GET", "/api/rooms/{room_id}/live"): EQUIPMENT,
    ("GET", "/api/devices/{device_id}"): EQUIPMENT,
    ("GET", "/api/points/{point_id}"): EQUIPMENT,
    ("GET", "/api/points/{point_id}/samples"): EQUIPMENT,
    ("GET", "/api/points/{point_id}/series"): EQUIPMENT,
    ("GET", "/metrics"): OPERATORS,
    ("GET", "/api/ingest/status"): OPERATORS,
    ("GET", "/api/ingest/replica"): OPERATORS,
    ("GET", "/api/ingest/dead-letters"): OPERATORS,
    ("GET", "/api/ingest/quarantine"): OPERATORS,
    ("GET", "/api/alarms"): ALARM_READERS,
    ("GET", "/api/alarms/{alarm_id}"): ALARM_READERS,
    ("POST", "/api/alarms/{alarm_id}/acknowledge"): ALARM_HANDLERS,
    ("POST", "/api/alarms/{alarm_id}/clear"): ALARM_HANDLERS,
    ("GET", "/api/alarm-rules"): ALARM_READERS,
    ("PATCH", "/api/alarm-rules/{rule_code}"): RULE_EDITORS,
    ("PUT", "/api/alarm-rules/{rule_code}/overrides"): RULE_EDITORS,
    ("GET", "/api/tickets"): TICKET_READERS,
    ("POST", "/api/tickets"): TICKET_DESK,
    ("GET", "/api/tickets/{ticket_id}"): TICKET_READERS,
    ("POST", "/api/tickets/{ticket_id}/dispatch"): TICKET_DESK,
    ("POST", "/api/tickets/{ticket_id}/accept"): TICKET_WORK,
    ("POST", "/api/tickets/{ticket_id}/on-site"): TICKET_WORK,
    ("POST", "/api/tickets/{ticket_id}/resolve"): TICKET_WORK,
    ("POST", "/api/tickets/{ticket_id}/callback"): TICKET_CALLBACK,
    ("POST", "/api/tickets/{ticket_id}/feedback"): TICKET_CALLBACK,
    ("POST", "/api/tickets/{ticket_id}/close"): TICKET_DESK,
    ("POST", "/api/tickets/{ticket_id}/reopen"): TICKET_DESK,
    ("POST", "/api/tickets/{ticket_id}/warranty"): TICKET_DESK,
    ("POST", "/api/tickets/{ticket_id}/comment"): TICKET_COMMENT,
    ("POST", "/api/tickets/{ticket_id}/extend"): TICKET_EXTEND,
    ("GET", "/api/estates/{code}/callback-report"): CALLBACK_REPORT,
    ("GET", "/api/estates/{code}/warranty"): TICKET_READERS,
    ("PUT", "/api/estates/{code}/warranty/handover"): WARRANTY_EDIT,
    ("PUT", "/api/estates/{code}/warranty/terms"): WARRANTY_EDIT,
    ("GET", "/api/estates/{code}/warranty/chargebacks"): CHARGEBACKS,
    ("GET", "/api/estates/{code}/rooms/{room_code}/rounds"): EQUIPMENT,
    ("GET", "/api/rounds/{round_id}"): EQUIPMENT,
    ("POST", "/api/rounds/{round_id}/manual"): ROUND_WORK,
    ("GET", "/api/estates/{code}/service-rounds"): SERVICE_ROUND_READERS,
    ("GET", "/api/estates/{code}/service-tasks"): SERVICE_ROUND_READERS,
    ("GET", "/api/service-tasks/{service_task_id}"): SERVICE_ROUND_READERS,
    ("POST", "/api/service-tasks/{service_task_id}/record"): SERVICE_TASK_RECORDERS,
    ("POST", "/api/estates/{code}/dunning/imports"): DUNNING_CLERKS,
    ("GET", "/api/estates/{code}/dunning/cases"): DUNNING_READERS,
    ("GET", "/api/dunning/cases/{case_id}"): DUNNING_READERS,
    ("GET", "/api/estates/{code}/dunning/documents"): DUNNING_READERS,
    ("GET", "/api/dunning/documents/{document_id}"): DUNNING_READERS,
    ("GET", "/api/estates/{code}/dunning/tasks"): DUNNING_READERS,
    ("POST", "/api/estates/{code}/dunning/advance"): DUNNING_CLERKS,
    ("GET", "/api/estates/{code}/dunning/public-list"): DUNNING_READERS,
    ("POST", "/api/dunning/tasks/{task_id}/done"): DUNNING_CLERKS,
    ("GET", "/api/commands"): COMMAND_READERS,
    ("GET", "/api/notifications"): DELIVERY_READERS,
    ("POST", "/api/notifications/{delivery_id}/retry"): DELIVERY_RETRIERS,
    ("GET", "/api/billing/estates/{code}/accounts"): BILL_VIEW,
    ("GET", "/api/billing/accounts/{account_id}"): BILL_VIEW,
    ("POST", "/api/billing/accounts/{account_id}/top-ups"): BILL_MONEY,
    ("POST", "/api/billing/accounts/{account_id}/refunds"): BILL_MONEY,
    ("POST", "/api/billing/accounts/{account_id}/adjustments"): BILL_MANAGE,
    ("GET", "/api/billing/estates/{code}/tariffs"): BILL_VIEW,
    ("POST", "/api/billing/estates/{code}/tariffs"): BILL_MANAGE,
    ("GET", "/api/billing/estates/{code}/holds"): BILL_HOLDS,
    ("POST", "/api/billing/holds/{hold_id}/confirm"): BILL_HOLDS,
    ("POST", "/api/billing/estates/{code}/runs"): BILL_MONEY,
    # Machine to machine: no login, opened only by the provider's HMAC signature (test_billing_webhook.py).
    ("POST", "/api/billing/webhook/{provider}"): PUBLIC,
    ("GET", "/api/billing/notices"): NOTICE_READERS,
    ("GET", "/api/billing/notices/{notice_id}"): NOTICE_READERS,
    ("POST", "/api/billing/notices/{notice_id}/approve"): NOTICE_APPROVERS,
    ("POST", "/api/billing/notices/{notice_id}/send"): NOTICE_APPROVERS,
    ("POST", "/api/billing/notices/{notice_id}/cancel"): NOTICE_APPROVERS,
    ("GET", "/api/access/estates/{code}/cards"): CARD_READERS,
    ("POST", "/api/access/estates/{code}/cards"): CARD_DESK,
    ("GET", "/api/access/estates/{code}/units/{unit_code}/cards"): CARD_READERS,
    ("POST", "/api/access/estates/{code}/units/{unit_code}/move-out"): CARD_DESK,
    ("GET", "/api/access/cards/{card_id}"): CARD_READERS,
    ("POST", "/api/access/cards/{card_id}/lost"): CARD_DESK,
    ("POST", "/api/access/cards/{card_id}/return"): CARD_DESK,
    # Swipes are whereabouts (PIPL Art. 28): the card desk only, every read audited (test_access_cards.py).
    ("GET", "/api/access/estates/{code}/swipes"): CARD_DESK,
    ("GET", "/api/billing/estates/{code}/periods"): STATEMENT_READERS,
    ("GET", "/api/billing/estates/{code}/statements"): STATEMENT_READERS,
    ("GET", "/api/billing/accounts/{account_id}/statements"): STATEMENT_READERS,
    ("GET", "/api/billing/statements/{statement_id}"): STATEMENT_READERS,
    ("POST", "/api/billing/estates/{code}/periods/{quarter}/statements"): BILL_MONEY,
    ("POST", "/api/billing/estates/{code}/periods/{quarter}/close"): PERIOD_CLOSERS,
    ("GET", "/api/billing/estates/{code}/manual-readings"): READING_VIEWERS,
    ("POST", "/api/billing/estates/{code}/manual-readings"): READING_RECORDERS,
    ("GET", "/api/access/controllers"): SYNC_READERS,
    ("GET", "/api/summary/daily"): SUMMARY_READERS,
    ("GET", "/api/estates/{code}/energy"): EQUIPMENT,  # facility/energy_policy.py: the energy reports
    ("GET", "/api/estates/{code}/shifts"): HANDOVER,
    ("PUT", "/api/estates/{code}/shifts"): SHIFT_EDITORS,
    ("GET", "/api/estates/{code}/handover"): HANDOVER,
    ("POST", "/api/estates/{code}/handover"): HANDOVER,
    ("GET", "/api/estates/{code}/handovers"): HANDOVER,
    ("GET", "/api/handovers/{handover_id}"): HANDOVER,
    # Signed by anyone of the estate's handover roles but the one who handed over (the matrix's records are
    # handed over by hq-engineer), once: each call signs a record of its own.
    ("POST", "/api/handovers/{handover_id}/sign"): HANDOVER,
    ("GET", "/api/estates/{code}/display-tokens"): DISPLAY_ADMINS,
    ("POST", "/api/estates/{code}/display-tokens"): DISPLAY_ADMINS,
    ("POST", "/api/display-tokens/{display_token_id}/revoke"): DISPLAY_ADMINS,
}
WEBHOOK = ("POST", "/api/billing/webhook/{provider}")
MANUAL_READING = ("POST", "/api/billing/estates/{code}/manual-readings")
# Routes that act on every estate at once: the role must be in the row *and* the account head office's
# (all estates); the row's roles scoped to an estate get 403 like roles outside the row.
ALL_ESTATES_ONLY: set[tuple[str, str]] = {
    ("GET", "/metrics"),
    ("GET", "/api/ingest/status"),
    ("GET", "/api/ingest/replica"),
    ("PATCH", "/api/alarm-rules/{rule_code}"),
}
# The head-office account of each role that may hold an all-estates-only route (tests/api/conftest.py).
HEAD_OFFICE = {A: "head-office", E: "hq-engineer", SU: "hq-supervisor", M: "hq-manager"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
ROUTES = sorted(ACCESS)
PROTECTED = [r for r in ROUTES if ACCESS[r] != PUBLIC]
# Routes that name an estate's object (alarm rules are global: their overrides name the estate in the body).
SCOPED = [r for r in ROUTES if "{" in r[1] and "{rule_code}" not in r[1]]
DENIED = [(route, role) for route in PROTECTED for role in Role if role not in ACCESS[route]]
GRANTED = [(route, role) for route in PROTECTED for role in Role if role in ACCESS[route]]
SCOPED_STAFF_REFUSED = [(route, role) for route, role in GRANTED if route in ALL_ESTATES_ONLY]
SCOPED_GRANTED = [(route, role) for route, role in GRANTED if route in SCOPED]
NOBODY_SEES = {
    "code": "no-such-estate",
    "room_id": 2_000_000_000,
    "device_id": 2_000_000_000,
    "point_id": 2_000_000_000,
    "alarm_id": 2_000_000_000,
    "rule_code": "no.such.rule",
    "ticket_id": 2_000_000_000,
    "round_id": 2_000_000_000,
    "service_task_id": 2_000_000_000,
    "room_code": "NOPE",
    "token_id": 2_000_000_000,
    "user_id": 2_000_000_000,
    "case_id": 2_000_000_000,
    "document_id": 2_000_000_000,
    "account_id": 2_000_000_000,
    "hold_id": 2_000_000_000,
    "provider": WEBHOOK_PROVIDER,
    "notice_id": 2_000_000_000,
    "task_id": 2_000_000_000,
    "delivery_id": 2_000_000_000,
    "card_id": 2_000_000_000,
    "unit_code": "NO-SUCH-UNIT",
    "statement_id": 2_000_000_000,
    "quarter": "2026Q3",
    "handover_id": 2_000_000_000,
    "display_token_id": 2_000_000_000,
}
# The status a ticket must have for each action (a fresh one per call: actions move it on).
TICKET_STATE = {
    "dispatch": "received",
    "accept": "dispatched",
    "on-site": "accepted",
    "resolve": "on_site",
    "callback": "resolved",
    "close": "callback_done",
    "reopen": "closed",
}
RULE = "dry_transformer.winding_temp_a.high"
_ENGINEER: list[int] = []


def engineer_id() -> int:
    """The head-office admin's id, a valid assignee in either estate (set by the fixture below)."""
    return _ENGINEER[0] if _ENGINEER else 1


RESIDENTS = {"张三丰": "13812345678", "李四": "13987654321"}
MASKED = {"张**": "138****5678", "李*": "139****4321"}


def route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


def case_id(case: tuple[tuple[str, str], Role]) -> str:
    return f"{route_id(case[0])} as {case[1].value}"


def url(world: World, path: str, *, where: Literal["visible", "other", "missing"] = "visible") -> str:
    if path.endswith("/handover"):
        # The shift due now is handed over once per account: each call finds it free (a fresh record).
        for estate in (world.estate, world.other_estate):
            clear_recent_handovers(world.engine, estate)
    values: dict[str, Any] = {
        "visible": {
            "code": world.estate,
            "room_id": world.room_id,
            "device_id": world.device_id,
            "point_id": world.point_id,
            # Clearing closes the alarm for good: each call gets a fresh one.
            "alarm_id": world.new_alarm() if path.endswith("/clear") else world.alarm_id,
            "rule_code": RULE,
            "ticket_id": _ticket_for(world, path),
            "round_id": world.new_round() if path.endswith("/manual") else world.round_id,
            # Fresh each call: recording a task moves it on.
            "service_task_id": new_service_task(world.engine, world.estate) if "{service_task_id}" in path else 0,
            "room_code": world.room_code,
            # engineer-user's own token, and an account of apia: both within reach of the apia admin too.
            "token_id": world.new_token("engineer-user") if "{token_id}" in path else 0,
            "user_id": world.new_user() if "{user_id}" in path else 0,
            "case_id": dunning_ids(world, world.estate)[0],
            "document_id": dunning_ids(world, world.estate)[1],
            "account_id": billing_place(world.engine, world.estate).account_id if "{account_id}" in path else 0,
            "hold_id": new_hold(world.engine, world.estate) if "{hold_id}" in path else 0,
            "provider": WEBHOOK_PROVIDER,
            "notice_id": _notice_for(world, path) if "{notice_id}" in path else 0,
            # Fresh each call: marking a task done or retrying a delivery moves it on.
            "task_id": new_task(world.engine, world.estate) if "{task_id}" in path else 0,
            "delivery_id": new_failed_delivery(world.engine, world.estate) if "{delivery_id}" in path else 0,
            # Lost and return end a card: each call gets a fresh one (as does the household it belongs to).
            "card_id": card_for(world.engine, world.estate) if "{card_id}" in path else 0,
            "unit_code": unit_code_of(world.engine, card_for(world.engine, world.estate))
            if "{unit_code}" in path
            else "",
            "statement_id": statement_for(world.engine, world.estate) if "{statement_id}" in path else 0,
            "quarter": _quarter_for(path),
            "handover_id": new_handover(world.engine, world.estate) if "{handover_id}" in path else 0,
            "display_token_id": new_display_token(world.engine, world.estate) if "{display_token_id}" in path else 0,
        },
        "other": {
            "code": world.other_estate,
            "room_id": world.other_room_id,
            "device_id": world.other_device_id,
            "point_id": world.other_point_id,
            "alarm_id": world.other_alarm_id,
            "rule_code": "no.such.rule",  # rules are not an estate's: "other" is a missing one
            "ticket_id": _ticket_for(world, path, world.other_estate),
            "round_id": world.other_round_id,
            "service_task_id": new_service_task(world.engine, world.other_estate) if "{service_task_id}" in path else 0,
            "room_code": world.room_code,
            # A head-office account's token and an account of apib: beyond every apia account.
            "token_id": world.new_token("hq-engineer") if "{token_id}" in path else 0,
            "user_id": world.new_user(world.other_estate) if "{user_id}" in path else 0,
            "case_id": dunning_ids(world, world.other_estate)[0],
            "document_id": dunning_ids(world, world.other_estate)[1],
            "account_id": billing_place(world.engine, world.other_estate).account_id if "{account_id}" in path else 0,
            "hold_id": new_hold(world.engine, world.other_estate) if "{hold_id}" in path else 0,
            "provider": WEBHOOK_PROVIDER,
            "notice_id": _notice_for(world, path, world.other_estate) if "{notice_id}" in path else 0,
            "task_id": new_task(world.engine, world.other_estate) if "{task_id}" in path else 0,
            "delivery_id": new_failed_delivery(world.engine, world.other_estate) if "{delivery_id}" in path else 0,
            "card_id": card_for(world.engine, world.other_estate) if "{card_id}" in path else 0,
            "unit_code": (
                unit_code_of(world.engine, card_for(world.engine, world.other_estate)) if "{unit_code}" in path else ""
            ),
            "statement_id": statement_for(world.engine, world.other_estate) if "{statement_id}" in path else 0,
            "quarter": _quarter_for(path),
            "handover_id": new_handover(world.engine, world.other_estate) if "{handover_id}" in path else 0,
            "display_token_id": (
                new_display_token(world.engine, world.other_estate) if "{display_token_id}" in path else 0
            ),
        },
        "missing": NOBODY_SEES,
    }[where]
    return path.format(**values)


_DUNNING: dict[tuple[str, str], tuple[int, int]] = {}
# Each close gets a quarter of its own, in order (quarters close in order), long before the world's data.
_closing = (f"{2001 + n // 4}Q{n % 4 + 1}" for n in itertools.count())


def _quarter_for(path: str) -> str:
    if "{quarter}" not in path:
        return ""
    return next(_closing) if path.endswith("/close") else "2026Q3"


def dunning_ids(world: World, estate: str) -> tuple[int, int]:
    """A dunning case and document of the estate (tests/support/dunning.py), made on first use."""
    # Keyed by database too: test_read_replica builds a world of the same estate codes on its own primary.
    key = (world.engine.url.render_as_string(hide_password=True), estate)
    if key not in _DUNNING:
        _DUNNING[key] = seed_dunning(world.engine, estate)
    return _DUNNING[key]


def _ticket_for(world: World, path: str, estate: str | None = None) -> int:
    action = path.rsplit("/", 1)[1]
    if "{ticket_id}" not in path or action == "{ticket_id}":
        return world.other_ticket_id if estate else world.ticket_id
    if action == "feedback":
        return world.new_ticket("received", estate, complaint=True)
    if action == "extend":
        return world.new_ticket("received", estate, source="patrol")
    return world.new_ticket(TICKET_STATE.get(action, "received"), estate)


def _notice_for(world: World, path: str, estate: str | None = None) -> int:
    """A fresh renewal notice of the estate's first unit: a draft, or approved for the send route."""
    with Session(world.engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == (estate or world.estate))).one()
        unit_id = s.scalars(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate_id)
            .order_by(Unit.id)
            .limit(1)
        ).one_or_none()
        if unit_id is None:  # an estate built without buildings: give it one household
            building = Building(estate_id=estate_id, code="N1", name="通知楼")
            s.add(building)
            s.flush()
            unit = Unit(building_id=building.id, code="N1-1-101", floor=1, area_m2=Decimal("80.00"))
            s.add(unit)
            s.flush()
            unit_id = unit.id
        account = billing_service.open_account(s, unit_id)
        notice = billing_notices.draft_for(s, account.id, NoticeKind.renewal, now=clock.now(), actor="matrix")
        if path.endswith("/send"):
            billing_notices.approve(s, notice.id, actor="matrix")
        return notice.id


def body(route: tuple[str, str]) -> dict[str, Any] | None:
    """A valid body for the route (fresh where the route creates something unique)."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/auth/login"): {"username": "viewer-user", "password": PASSWORD},
        ("POST", "/api/auth/tokens"): {"name": "access-matrix", "ttl_days": 1},
        # The same password again: the matrix's accounts keep theirs.
        ("POST", "/api/auth/password"): {"current_password": PASSWORD, "new_password": PASSWORD},
        ("POST", "/api/users"): {
            "username": f"matrix-{uuid.uuid4().hex[:12]}",
            "password": "a-long-enough-password",
            "role": "viewer",
            "estates": ["apia"],
        },
        ("POST", "/api/alarms/{alarm_id}/clear"): {"reason": "sensor replaced / 传感器已更换"},
        ("PATCH", "/api/alarm-rules/{rule_code}"): {"enabled": True},
        ("PUT", "/api/alarm-rules/{rule_code}/overrides"): {"estate": "apia", "params": {"warning": 131.0}},
        ("POST", "/api/tickets"): {
            "estate": "apia",
            "category": "water",
            "title": "卫生间漏水 / bathroom leak",
            "unit": "1-1-101",
            "reporter_name": "张三丰",
            "reporter_phone": "13812345678",
        },
        # To the head-office admin, who works in every estate (engineer-user only in apia).
        ("POST", "/api/tickets/{ticket_id}/dispatch"): {"assignee_id": engineer_id()},
        ("POST", "/api/tickets/{ticket_id}/resolve"): {"work_done": "换阀芯 / replaced the cartridge"},
        ("POST", "/api/tickets/{ticket_id}/callback"): {"channel": "phone", "satisfaction": 5},
        ("POST", "/api/tickets/{ticket_id}/feedback"): {"text": "已联系业主 / called the owner"},
        ("POST", "/api/tickets/{ticket_id}/close"): {"reason": "已完成 / done"},
        ("POST", "/api/tickets/{ticket_id}/reopen"): {"reason": "又漏了 / leaking again"},
        ("POST", "/api/tickets/{ticket_id}/warranty"): {"party": "开发商客服", "due_at": "2026-12-31T18:00:00+08:00"},
        ("POST", "/api/tickets/{ticket_id}/comment"): {"text": "配件已订 / part ordered"},
        ("POST", "/api/tickets/{ticket_id}/extend"): {
            "due_at": "2031-12-31T18:00:00+08:00",
            "reason": "待配件 / parts",
        },
        # Long ago: the matrix's tickets stay outside the warranty (no routing to the developer).
        ("PUT", "/api/estates/{code}/warranty/handover"): {"handover_on": "2001-06-01", "developer": "矩阵置业"},
        ("PUT", "/api/estates/{code}/warranty/terms"): {"item": "mep", "years": 2},
        ("POST", "/api/rounds/{round_id}/manual"): {"readings": {"room_temp_c": 29.5}, "notes": "正常 / normal"},
        ("POST", "/api/service-tasks/{service_task_id}/record"): {"notes": "楼道整洁 / stairwells clean"},
        # The seeded arrears again: idempotent, so every granted role may post it and the case stays open.
        ("POST", "/api/estates/{code}/dunning/imports"): {"csv": MATRIX_CSV, "filename": "matrix.csv"},
        ("POST", "/api/billing/accounts/{account_id}/top-ups"): {"amount_fen": 10000, "method": "counter"},
        ("POST", "/api/billing/accounts/{account_id}/refunds"): {"amount_fen": 100, "reason": "多缴退回 / overpaid"},
        ("POST", "/api/billing/accounts/{account_id}/adjustments"): {"amount_fen": 100, "reason": "抄表差错 / misread"},
        ("POST", "/api/billing/estates/{code}/tariffs"): {
            "effective_from": (date(2031, 1, 1) + timedelta(days=next(_tariff_days))).isoformat(),
            "tiers": [{"up_to_m3": "10", "price_fen_per_m3": 2500}, {"price_fen_per_m3": 3000}],
        },
        ("POST", "/api/billing/holds/{hold_id}/confirm"): {
            "old_final_register": "120.5",
            "new_initial_register": "1.0",
            "replaced_at": HOLD_REPLACED_AT,
        },
        ("POST", "/api/billing/estates/{code}/runs"): {},
        WEBHOOK: {"transaction_id": uuid.uuid4().hex, "account_id": _webhook_account(), "amount_fen": 500},
        ("POST", "/api/billing/notices/{notice_id}/cancel"): {"reason": "已缴费 / paid meanwhile"},
        ("POST", "/api/dunning/tasks/{task_id}/done"): {"note": "律师函已由某律所发出 / letter sent by the firm"},
        # A staff card needs no unit; the estate's gate is there (_engineer_id below makes sure).
        ("POST", "/api/access/estates/{code}/cards"): {
            "card_type": "staff",
            "staff_role": "steward",
            "uid": new_uid(),
            "holder_name": "矩阵员工 / matrix staff",
        },
        ("POST", "/api/access/cards/{card_id}/lost"): {"replacement_uid": new_uid()},
        ("POST", "/api/access/cards/{card_id}/return"): {},
        # The same meter and instant every time: the first call records it, the others return it.
        ("PUT", "/api/estates/{code}/shifts"): {
            "shifts": [
                {"code": "day", "name_zh": "白班", "name_en": "Day shift", "starts": "08:00", "ends": "20:00"},
                {"code": "night", "name_zh": "夜班", "name_en": "Night shift", "starts": "20:00", "ends": "08:00"},
            ]
        },
        ("POST", "/api/estates/{code}/handover"): {"notes": "设备运行正常 / all normal"},
        ("POST", "/api/handovers/{handover_id}/sign"): {"note": "已接班 / taken over"},
        ("POST", "/api/estates/{code}/display-tokens"): {"name": "监控中心大屏 / control room", "ttl_days": 1},
        ("POST", "/api/billing/estates/{code}/manual-readings"): {
            "device": "APIA-HWB",
            "read_at": "2026-11-27T10:00:00+08:00",
            "value": "1.5",
            "note": "季末抄表 / quarterly reading",
        },
    }
    return bodies.get(route)


_tariff_days = iter(range(100_000))
_WEBHOOK_ACCOUNT: list[int] = []
_CARDS_READY: list[int] = []


def _webhook_account() -> int:
    return _WEBHOOK_ACCOUNT[0] if _WEBHOOK_ACCOUNT else 1


def send(client: TestClient, method: str, path: str, headers: dict[str, str], payload: dict[str, Any] | None) -> Any:
    """One request as the matrix makes it: a fresh Idempotency-Key always (routes that need none ignore it), and
    the webhook signed the way a provider signs it (the only thing that opens it)."""
    headers = {"Idempotency-Key": uuid.uuid4().hex, **headers}
    if path.startswith("/api/billing/webhook/") and payload is not None:
        raw = json.dumps(payload).encode()
        stamp = int(clock.now().timestamp())
        headers |= {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(WEBHOOK_SECRET, stamp, raw),
        }
        return client.request(method, path, headers=headers, content=raw)
    return client.request(method, path, headers=headers, json=payload)


def call(
    client: TestClient,
    world: World,
    route: tuple[str, str],
    headers: dict[str, str] | None = None,
    *,
    where: Literal["visible", "other", "missing"] = "visible",
) -> Any:
    method, path = route
    payload = body(route)
    if route == MANUAL_READING and payload is not None and where == "other":
        payload = {**payload, "device": f"{world.other_estate.upper()}-HWB"}  # the body names the estate's meter
    return send(client, method, url(world, path, where=where), headers or {}, payload)


@pytest.fixture(autouse=True)
def _engineer_id(api_world: World) -> None:
    if not _WEBHOOK_ACCOUNT:
        _WEBHOOK_ACCOUNT.append(billing_place(api_world.engine, api_world.estate).account_id)
    if not _CARDS_READY:  # a unit and a gate in both estates, for the staff cards the matrix issues
        _CARDS_READY.extend(card_for(api_world.engine, e) for e in (api_world.estate, api_world.other_estate))
    if not _ENGINEER:
        with Session(api_world.engine) as s:
            _ENGINEER.append(s.scalars(select(StaffUser.id).where(StaffUser.username == "head-office")).one())


@pytest.fixture
def anonymous(client: TestClient) -> TestClient:
    client.cookies.clear()
    return client


# --- the table covers the API -----------------------------------------------------------------------------------


def test_every_openapi_route_is_in_the_table(app: FastAPI) -> None:
    """Adding a route without deciding who may call it fails here; so does a row for a route that is gone."""
    served = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert served - set(ACCESS) == set(), "routes missing from ACCESS"
    assert set(ACCESS) - served == set(), "stale rows in ACCESS"


def test_openapi_declares_how_to_authenticate(app: FastAPI) -> None:
    doc = app.openapi()
    assert {"HTTPBearer", "APIKeyCookie"} <= set(doc["components"]["securitySchemes"])
    for method, path in ROUTES:
        op = doc["paths"][path][method.lower()]
        if ACCESS[(method, path)] == PUBLIC:
            assert not op.get("security"), f"{method} {path} is public but declares security"
        else:
            assert op.get("security"), f"{method} {path} needs a login but the schema does not say so"
            assert "401" in op["responses"], f"{method} {path} does not document 401"


# --- S3: unauthenticated and forged credentials ---------------------------------------------------------------


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_no_credentials_is_401(anonymous: TestClient, api_world: World, route: tuple[str, str]) -> None:
    r = call(anonymous, api_world, route)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"


FORGED = {
    "unknown token": "Bearer stw_" + "A" * 43,
    "token of another shape": "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.",
    "sql in token": "Bearer ' OR '1'='1' --",
    "token with spaces": "Bearer a b c",
    "empty bearer": "Bearer ",
    "basic auth": "Basic YWRtaW4tdXNlcjpjb3JyZWN0LWhvcnNlLWJhdHRlcnk=",
}


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
@pytest.mark.parametrize("authorization", FORGED.values(), ids=FORGED.keys())
def test_forged_credentials_are_401(
    anonymous: TestClient, api_world: World, route: tuple[str, str], authorization: str
) -> None:
    r = call(anonymous, api_world, route, {"Authorization": authorization})
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_forged_session_cookie_is_401(anonymous: TestClient, api_world: World, route: tuple[str, str]) -> None:
    r = call(anonymous, api_world, route, {"Cookie": "steward_session=forged-" + "x" * 40})
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    "path", ["/api/rooms/abc", "/api/estates/NOT%20A%20CODE/rooms", "/api/points/1/series?bucket=2w"]
)
def test_credentials_are_checked_before_input(anonymous: TestClient, api_world: World, path: str) -> None:
    """Without a login, a malformed request is 401 like any other: validation errors are for callers who may call."""
    assert anonymous.get(path).status_code == 401
    assert anonymous.get(path, headers=bearer(api_world, Role.steward)).status_code == 403


def test_a_bad_bearer_is_not_rescued_by_a_good_cookie(anonymous: TestClient, api_world: World) -> None:
    assert anonymous.post("/api/auth/login", json={"username": "admin-user", "password": PASSWORD}).status_code == 200
    assert anonymous.get("/api/auth/me").status_code == 200
    assert anonymous.get("/api/auth/me", headers={"Authorization": "Bearer stw_forged"}).status_code == 401


# --- S5: roles --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "role"), DENIED, ids=[case_id(c) for c in DENIED])
def test_role_outside_the_row_is_403(client: TestClient, api_world: World, route: tuple[str, str], role: Role) -> None:
    r = call(client, api_world, route, bearer(api_world, role))
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(("route", "role"), GRANTED, ids=[case_id(c) for c in GRANTED])
def test_role_inside_the_row_succeeds(client: TestClient, api_world: World, route: tuple[str, str], role: Role) -> None:
    who = HEAD_OFFICE[role] if route in ALL_ESTATES_ONLY else role
    r = call(client, api_world, route, bearer(api_world, who))
    assert 200 <= r.status_code < 300, r.text


@pytest.mark.parametrize(("route", "role"), SCOPED_STAFF_REFUSED, ids=[case_id(c) for c in SCOPED_STAFF_REFUSED])
def test_scoped_staff_cannot_act_on_every_estate(
    client: TestClient, api_world: World, route: tuple[str, str], role: Role
) -> None:
    """Issue 9 #3, #4: ingest counters and global rule changes span every estate; the row's roles scoped to one
    estate (apia) are refused."""
    r = call(client, api_world, route, bearer(api_world, role))
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("route", [r for r in ROUTES if ACCESS[r] == PUBLIC], ids=route_id)
def test_public_routes_need_no_login(anonymous: TestClient, api_world: World, route: tuple[str, str]) -> None:
    r = call(anonymous, api_world, route)
    assert 200 <= r.status_code < 300, r.text


# --- S4: another estate's objects -------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "role"), SCOPED_GRANTED, ids=[case_id(c) for c in SCOPED_GRANTED])
def test_other_estates_objects_are_404_like_missing_ones(
    client: TestClient, api_world: World, route: tuple[str, str], role: Role
) -> None:
    other = call(client, api_world, route, bearer(api_world, role), where="other")
    missing = call(client, api_world, route, bearer(api_world, role), where="missing")
    assert other.status_code == 404, other.text
    assert (missing.status_code, missing.json()) == (other.status_code, other.json())


@pytest.fixture(scope="module")
def head_office(api_world: World) -> dict[str, str]:
    with Session(api_world.engine) as s, s.begin():
        user = s.scalars(select(StaffUser).where(StaffUser.username == "head-office")).one()
        token = create_token(s, user, "access-tests")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("route", SCOPED, ids=route_id)
def test_an_all_estates_admin_sees_the_other_estate(
    client: TestClient, api_world: World, head_office: dict[str, str], route: tuple[str, str]
) -> None:
    """The 404s above are about scope, not about the other estate's objects being broken."""
    r = call(client, api_world, route, head_office, where="other")
    assert 200 <= r.status_code < 300, r.text


def test_lists_hold_only_visible_estates(client: TestClient, api_world: World, head_office: dict[str, str]) -> None:
    with Session(api_world.engine) as s:
        visible_id = s.scalars(select(Estate.id).where(Estate.code == api_world.estate)).one()
    h = bearer(api_world, Role.engineer)
    assert [e["code"] for e in client.get("/api/estates", headers=h).json()["items"]] == [api_world.estate]
    devices = client.get(f"/api/estates/{api_world.estate}/devices?limit=500", headers=h).json()["items"]
    assert devices
    assert {d["estate_id"] for d in devices} == {visible_id}
    # Naming the other estate's room in a filter of one's own estate finds nothing.
    r = client.get(f"/api/estates/{api_world.estate}/devices?room_id={api_world.other_room_id}", headers=h)
    assert r.json()["items"] == []
    codes = [e["code"] for e in client.get("/api/estates", headers=head_office).json()["items"]]
    assert codes == sorted([api_world.estate, api_world.other_estate])


# --- scope rows: a scoped admin, a scoped supervisor, a no-estate engineer (issue 9 #1, #3, #4) -------------------


def new_account(**kw: Any) -> dict[str, Any]:
    return {"username": f"scope-{uuid.uuid4().hex[:12]}", "password": "a-long-enough-password", "role": "viewer", **kw}


# (why, caller, method, path, body, expected status). Callers: the apia accounts "<role>-user", the no-estate and
# head-office accounts of tests/api/conftest.py SCOPE_ACCOUNTS, and "head-office" (admin of every estate).
SCOPE_ROWS: list[tuple[str, str, str, str, dict[str, Any] | None, int]] = [
    # users: nobody grants more than they hold
    ("scoped admin grants all estates", "admin-user", "POST", "/api/users", {"all_estates": True}, 403),
    (
        "scoped admin grants all estates + own",
        "admin-user",
        "POST",
        "/api/users",
        {"all_estates": True, "estates": ["apia"]},
        403,
    ),
    ("no-estate admin grants all estates", "noestate-admin", "POST", "/api/users", {"all_estates": True}, 403),
    ("no-estate admin grants an estate", "noestate-admin", "POST", "/api/users", {"estates": ["apia"]}, 403),
    ("scoped admin grants another estate", "admin-user", "POST", "/api/users", {"estates": ["apia", "apib"]}, 403),
    ("scoped admin names an unknown estate", "admin-user", "POST", "/api/users", {"estates": ["nowhere"]}, 403),
    ("scoped admin grants no estate", "admin-user", "POST", "/api/users", {"estates": []}, 422),
    (
        "scoped admin grants its estate",
        "admin-user",
        "POST",
        "/api/users",
        {"estates": ["apia"], "role": "supervisor"},
        201,
    ),
    (
        "scoped admin makes a peer admin",
        "admin-user",
        "POST",
        "/api/users",
        {"estates": ["apia"], "role": "admin"},
        201,
    ),
    ("head office grants all estates", "head-office", "POST", "/api/users", {"all_estates": True}, 201),
    ("head office grants any estate", "head-office", "POST", "/api/users", {"estates": ["apib"]}, 201),
    ("head office names an unknown estate", "head-office", "POST", "/api/users", {"estates": ["nowhere"]}, 422),
    ("scoped admin lists users", "admin-user", "GET", "/api/users", None, 200),
    ("no-estate engineer lists users", "noestate-engineer", "GET", "/api/users", None, 403),
    # rules: a change everywhere needs head office; overrides only in one's own estates
    (
        "scoped supervisor changes a rule everywhere",
        "supervisor-user",
        "PATCH",
        f"/api/alarm-rules/{RULE}",
        {"enabled": True},
        403,
    ),
    (
        "scoped admin changes a rule everywhere",
        "admin-user",
        "PATCH",
        f"/api/alarm-rules/{RULE}",
        {"enabled": True},
        403,
    ),
    (
        "no-estate admin changes a rule everywhere",
        "noestate-admin",
        "PATCH",
        f"/api/alarm-rules/{RULE}",
        {"enabled": True},
        403,
    ),
    (
        "head-office supervisor changes a rule everywhere",
        "hq-supervisor",
        "PATCH",
        f"/api/alarm-rules/{RULE}",
        {"enabled": True},
        200,
    ),
    (
        "scoped supervisor overrides its estate",
        "supervisor-user",
        "PUT",
        f"/api/alarm-rules/{RULE}/overrides",
        {"estate": "apia", "params": {"warning": 131.0}},
        200,
    ),
    (
        "scoped supervisor overrides its room",
        "supervisor-user",
        "PUT",
        f"/api/alarm-rules/{RULE}/overrides",
        {"estate": "apia", "room": "PR1", "params": {"warning": 132.0}},
        200,
    ),
    (
        "scoped supervisor overrides another estate",
        "supervisor-user",
        "PUT",
        f"/api/alarm-rules/{RULE}/overrides",
        {"estate": "apib", "params": {"warning": 131.0}},
        404,
    ),
    (
        "scoped supervisor overrides another estate's device",
        "supervisor-user",
        "PUT",
        f"/api/alarm-rules/{RULE}/overrides",
        {"estate": "apib", "device": "APIB-S0000", "enabled": False},
        404,
    ),
    (
        "no-estate admin overrides an estate",
        "noestate-admin",
        "PUT",
        f"/api/alarm-rules/{RULE}/overrides",
        {"estate": "apia", "enabled": False},
        404,
    ),
    ("scoped supervisor lists rules", "supervisor-user", "GET", "/api/alarm-rules", None, 200),
    # operations: dead letters and quarantine of one's estates; ingest status and metrics for head office
    ("no-estate engineer reads ingest status", "noestate-engineer", "GET", "/api/ingest/status", None, 403),
    ("no-estate engineer reads metrics", "noestate-engineer", "GET", "/metrics", None, 403),
    ("scoped admin reads ingest status", "admin-user", "GET", "/api/ingest/status", None, 403),
    ("scoped engineer reads metrics", "engineer-user", "GET", "/metrics", None, 403),
    ("head-office engineer reads ingest status", "hq-engineer", "GET", "/api/ingest/status", None, 200),
    ("head-office engineer reads metrics", "hq-engineer", "GET", "/metrics", None, 200),
    ("no-estate engineer reads dead letters", "noestate-engineer", "GET", "/api/ingest/dead-letters", None, 200),
    ("no-estate engineer reads the quarantine", "noestate-engineer", "GET", "/api/ingest/quarantine", None, 200),
]


@pytest.mark.parametrize(
    ("caller", "method", "path", "payload", "status"), [r[1:] for r in SCOPE_ROWS], ids=[r[0] for r in SCOPE_ROWS]
)
def test_scope_rows(
    client: TestClient,
    api_world: World,
    caller: str,
    method: str,
    path: str,
    payload: dict[str, Any] | None,
    status: int,
) -> None:
    if path == "/api/users" and method == "POST":
        payload = new_account(**(payload or {}))
    r = client.request(method, path, headers=bearer(api_world, caller), json=payload)
    assert r.status_code == status, r.text
    if path == "/api/users" and method == "POST":
        login = client.post("/api/auth/login", json={"username": payload["username"], "password": payload["password"]})  # type: ignore[index]
        assert login.status_code == (200 if status == 201 else 401), "a refused account must not exist"


def test_a_scoped_admin_lists_only_the_accounts_of_its_estates(client: TestClient, api_world: World) -> None:
    names = {u["username"] for u in client.get("/api/users?limit=500", headers=bearer(api_world, A)).json()["items"]}
    assert {"admin-user", "engineer-user", "viewer-user"} <= names
    assert not names & {"head-office", "hq-engineer", "noestate-engineer", "noestate-admin"}
    everyone = client.get("/api/users?limit=500", headers=bearer(api_world, "head-office")).json()
    assert {"head-office", "hq-engineer", "noestate-engineer"} <= {u["username"] for u in everyone["items"]}
    assert everyone["total"] > client.get("/api/users", headers=bearer(api_world, A)).json()["total"]
    # A no-estate admin shares no estate with anybody.
    assert client.get("/api/users", headers=bearer(api_world, "noestate-admin")).json()["items"] == []


def test_scoped_staff_see_only_their_estates_overrides(client: TestClient, api_world: World) -> None:
    for estate in ("apia", "apib"):
        r = client.put(
            f"/api/alarm-rules/{RULE}/overrides",
            headers=bearer(api_world, "head-office"),
            json={"estate": estate, "params": {"warning": 133.0}},
        )
        assert r.status_code == 200, r.text
    with Session(api_world.engine) as s:
        ids = {code: id_ for code, id_ in s.execute(select(Estate.code, Estate.id))}  # noqa: C416 (rows, not pairs)

    def estate_overrides(who: str | Role) -> set[int]:
        rules = client.get("/api/alarm-rules", headers=bearer(api_world, who)).json()
        [rule] = [r for r in rules if r["code"] == RULE]
        return {o["scope_id"] for o in rule["overrides"] if o["scope"] == "estate"}

    assert estate_overrides("head-office") >= {ids["apia"], ids["apib"]}
    assert estate_overrides(SU) == {ids["apia"]}
    assert estate_overrides("noestate-engineer") == set()


@pytest.fixture(scope="module")
def rejected_messages(api_world: World) -> None:
    from storage.models import DeadLetter, QuarantinedMessage

    with Session(api_world.engine) as s, s.begin():
        for estate in ("apia", "apib"):
            s.add(
                DeadLetter(topic=f"steward/{estate}/up/X1/telemetry", payload=b"{oops " + estate.encode(), error="bad")
            )
            s.add(
                QuarantinedMessage(
                    topic=f"steward/{estate}/up/NOPE/telemetry",
                    device_code="NOPE",
                    payload=b"{}",
                    reason="unknown_device",
                )
            )


@pytest.mark.usefixtures("rejected_messages")
@pytest.mark.parametrize("path", ["/api/ingest/dead-letters", "/api/ingest/quarantine"])
def test_operations_lists_hold_only_visible_estates(client: TestClient, api_world: World, path: str) -> None:
    def topics(who: str | Role) -> set[str]:
        r = client.get(f"{path}?limit=500", headers=bearer(api_world, who))
        assert r.status_code == 200, r.text
        return {item["topic"].split("/")[1] for item in r.json()["items"]}

    assert topics("noestate-engineer") == set()
    assert topics(E) == {"apia"}
    assert topics("hq-engineer") == {"apia", "apib"}


@pytest.fixture(scope="module")
def ops_rows(api_world: World) -> None:
    """A billing and an alarm command, and a failed delivery, in each estate (committed: the world is shared)."""
    with Session(api_world.engine) as s, s.begin():
        for device_id in (api_world.device_id, api_world.other_device_id):
            add_command(s, device_id, reason="billing_restriction")
            add_command(s, device_id, reason="vacant_flow", ticket="GD-OPS-1")
    new_failed_delivery(api_world.engine, api_world.estate)
    new_failed_delivery(api_world.engine, api_world.other_estate)


@pytest.mark.usefixtures("ops_rows")
@pytest.mark.parametrize("path", ["/api/commands", "/api/notifications"])
def test_command_and_delivery_lists_hold_only_visible_estates(client: TestClient, api_world: World, path: str) -> None:
    def estates(who: str | Role) -> set[str | None]:
        r = client.get(f"{path}?limit=500", headers=bearer(api_world, who))
        assert r.status_code == 200, r.text
        return {item["estate"] for item in r.json()["items"]}

    assert estates("noestate-engineer") == set()
    assert estates(E) == {"apia"}
    assert {"apia", "apib"} <= estates("hq-engineer")
    r = client.get(f"{path}?estate=apib", headers=bearer(api_world, E))
    assert r.status_code == 404, r.text  # another estate named in the filter: as if it did not exist


@pytest.mark.usefixtures("ops_rows")
def test_the_billing_clerk_sees_billing_commands_only(client: TestClient, api_world: World) -> None:
    clerk = client.get("/api/commands?limit=500", headers=bearer(api_world, B)).json()["items"]
    assert clerk
    assert {c["origin"] for c in clerk} == {"billing"}
    assert client.get("/api/commands?origin=alarm", headers=bearer(api_world, B)).json()["items"] == []
    engineer = client.get("/api/commands?limit=500", headers=bearer(api_world, E)).json()["items"]
    assert {"billing", "alarm"} <= {c["origin"] for c in engineer}


@pytest.mark.usefixtures("ops_rows")
def test_delivery_recipients_are_masked_for_roles_that_do_not_manage_staff(
    client: TestClient, api_world: World
) -> None:
    def recipients(role: Role) -> set[str]:
        items = client.get("/api/notifications?channel=email&limit=500", headers=bearer(api_world, role)).json()
        return {d["recipient"] for d in items["items"]}

    assert all(r.startswith("w***@") for r in recipients(E))
    assert all(r.startswith("w***@") for r in recipients(B))
    assert any(r.startswith("wang.") for r in recipients(M))


# --- S6 / S7: inputs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", [r for r in ROUTES if body(r) is not None], ids=route_id)
def test_bodies_reject_unknown_fields(client: TestClient, api_world: World, route: tuple[str, str]) -> None:
    extra = {**(body(route) or {}), "role": "admin", "balance": 1_000_000, "all_estates": True, "is_admin": True}
    if route == ("POST", "/api/users"):
        extra.pop("role")
        extra.pop("all_estates")  # both are legitimate fields of a new account
    method, path = route
    r = send(client, method, path, bearer(api_world, Role.admin), extra)
    assert r.status_code == 422, r.text
    assert any(e["type"] == "extra_forbidden" for e in r.json()["detail"])


def test_every_request_body_forbids_unknown_fields(app: FastAPI) -> None:
    """Also for bodies added later: the schema of every request body says additionalProperties: false."""
    doc = app.openapi()
    bodies = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" not in op:
                continue
            for media in op["requestBody"]["content"].values():
                ref = media["schema"]["$ref"].rsplit("/", 1)[1]
                assert doc["components"]["schemas"][ref].get("additionalProperties") is False, f"{method} {path}"
                bodies += 1
    assert bodies == len([r for r in ROUTES if body(r) is not None])


INJECTIONS = ["apia' OR '1'='1", "apia;DROP TABLE estates;--", "ap%00ia", "小区", "a" * 300, "APIA", ".."]


@pytest.mark.parametrize("code", INJECTIONS)
def test_odd_estate_codes_are_4xx(client: TestClient, api_world: World, code: str) -> None:
    r = client.get(f"/api/estates/{code}/residents", headers=bearer(api_world, Role.admin))
    assert 400 <= r.status_code < 500, r.text


@pytest.mark.parametrize(
    "query",
    [
        "kind=transformer' OR 1=1 --",
        "kind=%00",
        "room_id=1 OR 1=1",
        "room_id=99999999999999999999",
        "limit=0",
        "limit=100000",
        "offset=-1",
        "offset=99999999999",
    ],
)
def test_odd_query_parameters_are_4xx(client: TestClient, api_world: World, query: str) -> None:
    r = client.get(f"/api/estates/{api_world.estate}/devices?{query}", headers=bearer(api_world, Role.admin))
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("path", ["/api/rooms/0", "/api/rooms/-1", "/api/devices/9999999999999", "/api/points/abc"])
def test_odd_ids_are_4xx(client: TestClient, api_world: World, path: str) -> None:
    r = client.get(path, headers=bearer(api_world, Role.admin))
    assert r.status_code == 422, r.text


# --- personal data ----------------------------------------------------------------------------------------------


def residents(client: TestClient, world: World, role: Role) -> list[dict[str, Any]]:
    r = client.get(f"/api/estates/{world.estate}/residents", headers=bearer(world, role))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_residents_are_masked_by_role(client: TestClient, api_world: World, role: Role) -> None:
    needs_personal_data = role in {A, S, M, C, B}  # notices, cards, callbacks, billing; the project manager
    shown = {r["name"]: r["phone"] for r in residents(client, api_world, role)}
    assert shown == (RESIDENTS if needs_personal_data else MASKED)
    masked = {r["masked"] for r in residents(client, api_world, role)}
    assert masked == {not needs_personal_data}


def last_audit(world: World, actor: str) -> AuditLog | None:
    with Session(world.engine) as s:
        return s.scalars(
            select(AuditLog)
            .where(AuditLog.actor == actor, AuditLog.action == "residents.read")
            .order_by(AuditLog.id.desc())
        ).first()


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_every_residents_read_is_audited(client: TestClient, api_world: World, role: Role) -> None:
    actor = f"{role.value}-user"
    before = last_audit(api_world, actor)
    shown = residents(client, api_world, role)
    row = last_audit(api_world, actor)
    assert row is not None
    assert before is None or row.id > before.id
    assert row.object == f"estate:{api_world.estate}"
    assert row.detail["masked"] is (role in {E, SU, V})
    assert sorted(row.detail["resident_ids"]) == sorted(r["id"] for r in shown)
    # The audit log says who read whom, never what they read.
    text = str(row.detail)
    assert not any(secret in text for pair in RESIDENTS.items() for secret in pair)


def test_a_refused_residents_read_shows_nothing(client: TestClient, api_world: World) -> None:
    r = client.get(f"/api/estates/{api_world.other_estate}/residents", headers=bearer(api_world, Role.steward))
    assert r.status_code == 404
    assert not any(secret in r.text for pair in RESIDENTS.items() for secret in pair)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record from every logger, DEBUG included (stricter than the processes' INFO)."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def test_personal_data_and_passwords_stay_out_of_logs(
    client: TestClient, api_world: World, all_logs: pytest.LogCaptureFixture
) -> None:
    """S12: a full residents read, logins (good, bad, unknown user) and an account creation log none of it."""
    residents(client, api_world, Role.steward)
    residents(client, api_world, Role.engineer)
    client.post("/api/auth/login", json={"username": "steward-user", "password": PASSWORD})
    client.post("/api/auth/login", json={"username": "steward-user", "password": PASSWORD + "-wrong"})
    client.post("/api/auth/login", json={"username": "nobody-here", "password": PASSWORD})
    new_password = "another-long-secret-" + uuid.uuid4().hex[:6]
    r = client.post(
        "/api/users",
        headers=bearer(api_world, Role.admin),
        json={
            "username": f"logs-{uuid.uuid4().hex[:8]}",
            "password": new_password,
            "role": "viewer",
            "estates": ["apia"],
        },
    )
    assert r.status_code == 201
    secrets = [*RESIDENTS, *RESIDENTS.values(), PASSWORD, new_password]
    logged = "\n".join(f"{rec.getMessage()} {rec.args!r}" for rec in all_logs.records)
    leaked = [s for s in secrets if s in logged]
    assert leaked == []


# --- the pages and the API ask one ticket policy ---------------------------------------------------------------
#
# For every role (and an engineer the ticket is not assigned to) and every status a ticket can be in, the step
# forms the ticket page offers and the steps the JSON API takes both follow tickets.policy: a step the API
# refuses is never offered on the page, and posting the page's form for it is refused too (the 403 page, or a
# flash error after a rollback), leaving the ticket as it was.

STEP_PATHS = {step: step.value.replace("_", "-") for step in Step}
PAGE_FORMS = {
    Step.dispatch: lambda: {"assignee_id": str(engineer_id()), "note": ""},
    Step.accept: dict,
    Step.on_site: dict,
    Step.resolve: lambda: {"work_done": "换阀芯 / replaced the cartridge", "labour_minutes": "30", "signoff": "yes"},
    Step.callback: lambda: {"channel": "phone", "satisfaction": "5", "note": ""},
    Step.close: lambda: {"reason": "已完成 / done"},
    Step.reopen: lambda: {"reason": "又漏了 / leaking again"},
}
STATUSES = ("received", "dispatched", "accepted", "on_site", "resolved", "callback_done", "closed")
# One account per role, all of apia (engineer-user is the assignee of make_ticket's tickets), and an
# engineer of every estate the tickets are not assigned to (engineers work only on their own tickets).
STEP_ACTORS = [f"{role.value}-user" for role in Role] + ["hq-engineer"]


def test_the_spelled_out_billing_roles_are_the_policy() -> None:
    """The matrix's billing rows and billing/policy.py (which the pages ask too) agree."""
    Act = billing_policy.Action
    expected = {
        Act.view_accounts: BILL_VIEW,
        Act.top_up: BILL_MONEY,
        Act.refund: BILL_MONEY,
        Act.run_billing: BILL_MONEY,
        Act.adjust: BILL_MANAGE,
        Act.manage_tariffs: BILL_MANAGE,
        Act.confirm_hold: BILL_HOLDS,
        Act.view_dunning: DUNNING_READERS,
        Act.import_arrears: DUNNING_CLERKS,
        Act.issue_dunning: DUNNING_CLERKS,
        Act.complete_dunning_task: DUNNING_CLERKS,
        Act.view_notices: NOTICE_READERS,
        Act.approve_notices: NOTICE_APPROVERS,
        Act.view_statements: STATEMENT_READERS,
        Act.close_period: PERIOD_CLOSERS,
        Act.record_manual_reading: READING_RECORDERS,
        Act.view_manual_readings: READING_VIEWERS,
    }
    assert {a: {Role(r) for r in roles} for a, roles in billing_policy.ALLOWED.items()} == expected


def test_the_spelled_out_service_round_roles_are_the_policy() -> None:
    assert {r for r in Role if alarms_policy.may_read_service_rounds(r)} == SERVICE_ROUND_READERS
    assert {r for r in Role if alarms_policy.may_record_service_task(r)} == SERVICE_TASK_RECORDERS
    assert alarms_policy.SERVICE_ROUND_READERS == SERVICE_ROUND_READERS


def test_the_spelled_out_operations_roles_are_the_policy() -> None:
    """The matrix's command and delivery rows and the policies the pages ask (alarms, notifications) agree."""
    assert {r for r in Role if alarms_policy.may_read_commands(r)} == COMMAND_READERS
    assert {r for r in Role if notifications_policy.may_read(r)} == DELIVERY_READERS
    assert {r for r in Role if notifications_policy.may_retry(r)} == DELIVERY_RETRIERS
    assert {r for r in Role if alarms_policy.may_read_daily_summary(r)} == SUMMARY_READERS


def test_the_spelled_out_ticket_roles_are_the_policy() -> None:
    """The matrix's own role sets (spelled out above) and the policy the API and pages ask agree."""
    assert ticket_policy.READ_ROLES == TICKET_READERS
    assert ticket_policy.COMMENT_ROLES == TICKET_COMMENT
    assert ticket_policy.EXTEND_ROLES == TICKET_EXTEND
    assert ticket_policy.REPORT_ROLES == CALLBACK_REPORT
    assert ticket_policy.WARRANTY_READ_ROLES == TICKET_READERS
    assert ticket_policy.WARRANTY_EDIT_ROLES == WARRANTY_EDIT
    assert ticket_policy.CHARGEBACK_ROLES == CHARGEBACKS
    for step, roles in ticket_policy.STEP_ROLES.items():
        expected = {
            Step.dispatch: TICKET_DESK,
            Step.close: TICKET_DESK,
            Step.reopen: TICKET_DESK,
            Step.accept: TICKET_WORK,
            Step.on_site: TICKET_WORK,
            Step.resolve: TICKET_WORK,
            Step.callback: TICKET_CALLBACK,
        }[step]
        assert roles == expected, step


def _ticket_state(world: World, ticket_id: int) -> tuple[str, int]:
    with Session(world.engine) as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        events = s.scalar(select(func.count()).select_from(TicketEvent).where(TicketEvent.ticket_id == ticket_id))
        return t.status, int(events or 0)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("actor", STEP_ACTORS)
def test_pages_offer_and_take_only_the_ticket_steps_the_api_takes(
    client: TestClient, api_world: World, actor: str, status: str
) -> None:
    with Session(api_world.engine) as s:
        user = s.scalars(select(StaffUser).where(StaffUser.username == actor)).one()
        role, uid = Role(user.role), user.id
    r = client.post("/api/auth/login", json={"username": actor, "password": PASSWORD})
    assert r.status_code == 200, r.text  # the page's session cookie, as a browser gets it
    headers = bearer(api_world, actor if actor == "hq-engineer" else role)

    # What the page offers on a ticket in this status, and what the policy says it may.
    shown = api_world.new_ticket(status)
    with Session(api_world.engine) as s:
        ticket = s.get(Ticket, shown)
        assert ticket is not None
        allowed = ticket_policy.allowed_steps(role, uid, ticket)
        may_act = {step: ticket_policy.may_act(role, uid, ticket, step) for step in Step}
    page = client.get(f"/tickets/{shown}")
    if not ticket_policy.may_read(role):
        assert page.status_code == 403
        offered: set[Step] = set()
    else:
        assert page.status_code == 200, page.text
        offered = {step for step in Step if f'action="/tickets/{shown}/{STEP_PATHS[step]}"' in page.text}
    assert offered == {step for step in Step if allowed[step.value]}, (role, status)

    for step in Step:
        # The API on a fresh ticket in the same status: 403 exactly where the policy refuses role or ownership,
        # and every step the policy allows (the page's forms) succeeds.
        target = api_world.new_ticket(status)
        route = ("POST", f"/api/tickets/{{ticket_id}}/{STEP_PATHS[step]}")
        answer = client.post(f"/api/tickets/{target}/{STEP_PATHS[step]}", headers=headers, json=body(route))
        assert (answer.status_code == 403) == (not may_act[step]), (role, status, step, answer.text)
        if allowed[step.value]:
            assert answer.status_code == 200, (role, status, step, answer.text)
            continue
        if answer.status_code < 400:
            continue  # stricter on the page than the API: never the other way round
        # Refused by the API: not offered (checked above), and refused when the page's form is posted anyway.
        assert step not in offered
        posted = api_world.new_ticket(status)
        before = _ticket_state(api_world, posted)
        r = client.post(f"/tickets/{posted}/{STEP_PATHS[step]}", data=PAGE_FORMS[step](), follow_redirects=False)
        if r.status_code == 303:
            flash = unquote(r.cookies.get("steward_flash") or "")
            assert '"k": "error"' in flash, (role, status, step, flash)
        else:
            assert r.status_code == 403, (role, status, step, r.status_code)
        assert _ticket_state(api_world, posted) == before, (role, status, step)
