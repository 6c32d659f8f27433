"""Heat-station supply and meter health end to end: simulator scenarios → Mosquitto → ingest (alarm evaluation
on) → alarms → tickets (issue 14 parts 3 and 4).

Two estates built from the sample estate's heat station (HS1: the floor-heating exchanger HS1-HX1 with its own
curve, the radiator exchanger HS1-HX2 on the default radiator curve, the outdoor thermometer HS1-OT) and one
small building of four flats whose cold-water meters are battery-powered (3.6 V, a status frame every hour).
Three simulated hours each, published as fast as the broker takes them (speed 0):

- ``mh-fault``: ``cold_day`` at 10 min (outdoors −15 K, both exchangers follow their curves),
  ``supply_overshoot`` on HS1-HX1 at 60 min (+18 K: past curve + 5 K and past floor heating's 60 °C),
  ``dying_battery`` on one flat's meter at 10 min (−0.2 V/h);
- ``mh-healthy``: the same cold day and nothing else.

Acceptance: the curve warning, the emitter-cap alarm and the low-battery alarm are raised once each, each
with its ticket, and nothing else in either estate — in particular not on the radiator exchanger, whose 73 °C
on the cold day is well inside its curve, nor during the healthy cold day whose rising setpoint the supply
follows (a fixed 50 °C warning would have fired on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from alarms.install import install_rule_packs
from alarms.multipoint_pack import SUPPLY_CAP_RULE, SUPPLY_CURVE_RULE
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from simulators import run_simulation
from steward.broker import MosquittoProcess, mosquitto_binary
from storage.migrate import upgrade
from tests.support.clock import simulated_window_start
from tests.support.ingest_process import IngestProcess
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
SIM_S = 3 * 3600
BATTERY_RULE = "meter.cold_water.low_battery"


def _estate(doc: dict[str, Any], code: str, prefix: str) -> dict[str, Any]:
    [hs] = [r for r in doc["rooms"] if r["code"] == "HS1"]
    devices = [{**d, "code": prefix + d["code"]} for d in hs["devices"] if "meter" not in d["kind"]]
    return {
        "estate": {**doc["estate"], "code": code, "name": f"{doc['estate']['name']}（{code}）"},
        "buildings": [{"code": "1", "name": "1幢", "floors": 2, "units_per_floor": 2}],
        "unit_meters": [
            {
                "kind": "cold_water_meter",
                "code": prefix + "CW-{unit}",
                "register_max": "99999.999",
                "resolution": "0.001",
                "expected_interval_s": 900,
                "battery_v": 3.6,
                "battery_report_s": 3600,
            }
        ],
        "rooms": [{**hs, "devices": devices}],
    }


@dataclass
class Stack:
    engine: Engine
    broker: MosquittoProcess
    files: dict[str, Path]
    tmp: Path


@pytest.fixture(scope="module")
def stack(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if mosquitto_binary() is None:
        if os.environ.get("STEWARD_REQUIRE_MOSQUITTO", "") not in ("", "0", "false"):
            pytest.fail("STEWARD_REQUIRE_MOSQUITTO=1 but no mosquitto binary is on PATH")
        pytest.skip("no mosquitto binary on PATH")
    tmp = tmp_path_factory.mktemp("meter-health-e2e")
    doc = yaml.safe_load((ROOT / "examples" / "estate.yaml").read_text(encoding="utf-8"))
    files = {}
    for code, prefix in (("mh-fault", "MHF-"), ("mh-healthy", "MHH-")):
        files[code] = tmp / f"{code}.yaml"
        files[code].write_text(yaml.safe_dump(_estate(doc, code, prefix), allow_unicode=True), encoding="utf-8")
    url = create_database(pg_server_url)
    engine = create_engine(url)
    broker: MosquittoProcess | None = None
    ingest: IngestProcess | None = None
    try:
        upgrade(url)
        with Session(engine) as session, session.begin():
            for path in files.values():
                import_estate(session, load_estate_file(path))
            install_rule_packs(session)
        broker = MosquittoProcess(tmp / "mosquitto")
        broker.start()
        ingest = IngestProcess(url, broker.url, tmp / "logs", client_id="ingest-mh-e2e", STEWARD_ALARM_EVALUATION="1")
        ingest.start()
        yield Stack(engine, broker, files, tmp)
    finally:
        if ingest is not None:
            ingest.stop()
        if broker is not None:
            broker.kill()
        engine.dispose()
        drop_database(pg_server_url, url)


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def _simulate(stack: Stack, estate: str, scenarios: list[str], start: datetime) -> None:
    stats = run_simulation(
        stack.files[estate],
        "127.0.0.1",
        stack.broker.port,
        seed=14,
        speed=0,
        duration_s=SIM_S,
        start=start,
        scenarios=scenarios,
        client_id=f"sim-{estate}",
        commands=False,
    )
    assert stats.drained, stats
    telemetry = stats.frames.by_channel.get("telemetry", 0)
    statuses = stats.frames.by_channel.get("status", 0)
    assert telemetry > 0, stats.frames
    assert statuses > 0, stats.frames
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while True:  # every telemetry frame stored and the last status seen (alarms commit with their batch)
        [(stored, last_status)] = _rows(
            stack.engine,
            "SELECT (SELECT count(*) FROM (SELECT DISTINCT p.device_id, s.ts FROM samples s "
            "JOIN points p ON p.id = s.point_id JOIN devices d ON d.id = p.device_id "
            "JOIN estates e ON e.id = d.estate_id WHERE e.code = :e) x), "
            "(SELECT max(ds.status_ts) FROM device_state ds JOIN devices d ON d.id = ds.device_id "
            "JOIN estates e ON e.id = d.estate_id WHERE e.code = :e)",
            e=estate,
        )
        if stored >= telemetry and last_status is not None and last_status >= start + timedelta(seconds=SIM_S - 3600):
            return
        assert datetime.now(UTC) < deadline, f"{stored} of {telemetry} frames stored (log: {stack.tmp / 'logs'})"
        time.sleep(0.2)


def _alarms(engine: Engine, estate: str) -> list[Any]:
    return _rows(
        engine,
        "SELECT a.id, r.code AS rule, d.code AS device, a.severity, a.state, a.raised_at, a.ticket_id, a.detail "
        "FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id LEFT JOIN devices d ON d.id = a.device_id "
        "JOIN estates e ON e.id = a.estate_id WHERE e.code = :e ORDER BY r.code, a.id",
        e=estate,
    )


@pytest.fixture(scope="module")
def fault_run(stack: Stack) -> datetime:
    start = simulated_window_start()
    specs = ["cold_day:MHF-HS1-OT@10m", "supply_overshoot:MHF-HS1-HX1@60m", "dying_battery:MHF-CW-1-1-101@10m"]
    _simulate(stack, "mh-fault", specs, start)
    return start


def test_curve_warning_emitter_cap_and_low_battery_raise_once_each_with_a_ticket(
    stack: Stack, fault_run: datetime
) -> None:
    alarms = _alarms(stack.engine, "mh-fault")
    got = sorted((a.rule, a.device, a.severity) for a in alarms)
    assert got == [
        (SUPPLY_CURVE_RULE, "MHF-HS1-HX1", "warning"),
        (SUPPLY_CAP_RULE, "MHF-HS1-HX1", "alarm"),
        (BATTERY_RULE, "MHF-CW-1-1-101", "warning"),
    ], alarms
    by_rule = {a.rule: a for a in alarms}
    overshoot = fault_run + timedelta(minutes=60)
    assert by_rule[SUPPLY_CURVE_RULE].raised_at >= overshoot
    assert by_rule[SUPPLY_CAP_RULE].raised_at >= by_rule[SUPPLY_CURVE_RULE].raised_at  # 55 °C comes before 60 °C
    assert by_rule[SUPPLY_CAP_RULE].detail["level"] == 60.0  # floor heating, not the radiators' 85
    assert by_rule[SUPPLY_CURVE_RULE].detail["curve"] == [[-15.0, 50.0], [-5.0, 45.0], [5.0, 40.0], [15.0, 35.0]]
    # 3.6 V − 0.2 V/h from 10 min: below 3.3 V from 1 h 40 min; the hourly status at 2 h is the first to show it.
    battery = by_rule[BATTERY_RULE]
    assert fault_run + timedelta(hours=1, minutes=40) <= battery.raised_at <= fault_run + timedelta(hours=3)
    assert float(battery.detail["evidence"]["battery_v"]) < 3.3
    for a in alarms:
        assert a.state == "active", a
        assert a.ticket_id is not None, a
    tickets = _rows(
        stack.engine,
        "SELECT t.id, t.source, t.category FROM tickets t WHERE t.id = ANY(CAST(:t AS bigint[]))",
        t=[a.ticket_id for a in alarms],
    )
    assert len(tickets) == 3, tickets
    assert all(t.source == "alarm" for t in tickets), tickets
    assert {t.category for t in tickets} == {"heating", "meter"}
    opened = _rows(
        stack.engine,
        "SELECT ticket_id, count(*) AS n FROM ticket_events WHERE action = 'opened' "
        "AND ticket_id = ANY(CAST(:t AS bigint[])) GROUP BY ticket_id",
        t=[t.id for t in tickets],
    )
    assert sorted(r.n for r in opened) == [1, 1, 1]


def test_a_healthy_cold_day_raises_nothing(stack: Stack) -> None:
    start = simulated_window_start()
    _simulate(stack, "mh-healthy", ["cold_day:MHH-HS1-OT@10m"], start)
    assert _alarms(stack.engine, "mh-healthy") == []
    # The setpoint did rise and the supply with it (+5 K), and still nothing was raised.
    [(before, after)] = _rows(
        stack.engine,
        "SELECT avg(s.value) FILTER (WHERE s.ts < :onset), avg(s.value) FILTER (WHERE s.ts > :settled) "
        "FROM samples s JOIN points p ON p.id = s.point_id JOIN devices d ON d.id = p.device_id "
        "WHERE d.code = 'MHH-HS1-HX1' AND p.metric = 'secondary_supply_temp_c'",
        onset=start + timedelta(minutes=10),
        settled=start + timedelta(minutes=50),
    )
    assert after > before + 3
