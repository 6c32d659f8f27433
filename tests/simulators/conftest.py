"""Shared fleets: generating frames is deterministic, so one run per module serves many assertions."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from protocol.estate_file import EstateFile, ExpandedEstate, expand, load_estate_file
from simulators import SCENARIOS, Fleet, Frame

ESTATE_FILE = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"
# 2026-11-26 00:00 in Hangzhou (a Thursday).
START = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


@dataclass
class Run:
    fleet: Fleet
    frames: list[Frame]

    def of(self, device: str, channel: str | None = None) -> list[Frame]:
        return [f for f in self.frames if f.device == device and (channel is None or f.channel == channel)]

    def tagged(self, scenario: str) -> list[Frame]:
        return [f for f in self.frames if f.scenario == scenario]

    def meter_series(self, *, ordered_by_ts: bool = True) -> dict[str, list[dict[str, Any]]]:
        """Valid meter payloads per device (device-time order)."""
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in self.frames:
            if f.channel == "meter" and f.expect == "store":
                out[f.device].append(json.loads(f.payload))
        if ordered_by_ts:
            for series in out.values():
                series.sort(key=lambda p: p["ts"])
        return out


def registers(series: list[dict[str, Any]], key: str = "register") -> list[Decimal]:
    return [Decimal(p[key]) for p in series]


@pytest.fixture(scope="session")
def estate_doc() -> EstateFile:
    return load_estate_file(ESTATE_FILE)


@pytest.fixture(scope="session")
def expanded(estate_doc: EstateFile) -> ExpandedEstate:
    return expand(estate_doc)


@pytest.fixture(scope="session")
def baseline_day() -> Run:
    """One full local day, no scenarios."""
    fleet = Fleet.from_file(ESTATE_FILE, seed=11, start=START)
    return Run(fleet, list(fleet.frames(timedelta(days=1), step=timedelta(minutes=5))))


@pytest.fixture(scope="session")
def all_scenarios() -> Run:
    """Four hours with every scenario at its default onset (30 min in)."""
    fleet = Fleet.from_file(ESTATE_FILE, seed=11, start=START, scenarios=list(SCENARIOS))
    return Run(fleet, list(fleet.frames(timedelta(hours=4))))
