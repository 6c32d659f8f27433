"""alarms/alarm_state.py against PostgreSQL: open alarms per point, device, room and estate, the limit a value
crossed, the banner's alarms and change mark; alarms/banner_prefs.py. Each test runs in a rolled-back session."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from alarms import store
from alarms.alarm_state import alarm_states, banner_alarms, banner_mark, point_limits, severities_from
from alarms.banner_prefs import BannerPrefs, banner_prefs, set_banner_prefs
from alarms.store import NewAlarm, insert_alarms
from storage.models import AlarmRuleOverride, Point
from tests.support.world import T0, Place, make_estate, make_rule, make_staff

LEVELS = {"direction": "above", "warning": 130.0, "alarm": 155.0, "critical": 170.0, "clear_band": 5.0}


def _points(session: Session, place: Place) -> tuple[int, int, int]:
    made = [
        Point(device_id=place.sensor_id, metric="winding_temp_a_c", unit="°C", label="A相绕组温度"),
        Point(device_id=place.sensor_id, metric="winding_temp_b_c", unit="°C", label="B相绕组温度"),
        Point(device_id=place.plain_meter_id, metric="flow_m3h", unit="m3/h", label="流量"),
    ]
    session.add_all(made)
    session.flush()
    return made[0].id, made[1].id, made[2].id


def _open(
    session: Session,
    rule: int,
    place: Place,
    point: int | None,
    device: int,
    severity: str,
    minutes: int,
    *,
    room: bool = True,
    cleared: bool = False,
) -> int:
    [alarm_id] = insert_alarms(
        session.connection(),
        [
            NewAlarm(
                rule_id=rule,
                subject=f"point:{point}" if point else f"device:{device}",
                estate_id=place.estate_id,
                severity=severity,
                raised_at=T0 + timedelta(minutes=minutes),
                point_id=point,
                device_id=device,
                room_id=place.room_id if room else None,
                last_value=172.2,
                cleared_at=T0 + timedelta(minutes=minutes + 1) if cleared else None,
            )
        ],
    )
    return alarm_id


@pytest.fixture
def world(session: Session) -> tuple[Place, dict[str, int], dict[str, int]]:
    """An estate with a room sensor (two points) and a unit meter (one point), and alarms on them:

    - point A: critical (T0+10, unacknowledged) and warning (T0+1, acknowledged), two rules;
    - point B: alarm (T0+5, unacknowledged) and a cleared critical that no longer counts;
    - the unit meter (no room): warning (T0+2, unacknowledged) on its device."""
    place = make_estate(session)
    a, b, flow = _points(session, place)
    rules = {
        "a": make_rule(session, params=LEVELS, title_zh="A相绕组温度高"),
        "a_rate": make_rule(session, kind="rate_of_change", params={}, title_zh="A相温升过快"),
        "b": make_rule(session, metric="winding_temp_b_c", params=LEVELS, title_zh="B相绕组温度高"),
        "meter": make_rule(session, kind="meter", metric="flow_m3h", params={}, title_zh="表计异常"),
    }
    ids = {
        "a_crit": _open(session, rules["a"], place, a, place.sensor_id, "critical", 10),
        "a_warn": _open(session, rules["a_rate"], place, a, place.sensor_id, "warning", 1),
        "b_alarm": _open(session, rules["b"], place, b, place.sensor_id, "alarm", 5),
        "b_old": _open(session, rules["b"], place, b, place.sensor_id, "critical", -60, cleared=True),
        "meter": _open(session, rules["meter"], place, None, place.plain_meter_id, "warning", 2, room=False),
    }
    conn = session.connection()
    store.acknowledge(conn, ids["a_warn"], "zhang", T0 + timedelta(minutes=3))
    return place, rules, ids | {"point_a": a, "point_b": b, "point_flow": flow}


def test_open_alarms_roll_up_from_point_to_estate(session: Session, world: tuple[Place, dict, dict]) -> None:
    place, _rules, ids = world
    states = alarm_states(session, [place.estate_id])

    a = states.points[ids["point_a"]]
    assert (a.severity, a.count, a.unacknowledged) == ("critical", 2, 1)
    assert (a.oldest_id, a.oldest_at, a.oldest_title_zh) == (ids["a_crit"], T0 + timedelta(minutes=10), "A相绕组温度高")
    b = states.points[ids["point_b"]]
    assert (b.severity, b.count, b.unacknowledged, b.oldest_id) == ("alarm", 1, 1, ids["b_alarm"])
    assert ids["point_flow"] not in states.points  # the meter alarm is the device's, not a point's

    sensor = states.devices[place.sensor_id]
    assert (sensor.severity, sensor.count, sensor.unacknowledged) == ("critical", 3, 2)
    assert sensor.oldest_id == ids["b_alarm"]  # T0+5 before T0+10; the acknowledged T0+1 is not "unacknowledged"
    meter = states.devices[place.plain_meter_id]
    assert (meter.severity, meter.count, meter.oldest_title_zh) == ("warning", 1, "表计异常")

    room = states.rooms[place.room_id]
    assert (room.severity, room.count, room.unacknowledged) == ("critical", 3, 2)
    assert set(states.rooms) == {place.room_id}  # the meter is in a unit, not a room

    estate = states.estates[place.estate_id]
    assert (estate.severity, estate.count, estate.unacknowledged, estate.oldest_id) == ("critical", 4, 3, ids["meter"])


def test_cleared_and_acknowledged_alarms(session: Session, world: tuple[Place, dict, dict]) -> None:
    place, _, ids = world
    conn = session.connection()
    store.clear_manually(conn, ids["a_crit"], "zhang", T0 + timedelta(minutes=20), "传感器误报，已复核")
    store.acknowledge(conn, ids["b_alarm"], "zhang", T0 + timedelta(minutes=20))
    states = alarm_states(session, [place.estate_id])
    a = states.points[ids["point_a"]]
    assert (a.severity, a.count, a.unacknowledged, a.oldest_id, a.oldest_at) == ("warning", 1, 0, None, None)
    assert a.oldest_title_zh == ""
    assert states.devices[place.sensor_id].severity == "alarm"
    for alarm in ("a_warn", "b_alarm", "meter"):
        store.clear_manually(conn, ids[alarm], "zhang", T0 + timedelta(minutes=21), "已处理")
    assert alarm_states(session, [place.estate_id]) == type(states)()


def test_narrowed_to_devices_and_other_estates(session: Session, world: tuple[Place, dict, dict]) -> None:
    place, _, _ids = world
    only_meter = alarm_states(session, [place.estate_id], device_ids=[place.plain_meter_id])
    assert set(only_meter.devices) == {place.plain_meter_id}
    assert only_meter.points == {}
    assert alarm_states(session, [place.estate_id], device_ids=[]).estates == {}
    other = make_estate(session)
    assert alarm_states(session, [other.estate_id]).estates == {}
    assert alarm_states(session, []).estates == {}


def test_the_limit_beside_a_value_follows_severity_and_overrides(
    session: Session, world: tuple[Place, dict, dict]
) -> None:
    place, rules, ids = world
    limits = point_limits(session, [place.estate_id])
    # Point A: the critical threshold alarm's level (the rate-of-change alarm has no level to show).
    assert (limits[ids["point_a"]].op, limits[ids["point_a"]].level, limits[ids["point_a"]].severity) == (
        "≥",
        170.0,
        "critical",
    )
    assert limits[ids["point_b"]].level == 155.0
    assert set(limits) == {ids["point_a"], ids["point_b"]}

    # The evaluator's precedence: the device's override beats the room's, which beats the estate's.
    session.add_all(
        [
            AlarmRuleOverride(rule_id=rules["a"], scope="estate", scope_id=place.estate_id, params={"critical": 168}),
            AlarmRuleOverride(rule_id=rules["a"], scope="device", scope_id=place.sensor_id, params={"critical": 165}),
            AlarmRuleOverride(rule_id=rules["b"], scope="room", scope_id=place.room_id, params={"alarm": 150}),
        ]
    )
    session.flush()
    limits = point_limits(session, [place.estate_id], device_ids=[place.sensor_id])
    assert limits[ids["point_a"]].level == 165.0
    assert limits[ids["point_b"]].level == 150.0


def test_a_low_limit_and_a_level_the_rule_lacks(session: Session) -> None:
    place = make_estate(session)
    [p] = [Point(device_id=place.sensor_id, metric="outlet_pressure_mpa", unit="MPa", label="出口压力")]
    session.add(p)
    session.flush()
    below = make_rule(
        session, metric="outlet_pressure_mpa", params={"direction": "below", "warning": 0.30, "alarm": 0.25}
    )
    _open(session, below, place, p.id, place.sensor_id, "critical", 0)  # escalated past every configured level
    limit = point_limits(session, [place.estate_id])[p.id]
    assert (limit.op, limit.level) == ("≤", 0.25)
    repeat = make_rule(
        session,
        kind="repeat",
        metric="outlet_pressure_mpa",
        params={"direction": "below", "level": 0.2, "count": 3, "severity": "warning"},
    )
    session.execute(text("UPDATE alarms SET rule_id = :r WHERE point_id = :p"), {"r": repeat, "p": p.id})
    assert point_limits(session, [place.estate_id])[p.id].level == 0.2


def test_banner_alarms_and_their_mark(session: Session, world: tuple[Place, dict, dict]) -> None:
    place, _rules, ids = world
    visible = {place.estate_id}
    assert severities_from("alarm") == ["alarm", "critical"]
    rows, total = banner_alarms(session, visible, "alarm")
    assert [r.id for r in rows] == [ids["a_crit"], ids["b_alarm"]]  # worst first; warnings below the threshold
    assert total == 2
    first = rows[0]
    assert (first.point_label, first.unit, first.device_name, first.room_code) == (
        "A相绕组温度",
        "°C",
        "1号变压器",
        "PR1",
    )
    rows, total = banner_alarms(session, visible, "warning", limit=2)
    assert len(rows) == 2
    assert total == 3
    assert banner_alarms(session, set(), "alarm") == ([], 0)

    before = banner_mark(session, visible, "alarm")
    assert before[0] == 2
    store.acknowledge(session.connection(), ids["b_alarm"], "zhang", T0 + timedelta(minutes=30))
    acked = banner_mark(session, visible, "alarm")
    assert acked != before
    assert acked[0] == 1
    # An alarm that escalates inside the banner moves the mark though the count and the newest id stay.
    session.execute(text("UPDATE alarms SET severity = 'alarm' WHERE id = :id"), {"id": ids["meter"]})
    with_meter = banner_mark(session, visible, "alarm")
    session.execute(text("UPDATE alarms SET severity = 'critical' WHERE id = :id"), {"id": ids["meter"]})
    escalated = banner_mark(session, visible, "alarm")
    assert escalated[:2] == with_meter[:2]
    assert escalated != with_meter


def test_banner_prefs_default_and_stored(session: Session) -> None:
    place = make_estate(session)
    user = make_staff(session, place)
    assert banner_prefs(session, user) == BannerPrefs("alarm", False)
    assert set_banner_prefs(session, user, muted=True) == BannerPrefs("alarm", True)
    assert set_banner_prefs(session, user, min_severity="critical") == BannerPrefs("critical", True)
    assert banner_prefs(session, user) == BannerPrefs("critical", True)
    with pytest.raises(ValueError, match="loud"):
        set_banner_prefs(session, user, min_severity="loud")


def test_the_read_uses_the_open_alarm_index_among_years_of_history(session: Session) -> None:
    """30,000 cleared alarms and 40 open ones in an estate: the plan reads the partial index of open rows."""
    place = make_estate(session)
    rule = make_rule(session, params=LEVELS)
    session.execute(
        text(
            "INSERT INTO alarms (rule_id, subject, estate_id, severity, state, raised_at, cleared_at, device_id, "
            "detail) SELECT :r, 'device:' || g, :e, 'alarm', "
            "CASE WHEN g <= 40 THEN 'active' ELSE 'cleared' END, :t, "
            "CASE WHEN g <= 40 THEN NULL ELSE CAST(:t AS timestamptz) END, :d, CAST(:det AS jsonb) "
            "FROM generate_series(1, 30040) g"
        ),
        {"r": rule, "e": place.estate_id, "t": T0, "d": place.sensor_id, "det": json.dumps({})},
    )
    session.execute(text("ANALYZE alarms"))
    from alarms.alarm_state import _RANK_SQL, _STATES

    plan = session.execute(
        text("EXPLAIN (FORMAT JSON) " + _STATES.format(rank=_RANK_SQL, narrow="")), {"estates": [place.estate_id]}
    ).scalar_one()
    assert "ix_alarms_open_estate" in json.dumps(plan)
    assert alarm_states(session, [place.estate_id]).estates[place.estate_id].count == 40
