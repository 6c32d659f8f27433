"""The alarm-state tests' own world (issue 15 §1-2): the sample estate with the default rules and one frame of
readings, in a database of its own, so that "no alarm anywhere" is a state these tests can assert and return
to (the shared dashboard world collects the ticket tests' transformer alarms).

``open_alarm`` opens an alarm the way the producers do (alarms.store); the browser test raises them through
ingest and the real evaluator instead. ``clear_everything`` closes every open alarm between tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from alarms.install import install_rule_packs
from alarms.store import NewAlarm, insert_alarms, point_subject
from core import clock
from tests.dashboards.support import Feeder, InProcessIngest
from tests.support.world import SampleWorld, build_sample_world

AlarmWorld = SampleWorld


@pytest.fixture(scope="session")
def alarm_world(pg_server_url: str) -> Iterator[AlarmWorld]:
    with build_sample_world(pg_server_url, prefix="steward_alst") as world:
        with Session(world.engine) as s, s.begin():
            install_rule_packs(s)
        # One frame of every room device near its nominal values: tiles with values, devices online.
        ingest = InProcessIngest(world.engine)
        ingest.send(Feeder(ingest, world.estate, world.nominal).frame())
        yield world


def open_alarm(
    world: AlarmWorld, device: str, metric: str, severity: str, value: float, *, ago: timedelta = timedelta(minutes=3)
) -> int:
    """An open alarm of the metric's default rule on the device's point, raised ``ago`` (committed)."""
    with world.engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT p.id AS point, d.id AS device, d.estate_id AS estate, d.room_id AS room, r.id AS rule "
                "FROM points p JOIN devices d ON d.id = p.device_id JOIN alarm_rules r ON r.metric = p.metric "
                "AND r.kind = 'threshold' WHERE d.code = :d AND p.metric = :m ORDER BY r.id LIMIT 1"
            ),
            {"d": device, "m": metric},
        ).one()
        [alarm_id] = insert_alarms(
            conn,
            [
                NewAlarm(
                    rule_id=row.rule,
                    subject=point_subject(row.point),
                    estate_id=row.estate,
                    severity=severity,
                    raised_at=clock.now() - ago,
                    point_id=row.point,
                    device_id=row.device,
                    room_id=row.room,
                    peak=value,
                    last_value=value,
                )
            ],
        )
        return int(alarm_id)


def clear_everything(engine: Engine) -> None:
    """Close every open alarm as "condition ended" and forget the evaluator's episodes."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE alarms SET state = 'cleared', cleared_at = now(), clear_reason = 'condition_ended' "
                "WHERE state <> 'cleared'"
            )
        )
        conn.execute(text("DELETE FROM alarm_states"))


def open_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM alarms WHERE state <> 'cleared'")).scalar_one())
