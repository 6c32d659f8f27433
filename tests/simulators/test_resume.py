"""A fleet resumed from registers (stored ones, or where another run will leave them) never reads backwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from simulators import Fleet, RegisterStart

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"
LIVE = datetime(2026, 12, 4, 17, 7, 30, tzinfo=UTC)  # 01:07:30 in Shanghai: a quiet night, small steps
HISTORY = ("vacant_flow:CW-1-1-302@5m", "reverse_flow@5m")


def meter_payloads(fleet: Fleet, duration: timedelta) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for frame in fleet.frames(duration):
        if frame.topic.endswith("/meter"):
            out.setdefault(frame.topic.split("/")[3], []).append(json.loads(frame.payload))
    return out


def test_the_live_fleet_continues_where_the_replay_leaves_the_registers() -> None:
    start = LIVE - timedelta(hours=1)
    replay = meter_payloads(Fleet.from_file(SAMPLE, seed=7, start=start, scenarios=HISTORY), LIVE - start)
    where = Fleet.from_file(SAMPLE, seed=7, start=start, scenarios=HISTORY).meter_registers_at(LIVE)
    live = meter_payloads(Fleet.from_file(SAMPLE, seed=7, start=LIVE, registers=where), timedelta(minutes=20))
    assert len(live) > 900
    for code, readings in live.items():
        last, first = replay[code][-1], readings[0]
        assert Decimal(first["register"]) >= Decimal(last["register"]), code
        if "reverse_register" in first:
            assert Decimal(first["reverse_register"]) >= Decimal(last["reverse_register"]), code
    # The reversed meter's reverse register carried over instead of starting at zero again.
    reversed_meter = next(c for c, r in replay.items() if Decimal(r[-1].get("reverse_register", "0")) > 0)
    assert Decimal(live[reversed_meter][0]["reverse_register"]) > 0


def test_without_registers_the_live_fleet_would_read_below_the_replay() -> None:
    # Why the demo passes registers at all: both fleets start their registers from the seed.
    start = LIVE - timedelta(hours=1)
    replay = meter_payloads(Fleet.from_file(SAMPLE, seed=7, start=start), LIVE - start)
    live = meter_payloads(Fleet.from_file(SAMPLE, seed=7, start=LIVE), timedelta(minutes=20))
    assert any(Decimal(live[c][0]["register"]) < Decimal(replay[c][-1]["register"]) for c in live)


def test_a_fleet_resumes_from_stored_registers() -> None:
    stored = {
        "HW-1-1-101": RegisterStart(Decimal("300.125")),
        "E-1-1-101": RegisterStart(Decimal("9000.5"), Decimal("3.2")),
    }
    first = {
        c: r[0]
        for c, r in meter_payloads(
            Fleet.from_file(SAMPLE, seed=7, start=LIVE, registers=stored), timedelta(minutes=16)
        ).items()
    }
    assert first["HW-1-1-101"]["register"] == "300.125"
    assert Decimal(first["E-1-1-101"]["register"]) == Decimal("9000.5")
    assert Decimal(first["E-1-1-101"]["reverse_register"]) == Decimal("3.2")
