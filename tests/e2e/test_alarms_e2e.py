"""Equipment alarms end to end: telemetry → Mosquitto → ingest (alarm evaluation on) → alarms → tickets,
then the worker's clocks (SLA escalation, inspection rounds) driven with explicit times.

One throwaway database, broker and ingest process serve the whole module. The database holds the
sample estate (examples/estate.yaml, 绿苑 ``lvyuan``) with every rule pack installed, plus
``lvyuan-rounds``: a copy of the sample estate's power room and heat station (device codes prefixed
``RND-``) whose inspection schedules only the rounds test installs, so that test owns its windows
whatever the other tests published or the worker created.

Device times are laid out so the tests cannot trip over each other: the evaluator ignores a reading
older than its point's newest stored sample, so the simulator replays 3 h ago, the crafted
threshold readings follow 2 h ago (phase 1) and 50 min ago (phase 2), and the rounds test publishes
at the current time for its own devices (RND-TR2, driven through an alarm → critical escalation,
is the one transformer no other test touches).

Alarm tickets are keyed per episode: ``alarm:<rule id>:<subject>``, or ``alarm:<group>:device:<id>``
when the rule's ticket policy names a group (a transformer's three winding phases share one ticket).

Acceptance (issue): each threshold class of domain-defaults §2 raises the right alarm and ticket; an
SLA breach escalates at the right minute (the worker driven with a controllable clock); a missed
round raises its alarm.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from alarms.const import Direction, Severity
from alarms.install import install_rule_packs
from alarms.packs import DEFAULT_RULES, RuleSpec, build_rule
from alarms.round_defaults import LV_KINDS
from alarms.rounds import ROUND_MISSED_RULE, RoundStatus, evaluate_rounds, round_subject
from alarms.rules import ThresholdRule
from core.clock import reset_clock, set_clock
from facility.importer import import_estate
from protocol.estate_file import EstateFile, load_estate_file
from protocol.topics import uplink
from simulators import run_simulation
from steward.broker import MosquittoProcess, mosquitto_binary
from storage.db import make_sessionmaker
from storage.migrate import upgrade
from storage.models import Ticket, TicketEvent
from tests.support.ingest_process import IngestProcess
from tests.support.postgres import create_database, drop_database
from tests.support.publisher import OraclePublisher
from tickets.from_alarms import DEFAULT_PRIORITY, SEVERITY_RANK
from tickets.sla import DEFAULT_POLICY, due_times
from worker.jobs import default_jobs, on_raised_hook
from worker.runner import Worker

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
ESTATE_FILE = ROOT / "examples" / "estate.yaml"
ESTATE = "lvyuan"
TZ = ZoneInfo("Asia/Shanghai")
OVERHEAT_TARGET = "TR1"  # the transformer the simulator's fault scenario heats; the threshold test leaves it alone
ROUNDS_ESTATE = "lvyuan-rounds"
ROUNDS_PREFIX = "RND-"
ROUNDS_ROOMS = ("PR1", "HS1")
WAIT_S = 20.0

T = TypeVar("T")


# --- module stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    url: str
    engine: Engine
    broker: MosquittoProcess
    ingest: IngestProcess
    tmp: Path
    nominal: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, metric) → nominal


def _require_mosquitto() -> None:
    if mosquitto_binary() is None:
        if os.environ.get("STEWARD_REQUIRE_MOSQUITTO", "") not in ("", "0", "false"):
            pytest.fail("STEWARD_REQUIRE_MOSQUITTO=1 but no mosquitto binary is on PATH")
        pytest.skip("no mosquitto binary on PATH")


def _extra_equipment(doc: dict[str, Any]) -> dict[str, Any]:
    """The sample estate again (an import updates in place) plus an ONAN transformer (the sump pit is in it now)."""
    extra = {
        "PR1": {
            "code": "TR9",
            "kind": "oil_immersed_transformer",
            "name": "9#油浸式变压器（箱变）",
            "expected_interval_s": 30,
            "points": [{"metric": "top_oil_temp_c", "unit": "°C", "nominal": 55}],
        },
    }
    rooms = [
        {**room, "devices": [*room["devices"], extra[room["code"]]]} if room["code"] in extra else room
        for room in doc["rooms"]
    ]
    return {**doc, "rooms": rooms}


def _rounds_estate(doc: dict[str, Any]) -> dict[str, Any]:
    """The sample estate's power room and heat station under another estate code, device codes prefixed."""
    rooms = []
    for room in doc["rooms"]:
        if room["code"] in ROUNDS_ROOMS:
            room = copy.deepcopy(room)
            for device in room["devices"]:
                device["code"] = ROUNDS_PREFIX + device["code"]
            rooms.append(room)
    return {"estate": {**doc["estate"], "code": ROUNDS_ESTATE, "name": "绿苑小区（巡检测试）"}, "rooms": rooms}


@pytest.fixture(scope="module")
def stack(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_mosquitto()
    tmp = tmp_path_factory.mktemp("alarms-e2e")
    doc = yaml.safe_load(ESTATE_FILE.read_text(encoding="utf-8"))
    rounds_file = tmp / "rounds-estate.yaml"
    rounds_file.write_text(yaml.safe_dump(_rounds_estate(doc), allow_unicode=True), encoding="utf-8")
    nominal = {
        (prefix + d["code"], p["metric"]): float(p.get("nominal", 0))
        for room in doc["rooms"]
        for d in room["devices"]
        for p in d.get("points", ())
        for prefix in ("", ROUNDS_PREFIX)
    }

    url = create_database(pg_server_url)
    engine = create_engine(url)
    broker: MosquittoProcess | None = None
    ingest: IngestProcess | None = None
    try:
        upgrade(url)
        with Session(engine) as session, session.begin():
            import_estate(session, load_estate_file(ESTATE_FILE))
            # Equipment the sample estate lacks but the packs have rules for (a box-type substation's
            # oil-immersed transformer): imported into the same estate.
            import_estate(session, EstateFile.model_validate(_extra_equipment(doc)))
            install_rule_packs(session)  # schedules for lvyuan only: lvyuan-rounds is not imported yet
            import_estate(session, load_estate_file(rounds_file))
        broker = MosquittoProcess(tmp / "mosquitto")
        broker.start()
        ingest = IngestProcess(
            url, broker.url, tmp / "logs", client_id="ingest-alarms-e2e", STEWARD_ALARM_EVALUATION="1"
        )
        ingest.start()
        yield Stack(url, engine, broker, ingest, tmp, nominal)
    finally:
        if ingest is not None:
            ingest.stop()
        if broker is not None:
            broker.kill()
        engine.dispose()
        drop_database(pg_server_url, url)


# --- helpers -------------------------------------------------------------------------------------


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


@dataclass(frozen=True)
class Frame:
    device: str
    ts: datetime
    values: dict[str, float]
    estate: str = ESTATE


def _publish(stack: Stack, frames: list[Frame], client_id: str) -> None:
    """Telemetry frames (DESIGN §4 wire format, device time in +08:00) over MQTT QoS 1; every one acked."""
    items = []
    for f in frames:
        payload = {"v": 1, "ts": f.ts.astimezone(TZ).isoformat(), "values": f.values}
        key = f"{f.device}|{f.ts.isoformat()}"
        items.append((key, uplink(f.estate, f.device, "telemetry"), json.dumps(payload).encode()))
    pub = OraclePublisher("127.0.0.1", stack.broker.port, client_id=client_id)
    try:
        pub.publish_all(items)
        pub.drain(15)
    finally:
        pub.close()
    assert pub.log.acked == {k for k, _, _ in items}, "the broker did not acknowledge every frame"


def _wait_stored(stack: Stack, frames: list[Frame]) -> None:
    """Block until every value of every frame is a sample (the batch's alarms commit with it)."""
    codes = sorted({f.device for f in frames})
    ids = {
        (code, metric): pid
        for pid, code, metric in _rows(
            stack.engine,
            "SELECT p.id, d.code, p.metric FROM points p JOIN devices d ON d.id = p.device_id "
            "WHERE d.code = ANY(CAST(:c AS text[]))",
            c=codes,
        )
    }
    pids, tss = [], []
    for f in frames:
        for metric in f.values:
            pids.append(ids[(f.device, metric)])
            tss.append(f.ts)

    def probe() -> bool | None:
        [(n,)] = _rows(
            stack.engine,
            "SELECT count(*) FROM samples s JOIN unnest(CAST(:p AS int[]), CAST(:t AS timestamptz[])) AS k(p, t) "
            "ON s.point_id = k.p AND s.ts = k.t",
            p=pids,
            t=tss,
        )
        return True if n >= len(pids) else None

    _wait_for(f"{len(pids)} samples to be stored (ingest log: {stack.tmp / 'logs'})", probe)


class _Clock:
    """Drive core.clock (used by on_raised → tickets.received_at) at an explicit time."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __enter__(self) -> datetime:
        at = self.at
        set_clock(lambda: at)
        return at

    def __exit__(self, *exc: object) -> None:
        reset_clock()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --- 1. the simulator's fault scenario -----------------------------------------------------------


def test_transformer_overheat_scenario_opens_one_ticket(stack: Stack) -> None:
    """transformer_overheat_fast ramps TR1's windings 60 K/min past 130 → 155 → 170 °C: per winding one
    alarm episode ending critical, and exactly one open electrical ticket per episode key (one for the
    transformer under the winding group policy) with a 20 min on-site clock."""
    start = _now() - timedelta(hours=3)
    stats = run_simulation(
        ESTATE_FILE,
        "127.0.0.1",
        stack.broker.port,
        seed=11,
        speed=0,
        duration_s=600,
        start=start,
        scenarios=[f"transformer_overheat_fast:{OVERHEAT_TARGET}@30s"],
        client_id="sim-alarms-e2e",
    )
    assert stats.drained, stats
    [plan] = stats.plans
    assert (plan.name, plan.device) == ("transformer_overheat_fast", OVERHEAT_TARGET)
    telemetry = stats.frames.by_channel.get("telemetry", 0)
    meters = stats.frames.by_channel.get("meter", 0)
    assert telemetry > 0, stats.frames

    def stored() -> bool | None:
        [(frames, readings)] = _rows(
            stack.engine,
            "SELECT (SELECT count(*) FROM (SELECT DISTINCT p.device_id, s.ts FROM samples s "
            "JOIN points p ON p.id = s.point_id WHERE s.ts BETWEEN :a AND :b) x), "
            "(SELECT count(*) FROM meter_readings WHERE ts BETWEEN :a AND :b)",
            a=start,
            b=start + timedelta(seconds=600),
        )
        return True if frames >= telemetry and readings >= meters else None

    _wait_for(f"{telemetry} telemetry frames and {meters} meter readings to be stored", stored)

    # The ramp really crossed every level (the device's own samples).
    [(peak, crossed_warning)] = _rows(
        stack.engine,
        "SELECT max(s.value), bool_or(s.value > 130 AND s.value < 170) FROM samples s "
        "JOIN points p ON p.id = s.point_id JOIN devices d ON d.id = p.device_id "
        "WHERE d.code = :d AND p.metric LIKE 'winding_temp_%'",
        d=OVERHEAT_TARGET,
    )
    assert peak > 170, peak
    assert crossed_warning, "no sample between the warning and the critical level"

    alarms = _rows(
        stack.engine,
        "SELECT a.id, a.rule_id, r.code AS rule, a.subject, a.device_id, r.ticket_policy, a.severity, a.state, "
        "a.raised_at, a.peak, a.ticket_id FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
        "JOIN devices d ON d.id = a.device_id WHERE d.code = :d ORDER BY r.code, a.id",
        d=OVERHEAT_TARGET,
    )
    summary = [(a.rule, a.severity, a.state) for a in alarms]
    winding = sorted(f"dry_transformer.winding_temp_{ph}.high" for ph in "abc")
    assert [a.rule for a in alarms] == winding, summary  # one episode per winding, nothing else on TR1
    for a in alarms:
        assert (a.severity, a.state) == ("critical", "active"), summary
        assert a.peak > 170
        assert a.raised_at >= plan.onset
        assert a.ticket_id is not None, a

    # One open ticket per episode key: (rule, subject), or (group, device) when the rule's policy groups
    # rules (the three windings of one transformer are then a single job).
    keys = {a.id: _ticket_key(a.ticket_policy, a.rule_id, a.subject, a.device_id) for a in alarms}
    tickets = _rows(
        stack.engine,
        "SELECT t.id, t.source, t.source_key, t.category, t.priority, t.status, t.received_at, t.on_site_due_at, "
        "t.clock_kind, d.code AS device FROM tickets t LEFT JOIN devices d ON d.id = t.device_id "
        "WHERE t.source_key = ANY(CAST(:k AS text[])) AND t.status <> 'closed' ORDER BY t.id",
        k=sorted(set(keys.values())),
    )
    by_key = {t.source_key: t for t in tickets}
    assert len(tickets) == len(by_key) == len(set(keys.values())), (tickets, keys)
    events = _rows(
        stack.engine,
        "SELECT ticket_id, action, detail, at FROM ticket_events WHERE ticket_id = ANY(CAST(:t AS bigint[])) "
        "ORDER BY id",
        t=[t.id for t in tickets],
    )
    for a in alarms:
        t = by_key[keys[a.id]]
        assert t.id == a.ticket_id, (a, t)
        assert (t.source, t.category, t.status, t.device) == ("alarm", "electrical", "received", OVERHEAT_TARGET)
        # domain-defaults §4, platform table: critical is on site in 20 min; a ticket opened at 'alarm' (2 h)
        # and raised to critical by a later batch gets 20 min from the raise, if that is sooner.
        assert t.clock_kind == "critical", t
        critical = timedelta(minutes=DEFAULT_POLICY.critical_on_site_minutes)
        raised = [e.at for e in events if e.ticket_id == t.id and e.action == "priority_raised"]
        expected = t.received_at + critical
        if raised:
            expected = min(
                t.received_at + timedelta(minutes=DEFAULT_POLICY.alarm_on_site_minutes), raised[0] + critical
            )
        assert t.on_site_due_at == expected, (t, raised)
    opened = sorted(e.ticket_id for e in events if e.action == "opened")
    assert opened == sorted(t.id for t in tickets), events  # each ticket opened once
    # Every episode is on its ticket's timeline (the opener, the others attached).
    on_timeline = sorted(e.detail["alarm_id"] for e in events if e.action in ("opened", "alarm_attached"))
    assert on_timeline == sorted(a.id for a in alarms), events
    # Critical → urgent, whether the ticket opened at 'alarm' and was raised when the windings passed
    # 170 °C in a later batch, or opened at 'critical' because both readings shared a batch.
    for t in tickets:
        assert t.priority == DEFAULT_PRIORITY["critical"], t


def _ticket_key(policy: dict[str, Any] | None, rule_id: int, subject: str, device_id: int | None) -> str:
    """The documented episode key of an alarm ticket (tickets/from_alarms.py)."""
    group = (policy or {}).get("group")
    if isinstance(group, str) and group and device_id is not None:
        return f"alarm:{group}:device:{device_id}"
    return f"alarm:{rule_id}:{subject}"


# --- 2. one point per threshold class ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One DEFAULT_RULES threshold rule, the sample-estate point that exercises it and what to send."""

    spec: RuleSpec
    rule: ThresholdRule
    device: str
    point_id: int
    phase: int  # 1, or 2 when phase 1 already drove this point in the opposite direction
    value: float
    times: tuple[datetime, datetime]

    @property
    def severity(self) -> Severity:
        return self.rule.levels[-1][0]

    @property
    def min_severity(self) -> str:
        return str(self.spec.ticket_policy.get("min_severity", "alarm"))

    @property
    def opens_ticket(self) -> bool:
        return SEVERITY_RANK[str(self.severity)] >= SEVERITY_RANK[self.min_severity]


@dataclass
class ThresholdRun:
    cases: dict[str, Case]
    alarms: dict[tuple[int, int], list[Any]]  # (phase, point id) → alarm rows on the point after that phase
    tickets: dict[str, Any]  # source_key → ticket row
    received_window: tuple[datetime, datetime]


THRESHOLD_CODES = [s.code for s in DEFAULT_RULES if str(s.kind) == "threshold"]
# Product bugs found by this module: rule code → reason (each case xfails strictly).
KNOWN_BUGS: dict[str, str] = {}


def _beyond(rule: ThresholdRule, kind: str) -> float:
    """A value past the rule's highest configured level in its direction."""
    if kind == "state":
        return 1.0  # a state point is 0/1; every state rule fires on 1
    level = rule.levels[-1][1]
    margin = max(abs(level) * 0.05, 0.05)
    return level + margin if rule.direction is Direction.above else level - margin


def _plan_cases(engine: Engine, base: dict[int, datetime]) -> dict[str, Case]:
    points = _rows(
        engine,
        "SELECT p.id, p.metric, p.kind, d.code AS device, d.kind AS device_kind, r.kind AS room_kind "
        "FROM points p JOIN devices d ON d.id = p.device_id JOIN rooms r ON r.id = d.room_id "
        "JOIN estates e ON e.id = d.estate_id WHERE e.code = :e ORDER BY d.code, p.metric",
        e=ESTATE,
    )
    used: dict[int, set[int]] = {1: set(), 2: set()}
    cases: dict[str, Case] = {}
    for spec in DEFAULT_RULES:
        if spec.code not in THRESHOLD_CODES:
            continue
        rule = build_rule(spec.code, str(spec.kind), spec.params)
        assert isinstance(rule, ThresholdRule)
        candidates = [
            p
            for p in points
            if p.metric == spec.metric
            and spec.device_kind in (None, p.device_kind)
            and spec.room_kind in (None, p.room_kind)
            and p.device != OVERHEAT_TARGET
        ]
        assert candidates, f"{spec.code}: no point of the sample estate matches metric/device_kind/room_kind"
        phase, point = next((ph, p) for ph in (1, 2) for p in candidates if p.id not in used[ph])
        used[phase].add(point.id)
        t0 = base[phase]
        t1 = t0 + timedelta(seconds=rule.min_duration.total_seconds() + 1)
        cases[spec.code] = Case(spec, rule, point.device, point.id, phase, _beyond(rule, point.kind), (t0, t1))
    return cases


def _frames(cases: list[Case], metric_of: dict[str, str]) -> list[Frame]:
    by_key: dict[tuple[str, datetime], dict[str, float]] = {}
    for c in cases:
        for ts in c.times:
            by_key.setdefault((c.device, ts), {})[metric_of[c.spec.code]] = c.value
    return [Frame(device, ts, values) for (device, ts), values in sorted(by_key.items(), key=lambda kv: kv[0][1])]


_ALARMS_ON = (
    "SELECT a.id, a.rule_id, r.code AS rule, r.ticket_policy, a.subject, a.point_id, a.device_id, a.severity, "
    "a.state, a.raised_at, a.cleared_at, a.clear_reason, a.peak, a.ticket_id FROM alarms a "
    "JOIN alarm_rules r ON r.id = a.rule_id "
    "WHERE a.point_id = ANY(CAST(:p AS int[])) ORDER BY a.id"
)
_TICKETS = (
    "SELECT id, source, source_key, category, priority, status, received_at, on_site_due_at, device_id, clock_kind "
    "FROM tickets WHERE source = 'alarm'"
)


@pytest.fixture(scope="module")
def threshold_run(stack: Stack) -> ThresholdRun:
    """Publish crafted telemetry for one point per threshold rule, in two phases (phase 2 reuses a
    point in the opposite direction), and read back alarms and tickets after each phase."""
    now = _now()
    cases = _plan_cases(stack.engine, {1: now - timedelta(hours=2), 2: now - timedelta(minutes=50)})
    metric_of = {c.spec.code: c.spec.metric for c in cases.values()}
    alarms: dict[tuple[int, int], list[Any]] = {}
    received_from = datetime.now(UTC)
    for phase in (1, 2):
        batch = [c for c in cases.values() if c.phase == phase]
        frames = _frames(batch, metric_of)
        _publish(stack, frames, client_id=f"thresholds-phase-{phase}")
        _wait_stored(stack, frames)
        points = sorted({c.point_id for c in batch})
        for p in points:
            alarms[(phase, p)] = []
        for row in _rows(stack.engine, _ALARMS_ON, p=points):
            alarms[(phase, row.point_id)].append(row)
    received_to = datetime.now(UTC)
    tickets = {t.source_key: t for t in _rows(stack.engine, _TICKETS)}
    return ThresholdRun(cases, alarms, tickets, (received_from, received_to))


def test_threshold_plan_covers_every_rule(threshold_run: ThresholdRun) -> None:
    """Every threshold rule of the pack found a point in the sample estate; shared metrics use two phases."""
    assert sorted(threshold_run.cases) == sorted(THRESHOLD_CODES)
    phase2 = sorted(c.spec.code for c in threshold_run.cases.values() if c.phase == 2)
    assert phase2 == sorted(
        [
            "booster.outlet_pressure.high",
            "water_tank.level.low",
            "fire.pool_level.high",
            "hot_water.supply_temp.low",
        ]
    ), phase2


def test_pack_has_the_oil_immersed_top_oil_class() -> None:
    """A single-point threshold class of §2 with no default rule: nothing would raise for an ONAN transformer."""
    levels = {
        (s.params.get("warning"), s.params.get("alarm"), s.params.get("critical"))
        for s in DEFAULT_RULES
        if str(s.kind) == "threshold"
    }
    assert (80.0, 85.0, 95.0) in levels


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c])) if c in KNOWN_BUGS else c
        for c in THRESHOLD_CODES
    ],
)
def test_each_threshold_class_raises_the_right_alarm_and_ticket(threshold_run: ThresholdRun, code: str) -> None:
    case = threshold_run.cases[code]
    on_point = threshold_run.alarms[(case.phase, case.point_id)]
    summary = [(a.rule, a.severity, a.state) for a in on_point]
    mine = [a for a in on_point if a.rule == code]
    assert len(mine) == 1, f"{code} on {case.device}: expected one episode, got {summary}"
    [alarm] = mine
    assert (alarm.severity, alarm.state) == (str(case.severity), "active"), summary
    # Raised by the reading that completed the minimum duration (the first one when there is none).
    expected_raise = case.times[1] if case.rule.min_duration > timedelta(0) else case.times[0]
    assert alarm.raised_at == expected_raise, (alarm.raised_at, case.times)
    assert alarm.peak == pytest.approx(case.value)
    # The other rules on the same metric stay silent; in phase 2 the opposite direction's episode has ended.
    for other in on_point:
        if other.rule != code:
            assert case.phase == 2, summary
            assert (other.state, other.clear_reason) == ("cleared", "condition_ended"), summary

    key = _ticket_key(alarm.ticket_policy, alarm.rule_id, alarm.subject, alarm.device_id)
    ticket = threshold_run.tickets.get(key)
    if not case.opens_ticket:
        assert ticket is None, f"{code}: {case.severity} < {case.min_severity} yet ticket {ticket}"
        assert alarm.ticket_id is None
        return
    assert ticket is not None, f"{code}: {case.severity} ≥ {case.min_severity} but no ticket {key}"
    assert alarm.ticket_id == ticket.id
    category = str(case.spec.ticket_policy["category"])
    assert (ticket.source, ticket.category, ticket.priority, ticket.status) == (
        "alarm",
        category,
        DEFAULT_PRIORITY[str(case.severity)],
        "received",
    )
    lo, hi = threshold_run.received_window
    assert lo <= ticket.received_at <= hi  # clock.now() of the ingest batch, not the device time
    # domain-defaults §4, platform table: the row of the severity (critical 20 min, alarm 2 h, warning 24 h).
    assert ticket.clock_kind == str(case.severity)
    expected = due_times(category, ticket.priority, "alarm", ticket.received_at, clock_kind=ticket.clock_kind)
    assert ticket.on_site_due_at == expected.on_site


# --- 2b. an alarm that escalates to critical after its ticket opened ------------------------------

ESCALATING_DEVICE = ROUNDS_PREFIX + "TR2"  # a transformer nothing else in this module drives (HV: no LV round)


@pytest.fixture(scope="module")
def escalation_run(stack: Stack) -> tuple[Any, Any, list[Any]]:
    """RND-TR2 winding A: 160 °C (alarm band) in one batch, 175 °C (critical, trip) in the next.

    Returns the alarm, its ticket and the ticket's events."""
    now = _now()
    for ts, value in ((now - timedelta(minutes=10), 160.0), (now - timedelta(minutes=9), 175.0)):
        frames = [Frame(ESCALATING_DEVICE, ts, {"winding_temp_a_c": value}, ROUNDS_ESTATE)]
        _publish(stack, frames, client_id=f"escalate-{int(value)}")
        _wait_stored(stack, frames)  # its own ingest batch, committed before the next reading is sent
    [alarm] = _rows(
        stack.engine,
        "SELECT a.id, a.rule_id, r.code AS rule, r.ticket_policy, a.subject, a.device_id, a.severity, a.state, "
        "a.peak, a.ticket_id FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id JOIN devices d ON d.id = a.device_id "
        "WHERE d.code = :d",
        d=ESCALATING_DEVICE,
    )
    [ticket] = _rows(
        stack.engine,
        "SELECT id, source_key, category, priority, received_at, on_site_due_at, resolve_due_at FROM tickets "
        "WHERE source_key = :k",
        k=_ticket_key(alarm.ticket_policy, alarm.rule_id, alarm.subject, alarm.device_id),
    )
    events = _rows(
        stack.engine, "SELECT action, detail FROM ticket_events WHERE ticket_id = :t ORDER BY id", t=ticket.id
    )
    return alarm, ticket, events


def test_alarm_escalating_to_critical_keeps_one_episode_and_ticket(escalation_run: tuple[Any, Any, list[Any]]) -> None:
    alarm, ticket, events = escalation_run
    assert (alarm.rule, alarm.severity, alarm.state) == ("dry_transformer.winding_temp_a.high", "critical", "active")
    assert alarm.peak == pytest.approx(175.0)
    assert alarm.ticket_id == ticket.id
    assert ticket.category == "electrical"
    # The ticket opened while the episode was at 'alarm' (the first batch); going critical raised its priority.
    assert [(e.action, e.detail.get("severity")) for e in events] == [
        ("opened", "alarm"),
        ("priority_raised", "critical"),
    ]
    assert [e.detail.get("to") for e in events if e.action == "priority_raised"] == ["urgent"]


def test_escalated_critical_alarm_ticket_is_urgent(escalation_run: tuple[Any, Any, list[Any]]) -> None:
    _alarm, ticket, _events = escalation_run
    assert ticket.priority == "urgent"


# --- 3. SLA escalation ---------------------------------------------------------------------------


def _escalations(engine: Engine, ticket_id: int) -> tuple[int, list[dict[str, Any]]]:
    with Session(engine) as s:
        level = s.scalar(select(Ticket.escalation_level).where(Ticket.id == ticket_id))
        events = s.scalars(
            select(TicketEvent.detail)
            .where(TicketEvent.ticket_id == ticket_id, TicketEvent.action == "escalated")
            .order_by(TicketEvent.id)
        ).all()
    return int(level or 0), [dict(e) for e in events]


def test_sla_breach_escalates_at_the_right_minute(stack: Stack, threshold_run: ThresholdRun) -> None:
    """The power-room water-ingress ticket (critical → urgent, 20 min on site): the worker escalates it to
    the supervisor at the due minute, not a minute before, and to the project manager 30 min later."""
    case = threshold_run.cases["power_room.water_ingress"]
    [alarm] = [a for a in threshold_run.alarms[(case.phase, case.point_id)] if a.rule == case.spec.code]
    ticket = threshold_run.tickets[_ticket_key(alarm.ticket_policy, alarm.rule_id, alarm.subject, alarm.device_id)]
    window = timedelta(minutes=DEFAULT_POLICY.on_site_minutes_urgent)
    step = timedelta(minutes=DEFAULT_POLICY.escalation_step_minutes)
    assert ticket.priority == "urgent"
    due = ticket.received_at + window
    assert ticket.on_site_due_at == due

    worker = Worker(make_sessionmaker(stack.engine), default_jobs(on_raised=on_raised_hook()))

    def run(at: datetime) -> tuple[int, list[dict[str, Any]]]:
        with _Clock(at):
            ran = worker.run_once(at)
        assert ran["escalation"], ran
        assert not any(worker.failures.values()), f"worker jobs failed: {worker.failures}"
        return _escalations(stack.engine, ticket.id)

    assert run(due - timedelta(minutes=1)) == (0, [])

    level, events = run(due)
    assert level == 1
    assert [(e["clock"], e["level"], e["notify_role"]) for e in events] == [("on_site", 1, "supervisor")]
    assert datetime.fromisoformat(events[0]["due_at"]) == due
    assert datetime.fromisoformat(events[0]["breached_at"]) == due

    # The next minutes change nothing until the step is up.
    assert run(due + timedelta(minutes=1)) == (1, events)
    assert run(due + step - timedelta(minutes=1)) == (1, events)

    level, events = run(due + step)
    assert level == 2
    assert [(e["clock"], e["level"], e["notify_role"]) for e in events] == [
        ("on_site", 1, "supervisor"),
        ("on_site", 2, "manager"),
    ]
    assert datetime.fromisoformat(events[1]["breached_at"]) == due + step
    assert run(due + step + timedelta(minutes=1)) == (2, events)


# --- 4. inspection rounds ------------------------------------------------------------------------


def _schedules(engine: Engine) -> dict[tuple[str, str], int]:
    return {
        (room, code): sid
        for sid, room, code in _rows(
            engine,
            "SELECT s.id, rm.code, s.code FROM round_schedules s JOIN rooms rm ON rm.id = s.room_id "
            "JOIN estates e ON e.id = s.estate_id WHERE e.code = :e",
            e=ROUNDS_ESTATE,
        )
    }


def _round(engine: Engine, schedule_id: int, window_start: datetime | None = None) -> Any:
    rows = _rows(
        engine,
        "SELECT id, window_start, window_end, status, satisfied_by, evidence, ticket_id, alarm_id "
        "FROM inspection_rounds WHERE schedule_id = :s AND (CAST(:w AS timestamptz) IS NULL OR window_start = :w) "
        "ORDER BY window_start",
        s=schedule_id,
        w=window_start,
    )
    assert rows, f"no round of schedule {schedule_id}"
    return rows[0]


def _missed_alarms(engine: Engine, schedule_id: int) -> list[Any]:
    return _rows(
        engine,
        "SELECT a.id, a.severity, a.state, a.raised_at, a.ticket_id, a.detail FROM alarms a "
        "JOIN alarm_rules r ON r.id = a.rule_id WHERE r.code = :r AND a.subject = :s ORDER BY a.id",
        r=ROUND_MISSED_RULE,
        s=round_subject(schedule_id),
    )


def _evaluate(engine: Engine, at: datetime) -> Any:
    with _Clock(at), Session(engine) as session, session.begin():
        return evaluate_rounds(session, at, on_raised=on_raised_hook())


def test_missed_round_raises_its_alarm(stack: Stack) -> None:
    """lvyuan-rounds, current 2 h window: the power room's LV points all report in range through the broker →
    satisfied by telemetry; the heat station never reports → manual round ticket, then missed at the end of
    its grace period with one alarm on round:<schedule id>."""
    t0 = datetime.now(UTC)
    with _Clock(t0), Session(stack.engine) as session, session.begin():
        install_rule_packs(session)  # now lvyuan-rounds gets its schedules, anchored at local midnight
    schedules = _schedules(stack.engine)
    lv, hs = schedules[("PR1", "lv_2h")], schedules[("HS1", "station_2h")]
    [(anchor,)] = _rows(stack.engine, "SELECT anchor FROM round_schedules WHERE id = :s", s=hs)
    assert anchor.astimezone(TZ).time().isoformat() == "00:00:00"

    created = _evaluate(stack.engine, t0)  # first look: the round of the window containing t0
    assert created.created >= 2
    lv_round, hs_round = _round(stack.engine, lv), _round(stack.engine, hs)
    ws, we = lv_round.window_start, lv_round.window_end
    assert (hs_round.window_start, hs_round.window_end) == (ws, we)
    assert ws <= t0 < we
    assert we - ws == timedelta(hours=2)

    # Every required point of the LV round (LV incomers, capacitor cabinet, room environment) reports
    # one in-range value inside the window, through Mosquitto and ingest.
    required = _rows(
        stack.engine,
        "SELECT d.code AS device, p.metric FROM points p JOIN devices d ON d.id = p.device_id "
        "JOIN rooms rm ON rm.id = d.room_id JOIN estates e ON e.id = d.estate_id "
        "WHERE e.code = :e AND rm.code = 'PR1' AND d.kind = ANY(CAST(:k AS text[])) ORDER BY d.code, p.metric",
        e=ROUNDS_ESTATE,
        k=list(LV_KINDS),
    )
    ts = min(max(_now(), ws), we - timedelta(seconds=1))
    values: dict[str, dict[str, float]] = {}
    for r in required:
        values.setdefault(r.device, {})[r.metric] = stack.nominal[(r.device, r.metric)]
    frames = [Frame(device, ts, v, ROUNDS_ESTATE) for device, v in sorted(values.items())]
    _publish(stack, frames, client_id="rounds-lv")
    _wait_stored(stack, frames)

    # The window has ended: LV satisfied by telemetry, heat station needs a manual round (ticket).
    _evaluate(stack.engine, we + timedelta(minutes=1))
    lv_round = _round(stack.engine, lv, ws)
    assert (lv_round.status, lv_round.satisfied_by, lv_round.ticket_id) == (RoundStatus.satisfied, "telemetry", None)
    assert lv_round.evidence["required"] == lv_round.evidence["ok"] == len(required) > 0, lv_round.evidence
    hs_round = _round(stack.engine, hs, ws)
    assert hs_round.status == RoundStatus.manual_due
    assert {ev.get("reason") for ev in hs_round.evidence["points"].values()} == {"no_data"}, hs_round.evidence
    [ticket] = _rows(
        stack.engine,
        "SELECT id, source, source_key, category, priority, status FROM tickets WHERE id = :t",
        t=hs_round.ticket_id,
    )
    assert (ticket.source, ticket.source_key, ticket.category, ticket.status) == (
        "inspection",
        f"round:{hs_round.id}",
        "heating",
        "received",
    )
    assert _missed_alarms(stack.engine, hs) == []

    # Grace (30 min) not yet over: still due, no alarm.
    grace = timedelta(minutes=30)
    _evaluate(stack.engine, we + grace - timedelta(minutes=1))
    assert _round(stack.engine, hs, ws).status == RoundStatus.manual_due
    assert _missed_alarms(stack.engine, hs) == []

    # Grace over: missed, one alarm on the schedule, linked to the manual-round ticket.
    result = _evaluate(stack.engine, we + grace)
    assert result.alarms >= 1
    hs_round = _round(stack.engine, hs, ws)
    assert hs_round.status == RoundStatus.missed
    [missed] = _missed_alarms(stack.engine, hs)
    assert (missed.severity, missed.state, missed.raised_at) == ("alarm", "active", we + grace)
    assert missed.detail["round_id"] == hs_round.id
    assert hs_round.alarm_id == missed.id
    assert missed.ticket_id == ticket.id

    # Running again (the next minute) raises no second alarm; the satisfied LV schedule has none.
    _evaluate(stack.engine, we + grace + timedelta(minutes=1))
    assert [a.id for a in _missed_alarms(stack.engine, hs)] == [missed.id]
    assert _missed_alarms(stack.engine, lv) == []
    assert _round(stack.engine, lv, ws).status == RoundStatus.satisfied
