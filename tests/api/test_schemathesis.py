"""S8: schemathesis over the app's own OpenAPI — 0 server errors, 0 schema violations.

The schema is loaded from the app at import (schemathesis parametrizes at collection time, one test per
operation); requests reach an app on a seeded database of the test's own, so the accounts and tokens
schemathesis creates never leak into the other API tests' world.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import Session

from accounts.const import Role
from core import clock
from core.settings import Settings
from steward.app import create_app
from tests.support.access_world import card_for, unit_code_of
from tests.support.billing_world import billing_place, new_hold, statement_for
from tests.support.dunning import seed_dunning
from tests.support.handover import new_display_token, new_handover
from tests.support.ops import add_command, new_failed_delivery, new_task
from tests.support.service_rounds import new_service_task
from tests.support.world import World, add_samples, bearer, build_world

# Domain rules JSON Schema cannot state answer 422 to schema-valid input; only these operations may:
# raw samples over more than 7 days or more than 5000 buckets (facility.series), and accounts scoped to
# estate codes that do not exist. Every other operation keeps schemathesis' default expectations.
CONFIG = schemathesis.Config.from_str(
    """
[[operations]]
include-path-regex = "^/api/points/\\\\{point_id\\\\}/(samples|series)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-name = "POST /api/users"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# Rule params are checked by rebuilding the rule (levels must move the right way with severity, ...).
[[operations]]
include-path-regex = "^/api/alarm-rules/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

# An arrears CSV is checked row by row against the estate's units: a schema-valid string is mostly a bad file.
[[operations]]
include-name = "POST /api/estates/{code}/dunning/imports"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

# Acknowledging or clearing an alarm that is already cleared conflicts with its state.
[[operations]]
include-path-regex = "^/api/alarms/\\\\{alarm_id\\\\}/(acknowledge|clear)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409"]

# Billing: a tariff may not start in the past, a refund not exceed the balance, a reused Idempotency-Key not pay
# another amount, a hold be confirmed once, registers lie within the held interval (422 / 409).
[[operations]]
include-path-regex = "^/api/billing/(accounts|estates|holds)/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# The payment webhook opens only to a provider's signature: random requests are 401 (no secret is configured here).
[[operations]]
include-path-regex = "^/api/billing/webhook/"
checks.positive_data_acceptance.expected-statuses = ["401"]
# A notice moves draft → approved → sent once: approving, sending or cancelling it again conflicts with its
# status, and a restriction notice is not sent once its stated date is too near.
[[operations]]
include-path-regex = "^/api/billing/notices/\\\\{notice_id\\\\}/(approve|send|cancel)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409"]
# A task is done once (again, or cancelled by the unit's payment: 409); only a failed delivery is retried.
[[operations]]
include-path-regex = "^/api/(dunning/tasks/\\\\{task_id\\\\}/done|notifications/\\\\{delivery_id\\\\}/retry)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409"]

# A service-round task is recorded once (409), not dated before its window or in the future (409); a skipped task
# needs a reason and a finding a description that is not blank (422).
[[operations]]
include-path-regex = "^/api/service-tasks/\\\\{service_task_id\\\\}/record$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# Cards: a UID must have its format's length, a tenant's card end with the lease, a visitor's within 24 h, a
# renovation pass name its permit's end (422); a UID already live, or a card no longer active, conflicts (409).
[[operations]]
include-name = "POST /api/access/estates/{code}/cards"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path-regex = "^/api/access/cards/\\\\{card_id\\\\}/(lost|return)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# A handover date outside 1950–2199 (no warranty period is counted from it), and a period given both in years and
# in heating seasons (or in neither), are refused (422).
[[operations]]
include-path-regex = "^/api/estates/\\\\{code\\\\}/warranty/(handover|terms)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

# The daily summary of a day that fits the date pattern but is not in the calendar (02-30), or has not begun in the
# estate yet, is refused (422).
[[operations]]
include-name = "GET /api/summary/daily"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

# Shift handover: a shift that is not open for handover now, a record another engineer handed over, a second
# signature or the outgoing engineer's own (409); shift times that do not tile the day (422).
[[operations]]
include-path-regex = "^/api/(estates/\\\\{code\\\\}/(handover|shifts)|handovers/\\\\{handover_id\\\\}/sign)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# A screen's name that is blank once trimmed (control characters Python counts as blanks) is refused (422).
[[operations]]
include-name = "POST /api/estates/{code}/display-tokens"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]
"""
)


class Forward:
    """The ASGI app schemathesis calls: forwards each request to `app`, but leaves lifespans to the fixture.

    At import it forwards to an app that only serves /openapi.json (its lifespan never runs, so it never connects);
    the fixture points it at an app on the fuzz world's database and runs that app's lifespan itself."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


TARGET = Forward(create_app(Settings()))
schema = schemathesis.openapi.from_asgi("/openapi.json", TARGET, config=CONFIG)

# Ids of real objects (visible estate, other estate), filled in by the fixture; see `map_case`.
KNOWN: dict[str, tuple[Any, Any]] = {}


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """Point some positive cases at real objects, so 200 bodies get validated too (random ids are all 404).

    The choice hangs off the generated value itself, so hypothesis still replays and shrinks it."""
    if not KNOWN or case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    for name, value in list(case.path_parameters.items()):
        if name in KNOWN:
            pick = len(str(value)) % 3  # 0: keep the generated value, 1: a visible object, 2: another estate's
            if pick:
                case.path_parameters[name] = KNOWN[name][pick - 1]
    return case


@pytest.fixture(scope="module")
def fuzz_world(pg_server_url: str) -> Iterator[World]:
    with build_world(pg_server_url, prefix="steward_fuzz") as world:
        # Recent samples on the visible point, so default ranges (the last hour / day) have bodies to validate.
        now = clock.now().replace(microsecond=0)
        add_samples(world.engine, world.point_id, [(now - timedelta(minutes=i), 20.0 + i % 7) for i in range(180)])

        schema_only, TARGET.app = TARGET.app, create_app(Settings(), engine=world.engine)
        KNOWN.update(
            code=(world.estate, world.other_estate),
            room_id=(world.room_id, world.other_room_id),
            device_id=(world.device_id, world.other_device_id),
            point_id=(world.point_id, world.other_point_id),
            alarm_id=(world.alarm_id, world.other_alarm_id),
            rule_code=("dry_transformer.winding_temp_a.high", "power_room.smoke"),
            account_id=(
                billing_place(world.engine, world.estate).account_id,
                billing_place(world.engine, world.other_estate).account_id,
            ),
            hold_id=(new_hold(world.engine, world.estate), new_hold(world.engine, world.other_estate)),
            statement_id=(statement_for(world.engine, world.estate), statement_for(world.engine, world.other_estate)),
        )
        (case_a, doc_a), (case_b, doc_b) = (
            seed_dunning(world.engine, world.estate),
            seed_dunning(world.engine, world.other_estate),
        )
        KNOWN.update(case_id=(case_a, case_b), document_id=(doc_a, doc_b))
        KNOWN.update(
            task_id=(new_task(world.engine, world.estate), new_task(world.engine, world.other_estate)),
            delivery_id=(
                new_failed_delivery(world.engine, world.estate),
                new_failed_delivery(world.engine, world.other_estate),
            ),
        )
        with Session(world.engine) as s, s.begin():
            for device_id in (world.device_id, world.other_device_id):
                add_command(s, device_id, reason="billing_restriction")
                add_command(s, device_id, reason="vacant_flow", ticket="GD-FUZZ-1", status="failed", last_error="x")
                # A device's refusal (ingest closes the row as refused): the response schema must allow it.
                add_command(s, device_id, reason="billing_restore", status="refused", last_error="rejected")
        KNOWN.update(
            service_task_id=(
                new_service_task(world.engine, world.estate),
                new_service_task(world.engine, world.other_estate),
            ),
            handover_id=(new_handover(world.engine, world.estate), new_handover(world.engine, world.other_estate)),
            display_token_id=(
                new_display_token(world.engine, world.estate),
                new_display_token(world.engine, world.other_estate),
            ),
        )
        cards = card_for(world.engine, world.estate), card_for(world.engine, world.other_estate)
        KNOWN.update(
            card_id=cards, unit_code=(unit_code_of(world.engine, cards[0]), unit_code_of(world.engine, cards[1]))
        )
        try:
            with TestClient(TARGET.app):  # runs the app's lifespan (dashboards' live listener included)
                yield world
        finally:
            KNOWN.clear()
            TARGET.app = schema_only


@schema.parametrize()
# 15 examples per operation and role: 51 operations × 2 roles keep this module near two minutes in CI.
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case[Any], fuzz_world: World) -> None:
    # An administrator (every operation allowed) and a viewer (masked residents, 403 on the rest).
    for role in (Role.admin, Role.viewer):
        case.call_and_validate(headers=bearer(fuzz_world, role))
