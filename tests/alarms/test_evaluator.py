"""The alarm evaluator against PostgreSQL: batches in, alarm rows and persisted rule state out.

No broker: most tests call the evaluator directly with a DecodedBatch on a connection in a
transaction (as the Pipeline does); one runs it as a real Pipeline hook. Each test gets an estate
of its own in the shared session database and only looks at its own points.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alarms.evaluator import AlarmEvaluator
from alarms.packs import DEFAULT_RULES, ensure_default_rules
from core import clock
from ingest.decode import DecodedBatch
from protocol.topics import uplink
from tests.ingest.conftest import frame, make_harness, raw
from tests.support.estate import load_small_estate, sensor_code

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
WINDING = "dry_transformer.winding_temp_a.high"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture(scope="module", autouse=True)
def default_rules(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_default_rules(session)


class Est:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.code = f"al-{uuid.uuid4().hex[:8]}"
        load_small_estate(engine, self.code, sensors=2, meters=0)

    def point(self, metric: str = "winding_temp_a_c", sensor: int = 0) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT p.id FROM points p JOIN devices d ON d.id = p.device_id "
                        "WHERE d.code = :c AND p.metric = :m"
                    ),
                    {"c": sensor_code(self.code, sensor), "m": metric},
                ).scalar_one()
            )

    def alarms(self, point: int) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT a.severity, a.state, a.peak, a.last_value, a.raised_at, a.cleared_at, r.code "
                        "FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id WHERE a.point_id = :p ORDER BY a.id"
                    ),
                    {"p": point},
                )
            )

    def state_rows(self, point: int) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM alarm_states WHERE point_id = :p"), {"p": point}).scalar_one()
            )

    def state(self, point: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    text(
                        "SELECT s.state FROM alarm_states s JOIN alarm_rules r ON r.id = s.rule_id "
                        "WHERE s.point_id = :p AND r.code = :c"
                    ),
                    {"p": point, "c": WINDING},
                ).scalar_one()
            )


@pytest.fixture
def est(engine: Engine) -> Est:
    return Est(engine)


def batch(point: int, *readings: tuple[datetime, float]) -> DecodedBatch:
    b = DecodedBatch()
    for ts, value in readings:
        b.sample_ts.append(ts)
        b.sample_point.append(point)
        b.sample_value.append(value)
    return b


def write_samples(conn: Connection, b: DecodedBatch) -> None:
    """What the ingest writer does before the hooks run: the evaluator judges lateness against it."""
    conn.execute(
        text(
            "INSERT INTO samples (ts, point_id, value) SELECT * FROM unnest(CAST(:t AS timestamptz[]), "
            "CAST(:p AS int[]), CAST(:v AS float8[])) ON CONFLICT DO NOTHING"
        ),
        {"t": b.sample_ts, "p": b.sample_point, "v": b.sample_value},
    )


def feed(ev: AlarmEvaluator, engine: Engine, b: DecodedBatch) -> None:
    with engine.begin() as conn:
        write_samples(conn, b)
        ev(conn, b, None)


def test_default_rules_are_idempotent(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_default_rules(session)
        ensure_default_rules(session)
        codes = session.execute(text("SELECT code FROM alarm_rules")).scalars().all()
    assert sorted(c for c in codes if c in {s.code for s in DEFAULT_RULES}) == sorted(s.code for s in DEFAULT_RULES)


def test_normal_readings_create_no_alarm(engine: Engine, est: Est) -> None:
    p = est.point()
    feed(AlarmEvaluator(), engine, batch(p, (at(0), 80.0), (at(1), 81.0)))
    assert est.alarms(p) == []
    assert est.state_rows(p) == 0  # an idle rule keeps no state row: a healthy point costs no writes


def test_state_row_lives_only_while_not_idle(engine: Engine, est: Est) -> None:
    p, ev = est.point(), AlarmEvaluator()
    feed(ev, engine, batch(p, (at(0), 135.0)))
    assert est.state(p)["active"] is True
    assert est.state(p)["last_ts"] == at(0).isoformat()
    feed(ev, engine, batch(p, (at(1), 100.0)))
    assert est.state_rows(p) == 0
    # The row is gone, yet a late crossing is still recognised as late (judged against the samples).
    feed(ev, engine, batch(p, (at(0.5), 150.0)))
    assert [a.state for a in est.alarms(p)] == ["cleared"]


def test_crossing_raises_one_alarm_and_staying_high_updates_peak(engine: Engine, est: Est) -> None:
    p, ev = est.point(), AlarmEvaluator()
    feed(ev, engine, batch(p, (at(0), 120.0), (at(1), 135.0), (at(2), 138.0)))
    [a] = est.alarms(p)
    assert (a.severity, a.state, a.peak, a.last_value, a.raised_at, a.code) == (
        "warning",
        "active",
        138.0,
        138.0,
        at(1),
        WINDING,
    )
    feed(ev, engine, batch(p, (at(3), 140.0), (at(4), 137.0)))
    [a] = est.alarms(p)
    assert (a.severity, a.state, a.peak, a.last_value) == ("warning", "active", 140.0, 137.0)


def test_crossing_to_critical_escalates_the_same_alarm(engine: Engine, est: Est) -> None:
    p, ev = est.point(), AlarmEvaluator()
    feed(ev, engine, batch(p, (at(0), 135.0)))
    feed(ev, engine, batch(p, (at(1), 160.0), (at(2), 175.0), (at(3), 150.0)))
    [a] = est.alarms(p)
    assert (a.severity, a.state, a.peak, a.last_value, a.raised_at) == ("critical", "active", 175.0, 150.0, at(0))


def test_unsorted_batch_is_evaluated_in_device_time_order(engine: Engine, est: Est) -> None:
    p = est.point()
    feed(AlarmEvaluator(), engine, batch(p, (at(2), 100.0), (at(0), 100.0), (at(1), 160.0)))
    [a] = est.alarms(p)  # raised at 1, cleared at 2 in the same batch
    assert (a.severity, a.state, a.raised_at, a.cleared_at) == ("alarm", "cleared", at(1), at(2))


def test_duplicate_and_late_readings_raise_nothing_new(engine: Engine, est: Est) -> None:
    p, ev = est.point(), AlarmEvaluator()
    first = batch(p, (at(0), 135.0), (at(1), 100.0))  # raise, then clear
    feed(ev, engine, first)
    assert [a.state for a in est.alarms(p)] == ["cleared"]
    feed(ev, engine, first)  # redelivered batch
    feed(ev, engine, batch(p, (at(0.5), 165.0), (at(1), 170.5)))  # late / same-ts different value
    assert [(a.severity, a.state) for a in est.alarms(p)] == [("warning", "cleared")]


def test_clear_band_then_new_crossing_opens_a_second_episode(engine: Engine, est: Est) -> None:
    p, ev = est.point(), AlarmEvaluator()
    feed(ev, engine, batch(p, (at(0), 135.0)))
    feed(ev, engine, batch(p, (at(1), 127.0)))  # below 130 but inside the 5 K band: still open
    assert [a.state for a in est.alarms(p)] == ["active"]
    feed(ev, engine, batch(p, (at(2), 124.0)))  # <= 125: clears
    [a] = est.alarms(p)
    assert (a.state, a.cleared_at, a.last_value, a.peak) == ("cleared", at(2), 124.0, 135.0)
    feed(ev, engine, batch(p, (at(3), 131.0)))
    alarms = est.alarms(p)
    assert [(x.state, x.raised_at) for x in alarms] == [("cleared", at(0)), ("active", at(3))]


def test_several_episodes_in_one_batch(engine: Engine, est: Est) -> None:
    p, ev = est.point(), AlarmEvaluator()
    feed(ev, engine, batch(p, (at(0), 135.0)))
    feed(ev, engine, batch(p, (at(1), 100.0), (at(2), 156.0), (at(3), 100.0), (at(4), 171.0)))
    alarms = est.alarms(p)
    assert [(a.severity, a.state, a.raised_at) for a in alarms] == [
        ("warning", "cleared", at(0)),
        ("alarm", "cleared", at(2)),
        ("critical", "active", at(4)),
    ]


def test_state_survives_a_restart(engine: Engine, est: Est) -> None:
    p = est.point()
    feed(AlarmEvaluator(), engine, batch(p, (at(0), 135.0)))
    restarted = AlarmEvaluator()
    feed(restarted, engine, batch(p, (at(0), 135.0), (at(1), 136.0)))  # redelivery plus a new reading
    [a] = est.alarms(p)
    assert (a.state, a.peak) == ("active", 136.0)
    feed(restarted, engine, batch(p, (at(2), 100.0)))
    assert [a.state for a in est.alarms(p)] == ["cleared"]


def _override(engine: Engine, est: Est, point: int, scope: str, **fields: Any) -> None:
    with engine.begin() as conn:
        ids = conn.execute(
            text(
                "SELECT d.id AS device, d.room_id AS room, d.estate_id AS estate FROM points p "
                "JOIN devices d ON d.id = p.device_id WHERE p.id = :p"
            ),
            {"p": point},
        ).one()
        conn.execute(
            text(
                "INSERT INTO alarm_rule_overrides (rule_id, scope, scope_id, params, enabled) "
                "SELECT id, :scope, :sid, CAST(:params AS jsonb), :enabled FROM alarm_rules WHERE code = :c"
            ),
            {
                "scope": scope,
                "sid": getattr(ids, scope),
                "params": json.dumps(fields.get("params", {})),
                "enabled": fields.get("enabled"),
                "c": WINDING,
            },
        )


def test_device_override_beats_estate_override(engine: Engine, est: Est) -> None:
    p, other = est.point(sensor=0), est.point(sensor=1)
    _override(engine, est, p, "estate", enabled=False)  # off for the whole estate ...
    _override(engine, est, p, "device", enabled=True, params={"warning": 90.0})  # ... back on, lower, for one device
    ev = AlarmEvaluator()
    feed(ev, engine, batch(p, (at(0), 95.0)))
    feed(ev, engine, batch(other, (at(0), 150.0)))
    assert [a.severity for a in est.alarms(p)] == ["warning"]
    assert est.alarms(other) == []


def test_database_allows_one_open_alarm_per_rule_and_point(engine: Engine, est: Est) -> None:
    p = est.point()
    feed(AlarmEvaluator(), engine, batch(p, (at(0), 135.0)))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alarms (rule_id, subject, point_id, device_id, estate_id, severity, state, raised_at) "
                "SELECT rule_id, subject, point_id, device_id, estate_id, 'alarm', 'acknowledged', now() FROM alarms "
                "WHERE point_id = :p"
            ),
            {"p": p},
        )


def test_parallel_transactions_do_not_open_two_alarms(engine: Engine, est: Est) -> None:
    p = est.point()
    b = batch(p, (at(0), 135.0), (at(1), 160.0))
    first, second = AlarmEvaluator(), AlarmEvaluator()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            feed(second, engine, b)  # a second ingest instance got the same batch
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with engine.connect() as conn:
        tx = conn.begin()
        write_samples(conn, b)
        first(conn, b, None)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the second transaction must wait for the first one's state lock"
        tx.commit()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert not errors
    [a] = est.alarms(p)
    assert (a.severity, a.state, a.peak) == ("alarm", "active", 160.0)


def test_pipeline_hook_raises_inside_the_batch_transaction(engine: Engine, est: Est) -> None:
    h = make_harness(engine)  # prepared after the estate was imported, so its registry knows it
    h.pipeline.hooks.append(AlarmEvaluator())
    topic = uplink(est.code, sensor_code(est.code, 0), "telemetry")
    # base 150: winding a/b/c = 150/151/152 (warning), load 153 (no rule), room 154 (critical)
    ts = clock.now().replace(microsecond=0) - timedelta(minutes=1)  # inside the accepted window
    assert h.commit([raw(topic, frame(ts, seq=1, base=150.0))])
    h.stop.set()
    assert [(a.severity, a.code) for a in est.alarms(est.point("winding_temp_a_c"))] == [("warning", WINDING)]
    assert [(a.severity, a.code) for a in est.alarms(est.point("room_temp_c"))] == [
        ("critical", "power_room.room_temp.high")
    ]
    assert est.alarms(est.point("load_pct")) == []
