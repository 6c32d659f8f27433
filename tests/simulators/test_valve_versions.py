"""Matrix M18 on the device side: a valve command older than the one applied last is stale, never applied."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from core import clock
from simulators import Fleet
from simulators.commands import CommandCounts, Inbound, ValveController
from simulators.meters import MeterModel
from tests.simulators.conftest import START
from tests.simulators.test_valve_commands import LEAKING, TINY_ESTATE


def test_an_older_command_replayed_after_a_newer_one_is_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_ESTATE)
    fleet = Fleet.from_file(path, seed=5, start=START)
    list(fleet.frames(timedelta(minutes=5)))
    wall = clock.now()
    counts = CommandCounts()
    controller = ValveController(fleet, counts, wall=lambda: wall)
    meter = fleet.entries[LEAKING].model
    assert isinstance(meter, MeterModel)

    def cmd(command_id: str, action: str, issued_ago: timedelta) -> bytes:
        issued = wall - issued_ago
        body = {
            "v": 1,
            "command_id": command_id,
            "action": action,
            "issued_at": issued.isoformat(),
            "expires_at": (wall + timedelta(hours=1)).isoformat(),
        }
        return json.dumps(body).encode()

    opened, _ = controller.handle(Inbound(LEAKING, cmd("21", "close", timedelta(minutes=1))), fleet.now)
    assert opened.status == "applied"
    # An "open" issued before that close (still unexpired), arriving late: stale, answered, valve stays shut.
    stale, ack = controller.handle(Inbound(LEAKING, cmd("20", "open", timedelta(minutes=2))), fleet.now)
    assert stale.status == "expired"
    assert "superseded" in stale.detail
    assert ack is not None
    assert json.loads(ack.payload)["status"] == "expired"
    assert not meter.valve_open_at(fleet.now)
    newer, _ = controller.handle(Inbound(LEAKING, cmd("22", "open", timedelta(seconds=0))), fleet.now)
    assert newer.status == "applied"
    assert meter.valve_open_at(fleet.now)
    assert (counts.applied, counts.expired) == (2, 1)
