"""The spike rule's minimum step (alarms/meter_pack.py SPIKE_MIN_STEP) sits above every healthy simulated
household's interval use on hourly reads, so "healthy meters raise nothing" holds for spike too (issue 14
part 4: "3 × p95" alone fired on about one healthy flat in eight eight-day runs)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from alarms.meter_pack import SPIKE_MIN_STEP, SUPPLY_CAPACITY_PER_HOUR
from simulators import profiles
from simulators.meters import ElectricityUse, Household, UsageModel, WaterUse, boundary_index

TZ = ZoneInfo("Asia/Shanghai")
START = boundary_index(datetime(2026, 11, 1, tzinfo=UTC), 3600)


def _model(kind: str, flat: int, persons: int) -> UsageModel:
    household = Household(f"u{flat}", "occupied", persons, False)
    code = f"{kind}-{flat}-{persons}"
    if kind == "electricity_meter":
        return ElectricityUse(code, 14, 3600, TZ, household)
    uses = profiles.HOT_WATER if kind == "hot_water_meter" else profiles.COLD_WATER
    return WaterUse(code, 14, 3600, TZ, household, uses)


@pytest.mark.parametrize("kind", sorted(SPIKE_MIN_STEP))
def test_no_healthy_simulated_hour_reaches_the_floor(kind: str) -> None:
    floor = Decimal(SPIKE_MIN_STEP[kind])
    assert floor < Decimal(SUPPLY_CAPACITY_PER_HOUR[kind])  # the floor never hides what the pipe cannot pass
    top = max(
        _model(kind, flat, persons).use(START + k).forward
        for flat in range(20)
        for persons in (1, 3, 5)
        for k in range(24 * 14)
    )
    # A margin, not just "below": a floor a hair above the busiest hour would flake on the next seed.
    assert top < floor * Decimal("0.8"), (kind, top)
