"""Simulated meters with fault scenarios → Mosquitto → ingest → the worker's periodic meter job → alarms + tickets.

domain-defaults §3, the anomalies that need days of history (alarms/meter_jobs.py `detect_periodic`,
run by worker/jobs.py `meters_job`), plus reset/replacement (judged per reading by ingest) which
test_meter_anomalies_e2e.py does not cover. Two buildings of cold-water flats read hourly, each with a
building master meter (``master_of: cold_water_meter``); 8 simulated days ending about now are replayed
as fast as the broker takes them, with:

- vacant_flow on the vacant flat 1-1-101 (60 L/h from hour 1): a leak at night (> 30 L/h → "leak",
  severity alarm) and continuous flow for ≥ 24 h;
- stuck_meter on the occupied flat 1-1-102 (register frozen from hour 1: ~8 days unchanged ≥ 7);
- meter_replacement on 1-1-103 on day 1 (register restarts near 0 with a new serial);
- pipe_leak on building 1's master (500 L/h only the master sees: master − Σ flats ≫ 15 % a day).

Building 2 (two flats and its master) and flat 1-1-104 have no scenario and must raise nothing.
Ingest runs with STEWARD_ALARM_EVALUATION=1 (per-reading rules, tickets through open_for_alarms); the
periodic job runs in-process through `worker.runner.Worker` at an explicit `now` with the same hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from alarms.install import install_rule_packs
from alarms.meter_pack import METER_RULE_META, PERIODIC
from core import clock
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from simulators import run_simulation
from steward.broker import MosquittoProcess
from storage.db import make_sessionmaker
from storage.migrate import upgrade
from tests.conftest import require_mosquitto
from tests.support.clock import latest_local
from tests.support.ingest_process import IngestProcess
from tests.support.postgres import create_database, drop_database
from worker.jobs import default_jobs, on_raised_hook
from worker.runner import Worker

pytestmark = pytest.mark.broker

CW = {
    "kind": "cold_water_meter",
    "code": "CW-{unit}",
    "register_max": "99999.999",
    "resolution": "0.001",
    "has_valve": True,
    "expected_interval_s": 3600,
}


def _master(building: str) -> dict[str, Any]:
    return {
        "code": f"CW-MASTER-{building}",
        "kind": "cold_water_meter",
        "name": f"{building}幢冷水总表",
        "building": building,
        "expected_interval_s": 3600,
        "register_max": "9999999.99",
        "resolution": "0.01",
        "attrs": {"master_of": "cold_water_meter", "dn": 50},
    }


ESTATE = {
    "estate": {"code": "meter-periodic", "name": "水电表周期异常测试小区", "timezone": "Asia/Shanghai"},
    "buildings": [
        {"code": "1", "name": "1幢", "floors": 1, "units_per_floor": 4, "vacant": ["1-1-101"]},
        {"code": "2", "name": "2幢", "floors": 1, "units_per_floor": 2},
    ],
    "unit_meters": [CW],
    "devices": [_master("1"), _master("2")],
}
LEAKY, STUCK, REPLACED, HEALTHY = "CW-1-1-101", "CW-1-1-102", "CW-1-1-103", "CW-1-1-104"
HEALTHY_B2 = ("CW-2-1-101", "CW-2-1-102", "CW-MASTER-2")
SCENARIOS = [
    f"vacant_flow:{LEAKY}@1h",
    f"stuck_meter:{STUCK}@1h",
    f"meter_replacement:{REPLACED}@1d",
    "pipe_leak:CW-MASTER-1@1h",
]
DAYS = 8
SEED = 7


@dataclass(frozen=True)
class Outcome:
    url: str
    now: datetime  # the job's `now`
    targets: dict[str, str]
    first_run: dict[str, bool]
    rerun: dict[str, bool]
    raised_first: int  # meter alarms after the first periodic run
    raised_after_rerun: int
    alarms: list[Any]
    buildings: dict[str, int]


def _alarms(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT d.code AS device, r.code AS rule, r.params->>'anomaly' AS anomaly, a.subject, "
                        "a.state, a.severity, a.detail, a.raised_at, t.category, t.priority, t.source, t.source_key "
                        "FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
                        "LEFT JOIN devices d ON d.id = a.device_id LEFT JOIN tickets t ON t.id = a.ticket_id "
                        "ORDER BY a.id"
                    )
                )
            )
    finally:
        engine.dispose()


def _scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def outcome(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    require_mosquitto()
    tmp = tmp_path_factory.mktemp("meter-periodic")
    url = create_database(pg_server_url)
    broker: MosquittoProcess | None = None
    try:
        upgrade(url)
        estate_file = tmp / "estate.yaml"
        estate_file.write_text(yaml.safe_dump(ESTATE, allow_unicode=True), encoding="utf-8")
        engine = create_engine(url)
        with Session(engine) as session, session.begin():
            import_estate(session, load_estate_file(estate_file))
            install_rule_packs(session)
        broker = MosquittoProcess(tmp / "mosquitto")
        broker.start()

        # Simulated time may not run ahead of the wall clock (ingest, a process of its own, judges readings by
        # it), and the verdicts depend on the time of day (nights, whole days): end at the latest 12:00
        # Shanghai time, whatever the hour the test runs. The job runs an hour before that, so every reading
        # it looks at (upload delay ≤ 92 s) has been published.
        sim_end = latest_local(12, clock.now()).astimezone(UTC)  # the real ingest's own clock
        start = sim_end - timedelta(days=DAYS, hours=2)
        job_now = sim_end - timedelta(hours=1)
        ingest = IngestProcess(
            url, broker.url, tmp / "logs", client_id="ingest-meter-periodic", STEWARD_ALARM_EVALUATION="1"
        )
        try:
            ingest.start()
            stats = run_simulation(
                estate_file,
                "127.0.0.1",
                broker.port,
                seed=SEED,
                speed=0,
                start=start,
                duration_s=(sim_end - start).total_seconds(),
                scenarios=SCENARIOS,
                client_id="sim-meter-periodic",
                commands=False,
            )
            assert stats.drained, stats
            meter_frames = stats.frames.by_channel.get("meter", 0)
            deadline = time.monotonic() + 30
            stored = 0
            while time.monotonic() < deadline:
                stored = _scalar(url, "SELECT count(*) FROM meter_readings")
                if stored >= meter_frames:
                    break
                time.sleep(0.2)
            assert stored == meter_frames, (stored, meter_frames)
        finally:
            ingest.stop()

        meters = [j for j in default_jobs(on_raised=on_raised_hook()) if j.name == "meters"]
        worker = Worker(make_sessionmaker(engine), meters)
        count = "SELECT count(*) FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id WHERE r.kind = 'meter'"
        clock.set_clock(lambda: job_now)
        try:
            first = worker.run_once(job_now)
            raised_first = _scalar(url, count)
            # The hourly re-run (and a late one) sees the same nights, hours and day: no second episode.
            rerun = worker.run_once(job_now)
            rerun_late = worker.run_once(job_now + timedelta(minutes=15))
            raised_after = _scalar(url, count)
        finally:
            clock.reset_clock()
        with engine.connect() as conn:
            buildings = {str(c): int(i) for i, c in conn.execute(text("SELECT id, code FROM buildings"))}
        engine.dispose()
        yield Outcome(
            url,
            job_now,
            {p.name: p.device for p in stats.plans},
            first,
            {k: rerun[k] and rerun_late[k] for k in rerun},
            raised_first,
            raised_after,
            _alarms(url),
            buildings,
        )
    finally:
        if broker is not None:
            broker.kill()
        drop_database(pg_server_url, url)


def _of(o: Outcome, anomaly: str, device: str | None = None, subject: str | None = None) -> list[Any]:
    return [
        a
        for a in o.alarms
        if a.anomaly == anomaly and (device is None or a.device == device) and (subject is None or a.subject == subject)
    ]


def _summary(o: Outcome) -> list[tuple[str, str, str, str]]:
    return [(a.device, a.anomaly, a.severity, a.state) for a in o.alarms]


def _assert_ticket(a: Any) -> None:
    policy = METER_RULE_META[a.rule]["ticket_policy"]
    assert (a.category, a.source, a.priority) == (policy["category"], "alarm", policy["priority"][a.severity]), a
    assert a.source_key.startswith("alarm:"), a


def test_job_ran_and_scenarios_hit_their_meters(outcome: Outcome) -> None:
    assert outcome.first_run == {"meters": True}
    assert outcome.targets == {
        "vacant_flow": LEAKY,
        "stuck_meter": STUCK,
        "meter_replacement": REPLACED,
        "pipe_leak": "CW-MASTER-1",
    }


def test_vacant_leak_is_a_night_leak_at_leak_level_with_a_water_ticket(outcome: Outcome) -> None:
    [a] = _of(outcome, "night_leak", LEAKY) or [None]
    assert a is not None, _summary(outcome)
    assert (a.rule, a.severity, a.state) == ("meter.cold_water.night_leak", "alarm", "active")
    assert a.detail["evidence"]["verdict"] == "leak"
    assert float(a.detail["evidence"]["min_flow_lph"]) > 30
    assert (a.category, a.priority) == ("water", "high")  # > 30 L/h: a leak, not a maybe
    _assert_ticket(a)


def test_vacant_leak_is_continuous_flow_with_a_water_ticket(outcome: Outcome) -> None:
    [a] = _of(outcome, "continuous_flow", LEAKY) or [None]
    assert a is not None, _summary(outcome)
    assert (a.rule, a.severity, a.state) == ("meter.cold_water.continuous_flow", "alarm", "active")
    assert int(a.detail["evidence"]["hours"]) >= 24
    assert a.category == "water"
    _assert_ticket(a)
    # The per-reading rule saw it first (covered in depth by test_meter_anomalies_e2e).
    assert [v.severity for v in _of(outcome, "vacant_flow", LEAKY)] == ["critical"]


def test_stuck_meter_on_an_occupied_flat_opens_a_check_meter_ticket(outcome: Outcome) -> None:
    [a] = _of(outcome, "stuck", STUCK) or [None]
    assert a is not None, _summary(outcome)
    assert (a.rule, a.severity, a.state) == ("meter.cold_water.stuck", "warning", "active")
    assert int(a.detail["evidence"]["days"]) >= 7
    assert a.category == "meter"  # meter_pack: ticket "check meter"
    _assert_ticket(a)


def test_meter_replacement_holds_billing_and_opens_a_record_readings_ticket(outcome: Outcome) -> None:
    [a] = _of(outcome, "reset_or_replacement", REPLACED) or [None]
    assert a is not None, _summary(outcome)
    assert (a.rule, a.severity) == ("meter.cold_water.reset_or_replacement", "warning")
    assert a.detail["hold_billing"] is True
    # The wire format (protocol/payloads.py) carries no serial: the simulator's new serial stays in
    # Frame.meta, so the platform sees a register that fell without a rollover, i.e. "reset" (§3 treats
    # reset and replacement alike: hold billing, record the old final and new initial reading).
    ev = a.detail["evidence"]
    assert ev["kind"] == "reset", ev
    assert Decimal(ev["from_register"]) > Decimal(ev["to_register"]), ev
    assert Decimal(ev["to_register"]) < 1, ev
    assert a.category == "meter"
    _assert_ticket(a)


def test_building_balance_on_the_leaking_building_only(outcome: Outcome) -> None:
    subject = f"building:{outcome.buildings['1']}"
    [a] = _of(outcome, "building_balance", subject=subject) or [None]
    assert a is not None, _summary(outcome)
    assert (a.rule, a.severity, a.state, a.device) == (
        "meter.cold_water.building_balance",
        "alarm",
        "active",
        "CW-MASTER-1",
    )
    assert float(a.detail["evidence"]["loss_pct"]) > 15
    assert (a.category, a.priority) == ("water", "high")
    _assert_ticket(a)
    assert _of(outcome, "building_balance", subject=f"building:{outcome.buildings['2']}") == []


def test_healthy_meters_raise_nothing(outcome: Outcome) -> None:
    # Spike included: the pack's minimum step (alarms/meter_pack.py SPIKE_MIN_STEP) keeps "> 3 × p95" from
    # firing on a healthy flat's busy hour, which it did in about one run in eight before it.
    judged = outcome.alarms
    healthy = {HEALTHY, *HEALTHY_B2}
    assert [a for a in judged if a.device in healthy] == [], _summary(outcome)
    # Nothing beyond what the scenarios explain: the leaking flat's three, one each for the others.
    expected = {
        (LEAKY, "vacant_flow"),
        (LEAKY, "night_leak"),
        (LEAKY, "continuous_flow"),
        (STUCK, "stuck"),
        (REPLACED, "reset_or_replacement"),
        ("CW-MASTER-1", "building_balance"),
    }
    assert sorted((a.device, a.anomaly) for a in judged) == sorted(expected), _summary(outcome)


def test_running_the_job_again_raises_nothing_new(outcome: Outcome) -> None:
    assert outcome.rerun == {"meters": True}
    assert outcome.raised_after_rerun == outcome.raised_first, _summary(outcome)
    periodic = [a for a in outcome.alarms if a.anomaly in {str(k) for k in PERIODIC}]
    assert sorted((a.anomaly, a.state) for a in periodic) == [
        ("building_balance", "active"),
        ("continuous_flow", "active"),
        ("night_leak", "active"),
        ("stuck", "active"),
    ], _summary(outcome)
