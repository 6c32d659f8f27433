"""Multi-point alarms end to end: simulator scenarios → Mosquitto → ingest (alarm evaluation on) → alarms → tickets.

Two estates built from the sample estate's equipment rooms (power room, heat station, domestic pump room
with its sump pit, fire pump room; no households or meters, so a run is a few thousand frames):
``mp-fault`` runs three simulated hours with the five multi-point fault scenarios, ``mp-healthy`` the same
three hours with none. Simulated time, published as fast as the broker takes it (speed 0).

Acceptance (issue 14 part 2): each scenario raises its rule's alarm and ticket exactly once; the healthy
run raises no multi-point alarm; the fire-pump rule, with no fire-signal point in these rooms, says
未配置 instead of claiming "no fire signal".
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
from alarms.multipoint_evaluator import coverage
from alarms.multipoint_pack import (
    BOOSTER_STANDBY_RULE,
    DT_RULE,
    FIRE_NO_SIGNAL_RULE,
    IMBALANCE_RULE,
    JOCKEY_RULE,
    MULTIPOINT_RULES,
    SUMP_RULE,
)
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
ROOMS = ("PR1", "HS1", "PUMP1", "FIRE1")
SIM_S = 3 * 3600  # the ΔT rule needs 2 h below 5 K
# scenario → (device code without the estate prefix, the rule it must raise)
SCENARIOS = {
    "phase_imbalance": ("LV1", IMBALANCE_RULE),
    "dying_dt": ("HS1-HX1", DT_RULE),
    "fire_main_leak": ("FIRE1-PUMPS", JOCKEY_RULE),
    "standby_stuck": ("PUMP1-VFD", BOOSTER_STANDBY_RULE),
    "sump_flood": ("PUMP1-SUMP", SUMP_RULE),
}


def _estate(doc: dict[str, Any], code: str, prefix: str) -> dict[str, Any]:
    rooms = []
    for room in doc["rooms"]:
        if room["code"] not in ROOMS:
            continue
        devices = [d for d in room["devices"] if "meter" not in d["kind"]]
        rooms.append({**room, "devices": [{**d, "code": prefix + d["code"]} for d in devices]})
    return {"estate": {**doc["estate"], "code": code, "name": f"{doc['estate']['name']}（{code}）"}, "rooms": rooms}


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
    tmp = tmp_path_factory.mktemp("multipoint-e2e")
    doc = yaml.safe_load((ROOT / "examples" / "estate.yaml").read_text(encoding="utf-8"))
    files = {}
    for code, prefix in (("mp-fault", "MPF-"), ("mp-healthy", "MPH-")):
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
        ingest = IngestProcess(url, broker.url, tmp / "logs", client_id="ingest-mp-e2e", STEWARD_ALARM_EVALUATION="1")
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
    frames = stats.frames.by_channel.get("telemetry", 0)
    assert frames > 0, stats.frames
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while True:  # every telemetry frame stored (a batch's alarms commit with its samples)
        [(stored,)] = _rows(
            stack.engine,
            "SELECT count(*) FROM (SELECT DISTINCT p.device_id, s.ts FROM samples s JOIN points p ON p.id = s.point_id "
            "JOIN devices d ON d.id = p.device_id JOIN estates e ON e.id = d.estate_id WHERE e.code = :e) x",
            e=estate,
        )
        if stored >= frames:
            return
        assert datetime.now(UTC) < deadline, f"{stored} of {frames} frames stored (log: {stack.tmp / 'logs'})"
        time.sleep(0.2)


def _multipoint_alarms(engine: Engine, estate: str) -> list[Any]:
    return _rows(
        engine,
        "SELECT a.id, r.code AS rule, d.code AS device, a.severity, a.state, a.raised_at, a.ticket_id, a.subject "
        "FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id JOIN devices d ON d.id = a.device_id "
        "JOIN estates e ON e.id = a.estate_id WHERE e.code = :e AND r.code = ANY(CAST(:codes AS text[])) "
        "ORDER BY r.code, a.id",
        e=estate,
        codes=[s.code for s in MULTIPOINT_RULES],
    )


@pytest.fixture(scope="module")
def fault_run(stack: Stack) -> datetime:
    # 03:00 local: the night-time supply lifts the dying ΔT to 4.5 ± 0.5 K, the hardest hour for the 2 h rule.
    start = simulated_window_start(hour=3)
    specs = [f"{name}:MPF-{device}@10m" for name, (device, _) in SCENARIOS.items()]
    _simulate(stack, "mp-fault", specs, start)
    return start


def test_each_multipoint_scenario_raises_its_alarm_and_ticket_once(stack: Stack, fault_run: datetime) -> None:
    alarms = _multipoint_alarms(stack.engine, "mp-fault")
    got = sorted((a.rule, a.device) for a in alarms)
    assert got == sorted((rule, f"MPF-{device}") for device, rule in SCENARIOS.values()), alarms
    onset = fault_run + timedelta(minutes=10)
    for a in alarms:
        assert a.state == "active", a  # every fault is still going at the end of the run
        assert a.raised_at >= onset, a
        assert a.ticket_id is not None, a
    by_rule = {a.rule: a for a in alarms}
    # The ΔT rule waits its 2 h; the sump rule its 30 min.
    assert by_rule[DT_RULE].raised_at >= onset + timedelta(hours=2)
    assert by_rule[SUMP_RULE].raised_at >= onset + timedelta(minutes=30)
    tickets = _rows(
        stack.engine,
        "SELECT t.id, t.source_key, t.status, t.source FROM tickets t WHERE t.id = ANY(CAST(:t AS bigint[]))",
        t=[a.ticket_id for a in alarms],
    )
    assert len(tickets) == len(alarms)
    assert all(t.source == "alarm" and t.status != "closed" for t in tickets), tickets
    # One ticket per episode key, opened once.
    [(dupes,)] = _rows(
        stack.engine,
        "SELECT count(*) FROM (SELECT source_key FROM tickets WHERE source_key = ANY(CAST(:k AS text[])) "
        "GROUP BY source_key HAVING count(*) > 1) x",
        k=[t.source_key for t in tickets],
    )
    assert dupes == 0
    opened = _rows(
        stack.engine,
        "SELECT ticket_id, count(*) FROM ticket_events WHERE action = 'opened' "
        "AND ticket_id = ANY(CAST(:t AS bigint[])) GROUP BY ticket_id",
        t=[t.id for t in tickets],
    )
    assert sorted(n for _, n in opened) == [1] * len(tickets)


def test_the_fire_pump_rule_says_not_configured_without_a_fire_signal(stack: Stack) -> None:
    with stack.engine.connect() as conn:
        cov = [c for c in coverage(conn) if c["estate"] == "mp-fault"]
    fire = [c for c in cov if c["rule"] == FIRE_NO_SIGNAL_RULE]
    assert fire == [
        {
            "rule": FIRE_NO_SIGNAL_RULE,
            "estate": "mp-fault",
            "device": "MPF-FIRE1-PUMPS",
            "configured": False,
            "missing": ["signal"],
            "status_zh": "未配置",
            "status_en": "not configured",
        }
    ]
    configured = {c["rule"] for c in cov if c["configured"]}
    assert {rule for _, rule in SCENARIOS.values()} <= configured


def test_a_healthy_run_raises_no_multipoint_alarm(stack: Stack) -> None:
    start = simulated_window_start()
    _simulate(stack, "mp-healthy", [], start)
    assert _multipoint_alarms(stack.engine, "mp-healthy") == []
