"""Property test of the multi-point evaluator *with its database* (the point evaluator's exactly-once test,
extended to the multi-point rules): random frames of a device's points with flapping, duplicates (same ts,
other values), redeliveries and late frames, cut into random batches, go through the ingest writer's sample
insert and the `MultiPointEvaluator` hook (which opens tickets via `tickets.from_alarms`), one transaction
per batch.

Checked after every batch: never more than one open alarm per (rule, subject), never more than one open
ticket per source key. At the end the alarm rows equal a reference model: the pure `multipoint.apply`
replayed over the same batches (each batch grouped by device ts, first arrival of a (point, ts) winning,
in ts order) from an always-stored state.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from alarms.multipoint import MultiState, apply, bind, build_multipoint
from alarms.multipoint_evaluator import MultiPointEvaluator
from alarms.rules import Clear, Raise, UpdatePeak
from facility.importer import import_estate
from ingest.decode import DecodedBatch
from protocol.estate_file import EstateFile
from tickets.from_alarms import open_for_alarms

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
METRICS = ("p1_running", "p2_running", "ia", "ib", "ic", "fault", "sig")
# Small levels and windows so short random runs cross them often.
RULES = {
    "prop.mp.all_running": {
        "check": "all_running",
        "roles": {"running": r"p\d_running"},
        "severity": "alarm",
        "min_duration_s": 60,
    },
    "prop.mp.starts": {
        "check": "starts",
        "roles": {"pump": "p1_running"},
        "severity": "warning",
        "level": 2,
        "window_s": 600,
    },
    "prop.mp.low_difference": {
        "check": "low_difference",
        "roles": {"hi": "ia", "lo": "ib"},
        "severity": "warning",
        "level": 50,
        "clear_band": 20,
        "min_duration_s": 120,
    },
    "prop.mp.standby_failed": {
        "check": "standby_failed",
        "roles": {"fault": "fault", "running": r"p\d_running"},
        "severity": "alarm",
        "min_duration_s": 30,
    },
    "prop.mp.without_signal": {
        "check": "without_signal",
        "roles": {"running": "p1_running", "signal": "sig"},
        "severity": "critical",
    },
    # Weather compensation: ia is the supply, ib the outdoor temperature (an estate role, here on the device).
    "prop.mp.above_curve": {
        "check": "above_curve",
        "roles": {"supply": "ia", "outdoor": "ib"},
        "severity": "warning",
        "curve": [[0, 700], [1000, 500]],
        "level": 50,
        "clear_band": 20,
        "min_duration_s": 60,
    },
    "prop.mp.above_cap": {
        "check": "above_cap",
        "roles": {"supply": "ic"},
        "severity": "alarm",
        "level": 800,
        "clear_band": 50,
        "min_duration_s": 60,
    },
    "prop.mp.imbalance": {
        "check": "imbalance",
        "roles": {"a": "ia", "b": "ib", "c": "ic"},
        "severity": "warning",
        "level": 25,
        "clear_band": 5,
        "min_duration_s": 60,
        "min_current": 10,
    },
}
STATE = st.sampled_from([0.0, 1.0])
CURRENT = st.sampled_from([0.0, 600.0, 640.0, 700.0, 900.0, 1000.0])


@dataclass
class Episode:
    severity: str
    raised_at: datetime
    cleared_at: datetime | None
    peak: float | None


Frame = tuple[datetime, dict[str, float]]


@pytest.fixture(scope="module")
def world(engine: Engine) -> tuple[Engine, dict[str, int], dict[str, int], int]:
    code = f"mprop-{uuid.uuid4().hex[:6]}"
    kind = f"prop_mp_{uuid.uuid4().hex[:6]}"  # a device kind of this module only: the rules bind nothing else
    doc = EstateFile.model_validate(
        {
            "estate": {"code": code, "name": "多点性质测试"},
            "rooms": [
                {
                    "code": "PUMP1",
                    "name": "泵房",
                    "kind": "pump_room",
                    "devices": [{"code": f"{code}-D1", "kind": kind, "points": [{"metric": m} for m in METRICS]}],
                }
            ],
        }
    )
    with Session(engine) as s, s.begin():
        import_estate(s, doc)
    with engine.begin() as conn:
        rule_ids = {}
        for rule_code, params in RULES.items():
            rule_ids[rule_code] = conn.execute(
                text(
                    "INSERT INTO alarm_rules (code, kind, metric, device_kind, params, ticket_policy) "
                    "VALUES (:c, 'composite', :m, :dk, CAST(:p AS jsonb), CAST(:t AS jsonb)) "
                    "ON CONFLICT (code) DO UPDATE SET params = excluded.params, device_kind = excluded.device_kind "
                    "RETURNING id"
                ),
                {
                    "c": rule_code,
                    "m": "p1_running",
                    "dk": kind,
                    "p": json.dumps(params),
                    "t": json.dumps({"min_severity": "warning", "category": "water"}),
                },
            ).scalar_one()
        points: dict[str, int] = dict(
            conn.execute(
                text("SELECT p.metric, p.id FROM points p JOIN devices d ON d.id = p.device_id WHERE d.code = :d"),
                {"d": f"{code}-D1"},
            ).all()
        )
        device = conn.execute(text("SELECT id FROM devices WHERE code = :d"), {"d": f"{code}-D1"}).scalar_one()
    return engine, rule_ids, points, device


@st.composite
def values(draw: st.DrawFn) -> dict[str, float]:
    chosen = draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=len(METRICS), unique=True))
    return {m: draw(CURRENT if m.startswith("i") else STATE) for m in chosen}


@st.composite
def batches(draw: st.DrawFn) -> list[list[Frame]]:
    """Frames in arrival order with noise (duplicates, redeliveries, late), cut into 1–6 batches."""
    n = draw(st.integers(1, 30))
    arrivals: list[Frame] = []
    ts = T0
    for _ in range(n):
        ts += timedelta(seconds=draw(st.integers(1, 120)))
        arrivals.append((ts, draw(values())))
        for kind in draw(st.lists(st.sampled_from(["duplicate", "redelivery", "late"]), max_size=2)):
            if kind == "duplicate":
                arrivals.append((draw(st.sampled_from(arrivals))[0], draw(values())))
            elif kind == "redelivery":
                arrivals.append(draw(st.sampled_from(arrivals)))
            else:
                arrivals.append((ts - timedelta(seconds=draw(st.integers(1, 600))), draw(values())))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(arrivals) - 1), max_size=5)))) if len(arrivals) > 1 else []
    bounds = [0, *cuts, len(arrivals)]
    return [arrivals[a:b] for a, b in itertools.pairwise(bounds)]


def reference(rule_code: str, points: dict[str, int], batches_: list[list[Frame]]) -> list[Episode]:
    rule = build_multipoint(rule_code, RULES[rule_code])
    binding = bind(rule, points)
    state = MultiState()
    episodes: list[Episode] = []
    for batch in batches_:
        by_ts: dict[datetime, dict[int, float]] = {}
        for ts, vals in batch:
            for m, v in vals.items():
                by_ts.setdefault(ts, {}).setdefault(points[m], v)
        for ts in sorted(by_ts):
            state, transition = apply(rule, binding, state, ts, by_ts[ts])
            match transition:
                case Raise():
                    episodes.append(Episode(str(transition.severity), transition.at, None, transition.value))
                case Clear():
                    episodes[-1].cleared_at = transition.at
                case UpdatePeak():
                    episodes[-1].peak = transition.value
    return episodes


def feed(conn: Connection, ev: MultiPointEvaluator, points: dict[str, int], frames: list[Frame]) -> None:
    b = DecodedBatch(
        sample_ts=[ts for ts, vals in frames for _ in vals],
        sample_point=[points[m] for _, vals in frames for m in vals],
        sample_value=[v for _, vals in frames for v in vals.values()],
    )
    conn.execute(
        text(
            "INSERT INTO samples (ts, point_id, value) SELECT * FROM unnest(CAST(:t AS timestamptz[]), "
            "CAST(:p AS int[]), CAST(:v AS float8[])) ON CONFLICT DO NOTHING"
        ),
        {"t": b.sample_ts, "p": b.sample_point, "v": b.sample_value},
    )
    ev(conn, b, None)


def reset(conn: Connection, points: dict[str, int], device: int) -> None:
    conn.execute(text("DELETE FROM tickets WHERE source_key LIKE :k"), {"k": f"alarm:%:device:{device}"})
    conn.execute(text("DELETE FROM alarms WHERE device_id = :d"), {"d": device})
    conn.execute(text("DELETE FROM alarm_states WHERE point_id = ANY(CAST(:p AS int[]))"), {"p": list(points.values())})
    conn.execute(text("DELETE FROM samples WHERE point_id = ANY(CAST(:p AS int[]))"), {"p": list(points.values())})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=batches())
def test_multipoint_evaluator_with_database_matches_the_reference(
    world: tuple[Engine, dict[str, int], dict[str, int], int], case: list[list[Frame]]
) -> None:
    engine, rule_ids, points, device = world
    with engine.begin() as conn:
        reset(conn, points, device)
    ev = MultiPointEvaluator(on_raised=open_for_alarms)
    for batch in case:
        with engine.begin() as conn:
            feed(conn, ev, points, batch)
        with engine.connect() as conn:
            open_per_rule = conn.execute(
                text(
                    "SELECT rule_id, subject, count(*) FROM alarms WHERE device_id = :d AND state <> 'cleared' "
                    "GROUP BY rule_id, subject"
                ),
                {"d": device},
            ).all()
            assert all(n == 1 for *_, n in open_per_rule)
            open_tickets = conn.execute(
                text(
                    "SELECT source_key, count(*) FROM tickets WHERE source_key LIKE :k AND status <> 'closed' "
                    "GROUP BY source_key"
                ),
                {"k": f"alarm:%:device:{device}"},
            ).all()
            assert all(n == 1 for _, n in open_tickets)
    with engine.connect() as conn:
        for rule_code, rule_id in rule_ids.items():
            got = [
                Episode(sev, raised, cleared, peak)
                for sev, raised, cleared, peak in conn.execute(
                    text(
                        "SELECT severity, raised_at, cleared_at, peak FROM alarms "
                        "WHERE rule_id = :r AND device_id = :d ORDER BY raised_at, id"
                    ),
                    {"r": rule_id, "d": device},
                )
            ]
            assert got == reference(rule_code, points, case), rule_code
            unticketed = conn.execute(
                text(
                    "SELECT count(*) FROM alarms WHERE rule_id = :r AND device_id = :d AND state <> 'cleared' "
                    "AND ticket_id IS NULL"
                ),
                {"r": rule_id, "d": device},
            ).scalar_one()
            assert unticketed == 0


def test_a_fixed_run_raises_every_rule_once_and_a_full_redelivery_raises_nothing(
    world: tuple[Engine, dict[str, int], dict[str, int], int],
) -> None:
    """The property above, on a run known to cross every rule (so the comparison is not vacuous), then the
    whole run delivered again in reverse: same alarms, same tickets."""
    engine, rule_ids, points, device = world
    frames: list[Frame] = []
    # 30 s apart: p1 on 150 s in every 240 s, p2 on from 4 min, a fault signal throughout, never a fire
    # signal, phase C at 900 A from 5 min (above the 800 cap), A − B = 30 (< 50) throughout, A (640) above
    # the curve at B (578 + 50).
    for k in range(40):
        on = 1.0 if k % 8 < 5 else 0.0
        frames.append(
            (
                T0 + timedelta(seconds=30 * k),
                {
                    "fault": 1.0,
                    "sig": 0.0,
                    "p1_running": on,
                    "p2_running": 1.0 if k >= 8 else 0.0,
                    "ia": 640.0,
                    "ib": 610.0,
                    "ic": 900.0 if k >= 10 else 650.0,
                },
            )
        )
    case = [frames[:15], frames[15:]]
    with engine.begin() as conn:
        reset(conn, points, device)
    ev = MultiPointEvaluator(on_raised=open_for_alarms)
    for batch in case:
        with engine.begin() as conn:
            feed(conn, ev, points, batch)

    def snapshot() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT a.rule_id, a.severity, a.raised_at, a.cleared_at, a.peak, t.number FROM alarms a "
                        "LEFT JOIN tickets t ON t.id = a.ticket_id WHERE a.device_id = :d ORDER BY a.id"
                    ),
                    {"d": device},
                )
            ]

    before = snapshot()
    for rule_code, rule_id in rule_ids.items():
        expected = reference(rule_code, points, case)
        assert len(expected) >= 1, rule_code
        assert [(r[1], r[2], r[3], r[4]) for r in before if r[0] == rule_id] == [
            (e.severity, e.raised_at, e.cleared_at, e.peak) for e in expected
        ], rule_code
    assert all(r[5] is not None for r in before if r[3] is None)  # every open episode has its ticket
    for batch in reversed(case):
        with engine.begin() as conn:
            feed(conn, ev, points, list(reversed(batch)))
    assert snapshot() == before
