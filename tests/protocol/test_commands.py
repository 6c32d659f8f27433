"""Downlink commands have one wire shape (protocol.payloads): what the platform queues and sends, devices parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from protocol.payloads import ValveCommandV1, command_wire, valve_command

NOW = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)


def test_a_queued_valve_command_goes_out_as_the_device_parses_it() -> None:
    body = valve_command(
        command_id="provisional",
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        action="close",
        reason="vacant_flow",
        ticket="GD20261231-0007",
    )
    wire = command_wire(body, command_id="42", issued_at=NOW - timedelta(minutes=5), expires_at=None)
    cmd = ValveCommandV1.model_validate(json.loads(wire))
    assert cmd.command_id == "42"  # always the outbox id, never what the body says
    assert (cmd.action, cmd.reason, cmd.ticket) == ("close", "vacant_flow", "GD20261231-0007")
    assert (cmd.issued_at, cmd.expires_at) == (NOW, NOW + timedelta(hours=1))  # the body's own times win


def test_the_envelope_fills_in_the_outbox_row_times() -> None:
    wire = json.loads(command_wire({"action": "open"}, command_id="7", issued_at=NOW, expires_at=NOW))
    assert wire == {
        "v": 1,
        "action": "open",
        "command_id": "7",
        "issued_at": NOW.isoformat(),
        "expires_at": NOW.isoformat(),
    }
    assert ValveCommandV1.model_validate(wire).action == "open"


@pytest.mark.parametrize(
    "bad",
    [
        {"action": "toggle"},
        {"reason": "x" * 65},
        {"command_id": "a b"},
        {"command_id": ""},
    ],
)
def test_a_command_a_device_would_reject_is_never_queued(bad: dict[str, str]) -> None:
    args = {"command_id": "1", "issued_at": NOW, "expires_at": None, "action": "close", **bad}
    with pytest.raises(ValidationError):
        valve_command(**args)  # type: ignore[arg-type]


def test_devices_ignore_fields_they_do_not_know_but_not_a_naive_time() -> None:
    ok = {"v": 1, "command_id": "1", "issued_at": NOW.isoformat(), "action": "close", "future_field": 1}
    assert ValveCommandV1.model_validate(ok).action == "close"
    with pytest.raises(ValidationError):
        ValveCommandV1.model_validate({**ok, "issued_at": "2026-12-31T23:59:00"})
    with pytest.raises(ValidationError):
        ValveCommandV1.model_validate({**ok, "v": 2})
