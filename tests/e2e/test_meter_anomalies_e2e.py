"""Simulated meters with fault scenarios → Mosquitto → ingest (alarm evaluation on) → meter anomaly alarms.

A four-flat estate (one vacant) replays 8 simulated hours as fast as the broker takes them; the
scenarios land on the simulator's default targets: vacant_flow on the vacant flat's cold-water meter,
reverse_flow and rollover on two electricity meters, spike on a hot-water meter 7 h in (after the
24 intervals of history the spike rule needs). The ingest process runs with
STEWARD_ALARM_EVALUATION=1, which appends `MeterAnomalyEvaluator` to the pipeline's hooks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from alarms.meter_pack import ensure_meter_rules
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from simulators import run_simulation
from steward.broker import MosquittoProcess
from tests.support.ingest_process import IngestProcess

pytestmark = pytest.mark.broker

ESTATE = {
    "estate": {"code": "meter-e2e", "name": "水电表异常测试小区", "timezone": "Asia/Shanghai"},
    "buildings": [{"code": "1", "name": "1幢", "floors": 1, "units_per_floor": 4, "vacant": ["1-1-101"]}],
    "unit_meters": [
        {
            "kind": "electricity_meter",
            "code": "E-{unit}",
            "register_max": "999999.99",
            "resolution": "0.01",
            "expected_interval_s": 900,
        },
        {
            "kind": "cold_water_meter",
            "code": "CW-{unit}",
            "register_max": "99999.999",
            "resolution": "0.001",
            "has_valve": True,
            "expected_interval_s": 900,
        },
        {
            "kind": "hot_water_meter",
            "code": "HW-{unit}",
            "register_max": "99999.999",
            "resolution": "0.001",
            "has_valve": True,
            "expected_interval_s": 900,
        },
    ],
}
HOURS = 8
# 21:00 UTC two days back, so the 8-hour window ends at least 19 hours ago at any hour. One day back put
# its end in the future when the test ran between 21:00 and 05:00 UTC; the simulator's pacer then waited
# for the wall clock and a CI run started at night hung.
START = (datetime.now(UTC) - timedelta(days=2)).replace(hour=21, minute=0, second=0, microsecond=0)
SCENARIOS = ["vacant_flow@1h", "reverse_flow@1h", "rollover@1h", "spike@7h"]


def _alarms(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT d.code AS device, r.code AS rule, r.params->>'anomaly' AS anomaly, a.state, "
                        "a.severity, a.detail FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
                        "JOIN devices d ON d.id = a.device_id WHERE r.kind = 'meter' ORDER BY a.id"
                    )
                )
            )
    finally:
        engine.dispose()


def _stored(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM meter_readings")).scalar_one())
    finally:
        engine.dispose()


def test_fault_scenarios_raise_the_right_meter_alarms(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    estate_file = tmp_path / "estate.yaml"
    estate_file.write_text(yaml.safe_dump(ESTATE, allow_unicode=True), encoding="utf-8")
    engine = create_engine(fresh_database)
    with Session(engine) as session, session.begin():
        import_estate(session, load_estate_file(estate_file))
        ensure_meter_rules(session)
    engine.dispose()

    ingest = IngestProcess(
        fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-meter-e2e", STEWARD_ALARM_EVALUATION="1"
    )
    try:
        ingest.start()
        stats = run_simulation(
            estate_file,
            "127.0.0.1",
            mosquitto.port,
            seed=7,
            speed=0,
            duration_s=HOURS * 3600,
            # A fixed time of day (yesterday 21:00 UTC = 05:00 Beijing): household use follows the clock,
            # and the spike rule compares against the 95th percentile of recent intervals, so an
            # unpinned window made the outcome depend on when the test ran.
            start=START,
            scenarios=SCENARIOS,
            client_id="sim-meter-e2e",
        )
        assert stats.drained, stats
        targets = {p.name: p.device for p in stats.plans}
        assert set(targets) == {"vacant_flow", "reverse_flow", "rollover", "spike"}, targets
        meter_frames = stats.frames.by_channel.get("meter", 0)
        # Each batch's alarms commit with its readings: once every reading is stored, every alarm is in.
        deadline = time.monotonic() + 20
        while _stored(fresh_database) < meter_frames and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _stored(fresh_database) == meter_frames
    finally:
        ingest.stop()

    alarms = _alarms(fresh_database)
    by_device: dict[str, list[Any]] = {}
    for a in alarms:
        by_device.setdefault(a.device, []).append(a)
    summary = [(a.device, a.anomaly, a.state) for a in alarms]

    [vacant] = [a for a in by_device.get(targets["vacant_flow"], []) if a.anomaly == "vacant_flow"] or [None]
    assert vacant is not None, summary
    assert (vacant.rule, vacant.severity, vacant.state) == ("meter.cold_water.vacant_flow", "critical", "active")
    assert vacant.detail["close_valve"] is True

    reverse = [a for a in by_device.get(targets["reverse_flow"], []) if a.anomaly == "reverse_energy"]
    assert len(reverse) == 1, summary
    assert (reverse[0].rule, reverse[0].severity, reverse[0].state) == (
        "meter.electricity.reverse_energy",
        "alarm",
        "active",
    )

    spikes = [a for a in by_device.get(targets["spike"], []) if a.anomaly == "spike"]
    assert len(spikes) == 1, summary
    assert spikes[0].detail["hold_billing"] is True

    # A register wrapping at register_max is a normal reading: no reset, no spike, nothing.
    assert by_device.get(targets["rollover"], []) == [], summary
