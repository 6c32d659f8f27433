"""Property test of the evaluator *with its database*: random readings with flapping, duplicates,
redeliveries and late data, cut into random batches, go through the ingest writer's sample insert and
the `AlarmEvaluator` hook (which opens tickets via `tickets.from_alarms`), one transaction per batch.

Checked after every batch:
- never more than one open alarm per (rule, subject), never more than one open ticket per source key;
- the alarm rows equal a simple reference model: the pure `rules.evaluate` replayed over the same
  batches (each batch in device-time order, as the evaluator applies it) from an always-stored state.
  The evaluator stores no state while idle and judges lateness from the samples table instead, so the
  two only agree if that shortcut is exact.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from alarms.evaluator import AlarmEvaluator
from alarms.packs import build_rule
from alarms.rules import Clear, Escalate, Raise, Reading, RuleState, UpdatePeak, evaluate
from facility.importer import import_estate
from ingest.decode import DecodedBatch
from protocol.estate_file import EstateFile
from tickets.from_alarms import open_for_alarms

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
METRIC = "prop_temp_c"
# Threshold with three levels, a clear band and a minimum duration; a repeat rule on the same point.
RULES = {
    "prop.threshold": (
        "threshold",
        {
            "direction": "above",
            "warning": 50.0,
            "alarm": 60.0,
            "critical": 70.0,
            "clear_band": 3.0,
            "min_duration_s": 60,
        },
    ),
    "prop.repeat": (
        "repeat",
        {"direction": "above", "level": 55.0, "count": 3, "severity": "alarm", "clear_band": 1.0},
    ),
}
VALUES = st.one_of(st.sampled_from([40.0, 47.0, 50.0, 50.5, 54.0, 55.5, 57.0, 60.5, 69.0, 71.0]), st.floats(30, 80))


@dataclass
class Episode:
    severity: str
    raised_at: datetime
    cleared_at: datetime | None
    peak: float | None


@pytest.fixture(scope="module")
def world(engine: Engine) -> tuple[Engine, dict[str, int], int]:
    code = f"prop-{uuid.uuid4().hex[:6]}"
    doc = EstateFile.model_validate(
        {
            "estate": {"code": code, "name": "性质测试"},
            "rooms": [
                {
                    "code": "PR1",
                    "name": "配电房",
                    "kind": "power_room",
                    "devices": [{"code": f"{code}-T1", "kind": "prop_sensor", "points": [{"metric": METRIC}]}],
                }
            ],
        }
    )
    with Session(engine) as s, s.begin():
        import_estate(s, doc)
    import json

    with engine.begin() as conn:
        rule_ids = {}
        for rule_code, (kind, params) in RULES.items():
            rule_ids[rule_code] = conn.execute(
                text(
                    "INSERT INTO alarm_rules (code, kind, metric, params, ticket_policy) "
                    "VALUES (:c, :k, :m, CAST(:p AS jsonb), CAST(:t AS jsonb)) "
                    "ON CONFLICT (code) DO UPDATE SET params = excluded.params RETURNING id"
                ),
                {
                    "c": rule_code,
                    "k": kind,
                    "m": METRIC,
                    "p": json.dumps(params),
                    "t": json.dumps({"min_severity": "warning", "category": "electrical"}),
                },
            ).scalar_one()
        point = conn.execute(
            text("SELECT p.id FROM points p JOIN devices d ON d.id = p.device_id WHERE d.code = :d"),
            {"d": f"{code}-T1"},
        ).scalar_one()
    return engine, rule_ids, point


@st.composite
def batches(draw: st.DrawFn) -> list[list[Reading]]:
    """Readings in arrival order with noise (duplicates, redeliveries, late), cut into 1–6 batches."""
    n = draw(st.integers(1, 30))
    arrivals: list[Reading] = []
    ts = T0
    for _ in range(n):
        ts += timedelta(seconds=draw(st.integers(1, 120)))
        arrivals.append(Reading(ts, draw(VALUES)))
        for kind in draw(st.lists(st.sampled_from(["duplicate", "redelivery", "late"]), max_size=2)):
            if kind == "duplicate":
                arrivals.append(Reading(draw(st.sampled_from(arrivals)).ts, draw(VALUES)))
            elif kind == "redelivery":
                arrivals.append(draw(st.sampled_from(arrivals)))
            else:
                arrivals.append(Reading(ts - timedelta(seconds=draw(st.integers(1, 600))), draw(VALUES)))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(arrivals) - 1), max_size=5)))) if len(arrivals) > 1 else []
    bounds = [0, *cuts, len(arrivals)]
    return [arrivals[a:b] for a, b in itertools.pairwise(bounds)]


def reference(rule_code: str, batches_: list[list[Reading]]) -> list[Episode]:
    kind, params = RULES[rule_code]
    rule = build_rule(rule_code, kind, params)
    state = RuleState()
    episodes: list[Episode] = []
    for batch in batches_:
        # The writer keeps the first value of a device ts; the evaluator sees the batch as sent.
        for r in sorted(batch, key=lambda r: r.ts):
            before = state
            state, transition = evaluate(rule, state, r)
            if state.last_ts == before.last_ts:
                continue
            match transition:
                case Raise():
                    episodes.append(Episode(str(transition.severity), transition.at, None, state.peak))
                case Clear():
                    episodes[-1].cleared_at = transition.at
                case Escalate():
                    episodes[-1].severity = str(transition.severity)
                    episodes[-1].peak = state.peak
                case UpdatePeak():
                    episodes[-1].peak = state.peak
    return episodes


def feed(conn: Connection, ev: AlarmEvaluator, point: int, readings: list[Reading]) -> None:
    b = DecodedBatch(
        sample_ts=[r.ts for r in readings],
        sample_point=[point] * len(readings),
        sample_value=[r.value for r in readings],
    )
    conn.execute(
        text(
            "INSERT INTO samples (ts, point_id, value) SELECT * FROM unnest(CAST(:t AS timestamptz[]), "
            "CAST(:p AS int[]), CAST(:v AS float8[])) ON CONFLICT DO NOTHING"
        ),
        {"t": b.sample_ts, "p": b.sample_point, "v": b.sample_value},
    )
    ev(conn, b, None)


def reset(conn: Connection, point: int) -> None:
    conn.execute(text("DELETE FROM tickets WHERE source_key LIKE :k"), {"k": f"alarm:%:point:{point}"})
    conn.execute(text("DELETE FROM alarms WHERE point_id = :p"), {"p": point})
    conn.execute(text("DELETE FROM alarm_states WHERE point_id = :p"), {"p": point})
    conn.execute(text("DELETE FROM samples WHERE point_id = :p"), {"p": point})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=batches())
def test_evaluator_with_database_matches_the_reference(
    world: tuple[Engine, dict[str, int], int], case: list[list[Reading]]
) -> None:
    engine, rule_ids, point = world
    with engine.begin() as conn:
        reset(conn, point)
    ev = AlarmEvaluator(on_raised=open_for_alarms)
    for batch in case:
        with engine.begin() as conn:
            feed(conn, ev, point, batch)
        with engine.connect() as conn:
            open_per_rule = conn.execute(
                text(
                    "SELECT rule_id, count(*) FROM alarms WHERE point_id = :p AND state <> 'cleared' GROUP BY rule_id"
                ),
                {"p": point},
            ).all()
            assert all(n == 1 for _, n in open_per_rule)
            open_tickets = conn.execute(
                text(
                    "SELECT source_key, count(*) FROM tickets WHERE source_key LIKE :k AND status <> 'closed' "
                    "GROUP BY source_key"
                ),
                {"k": f"alarm:%:point:{point}"},
            ).all()
            assert all(n == 1 for _, n in open_tickets)
    with engine.connect() as conn:
        for rule_code, rule_id in rule_ids.items():
            got = [
                Episode(sev, raised, cleared, peak)
                for sev, raised, cleared, peak in conn.execute(
                    text(
                        "SELECT severity, raised_at, cleared_at, peak FROM alarms WHERE rule_id = :r AND point_id = :p "
                        "ORDER BY raised_at, id"
                    ),
                    {"r": rule_id, "p": point},
                )
            ]
            assert got == reference(rule_code, case), rule_code
            # Every episode still open has its ticket (this rule's policy opens one from a warning up).
            unticketed = conn.execute(
                text(
                    "SELECT count(*) FROM alarms WHERE rule_id = :r AND point_id = :p AND state <> 'cleared' "
                    "AND ticket_id IS NULL"
                ),
                {"r": rule_id, "p": point},
            ).scalar_one()
            assert unticketed == 0
