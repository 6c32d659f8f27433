"""The multi-point hook with its database: the fire-pump rule with a fire-signal point from another device of
the room, overrides, a manual clear, and the 未配置 report for a room without a signal point."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from alarms.multipoint_evaluator import MultiPointEvaluator, coverage
from alarms.multipoint_pack import (
    FIRE_NO_SIGNAL_RULE,
    JOCKEY_RULE,
    SUPPLY_CAP_RULE,
    SUPPLY_CURVE_RULE,
    ensure_multipoint_rules,
)
from alarms.queries import query_alarms
from alarms.rule_admin import resolve_scope, set_override
from alarms.store import clear_manually
from core.errors import InvalidInput
from dashboards.alarms_view import subject_label
from facility.importer import import_estate
from ingest.decode import DecodedBatch
from protocol.estate_file import EstateFile
from tickets.from_alarms import open_for_alarms

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


@dataclass
class Fire:
    engine: Engine
    estate: str
    points: dict[str, int]  # metric → point id (pump controller and panel)
    device: int
    bare_device: str  # a fire-pump controller in a room without a signal point


@pytest.fixture(scope="module")
def fire(engine: Engine) -> Fire:
    code = f"mpev-{uuid.uuid4().hex[:6]}"

    def room(rcode: str, with_panel: bool) -> dict[str, object]:
        devices: list[dict[str, object]] = [
            {
                "code": f"{code}-{rcode}-PUMPS",
                "kind": "fire_pump_controller",
                "points": [
                    {"metric": "fire_pump_running", "kind": "state"},
                    {"metric": "jockey_pump_running", "kind": "state"},
                ],
            }
        ]
        if with_panel:
            devices.append(
                {
                    "code": f"{code}-{rcode}-FAS",
                    "kind": "fire_alarm_panel",
                    "points": [{"metric": "fire_alarm_signal", "kind": "state"}],
                }
            )
        return {"code": rcode, "name": "消防泵房", "kind": "fire_pump_room", "devices": devices}

    doc = EstateFile.model_validate(
        {"estate": {"code": code, "name": "消防测试"}, "rooms": [room("FIRE1", True), room("FIRE2", False)]}
    )
    with Session(engine) as s, s.begin():
        import_estate(s, doc)
        ensure_multipoint_rules(s)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.metric, p.id, d.id FROM points p JOIN devices d ON d.id = p.device_id "
                "WHERE d.code = ANY(CAST(:c AS text[]))"
            ),
            {"c": [f"{code}-FIRE1-PUMPS", f"{code}-FIRE1-FAS"]},
        ).all()
        device = conn.execute(text("SELECT id FROM devices WHERE code = :c"), {"c": f"{code}-FIRE1-PUMPS"}).scalar_one()
    return Fire(engine, code, {m: p for m, p, _ in rows}, device, f"{code}-FIRE2-PUMPS")


def feed(f: Fire, ev: MultiPointEvaluator, frames: Sequence[tuple[int, Mapping[str, float]]]) -> None:
    b = DecodedBatch(
        sample_ts=[T0 + timedelta(seconds=s) for s, vals in frames for _ in vals],
        sample_point=[f.points[m] for _, vals in frames for m in vals],
        sample_value=[v for _, vals in frames for v in vals.values()],
    )
    with f.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO samples (ts, point_id, value) SELECT * FROM unnest(CAST(:t AS timestamptz[]), "
                "CAST(:p AS int[]), CAST(:v AS float8[])) ON CONFLICT DO NOTHING"
            ),
            {"t": b.sample_ts, "p": b.sample_point, "v": b.sample_value},
        )
        ev(conn, b, None)


def alarms(f: Fire, rule: str) -> list[tuple[str, str, datetime, datetime | None, int | None]]:
    with f.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT a.severity, a.state, a.raised_at, a.cleared_at, a.ticket_id FROM alarms a "
                    "JOIN alarm_rules r ON r.id = a.rule_id WHERE r.code = :r AND a.device_id = :d ORDER BY a.id"
                ),
                {"r": rule, "d": f.device},
            )
        ]


def test_fire_pump_rule_is_configured_only_where_a_signal_point_exists(fire: Fire) -> None:
    with fire.engine.connect() as conn:
        cov = {
            c["device"]: c for c in coverage(conn) if c["estate"] == fire.estate and c["rule"] == FIRE_NO_SIGNAL_RULE
        }
    assert cov[f"{fire.estate}-FIRE1-PUMPS"]["configured"] is True
    assert (cov[fire.bare_device]["status_zh"], cov[fire.bare_device]["missing"]) == ("未配置", ["signal"])


def test_fire_pump_running_without_the_panels_signal_is_critical_once(fire: Fire) -> None:
    ev = MultiPointEvaluator(on_raised=open_for_alarms)
    s, run, quiet = "fire_alarm_signal", "fire_pump_running", "jockey_pump_running"
    # A fire: the panel signals and the pump runs → nothing.
    feed(fire, ev, [(0, {run: 0, s: 0, quiet: 0}), (30, {run: 1, s: 1, quiet: 0}), (60, {run: 0, s: 0, quiet: 0})])
    assert alarms(fire, FIRE_NO_SIGNAL_RULE) == []
    # The pump starts with no signal → one critical alarm with an urgent ticket; redelivery adds nothing.
    batch = [(90, {run: 1, s: 0, quiet: 0}), (120, {run: 1, s: 0, quiet: 0})]
    feed(fire, ev, batch)
    feed(fire, ev, batch)
    [(sev, state, raised, cleared, ticket)] = alarms(fire, FIRE_NO_SIGNAL_RULE)
    assert (sev, state, raised, cleared) == ("critical", "active", T0 + timedelta(seconds=90), None)
    assert ticket is not None
    with fire.engine.connect() as conn:
        assert conn.execute(text("SELECT priority FROM tickets WHERE id = :t"), {"t": ticket}).scalar_one() == "urgent"
    # The alarm list names the check, not the anchor point the state hangs on.
    with Session(fire.engine) as session:
        estate_id = session.execute(text("SELECT id FROM estates WHERE code = :c"), {"c": fire.estate}).scalar_one()
        [row] = [r for r in query_alarms(session, {estate_id})[0] if r.rule_code == FIRE_NO_SIGNAL_RULE]
    assert row.metric is None
    assert subject_label(row.subject, row.detail, "zh") == "消防主泵运行 / 火警信号"
    # Handled by hand while the pump still runs: the state goes with it, the next reading raises afresh.
    with fire.engine.begin() as conn:
        [(alarm_id,)] = conn.execute(
            text("SELECT id FROM alarms WHERE ticket_id = :t AND state <> 'cleared'"), {"t": ticket}
        ).all()
        clear_manually(conn, alarm_id, "zhao", T0 + timedelta(seconds=130), "消防检测，已通知维保单位")
    feed(fire, ev, [(150, {run: 1, s: 0, quiet: 0})])
    feed(fire, ev, [(180, {run: 0, s: 0, quiet: 0})])
    got = alarms(fire, FIRE_NO_SIGNAL_RULE)
    assert [(a[1], a[2], a[3]) for a in got] == [
        ("cleared", T0 + timedelta(seconds=90), T0 + timedelta(seconds=130)),
        ("cleared", T0 + timedelta(seconds=150), T0 + timedelta(seconds=180)),
    ]


def test_a_device_override_can_switch_a_rule_off_and_bad_params_are_refused(fire: Fire) -> None:
    with Session(fire.engine) as s, s.begin():
        scope = resolve_scope(s, fire.estate, None, f"{fire.estate}-FIRE1-PUMPS")
        set_override(s, JOCKEY_RULE, scope, enabled=False, actor="test")
        with pytest.raises(InvalidInput):
            set_override(s, JOCKEY_RULE, scope, params={"level": -1}, actor="test")
    with fire.engine.connect() as conn:
        devices = {c["device"] for c in coverage(conn) if c["rule"] == JOCKEY_RULE and c["estate"] == fire.estate}
    assert devices == {fire.bare_device}


# --- heat-station secondary supply: curve from the estate's outdoor point, cap from the emitter --------------


@dataclass
class Heat:
    engine: Engine
    estate: str
    bare_estate: str  # an estate without an outdoor point
    points: dict[str, int]  # "<device>.<metric>" → point id
    devices: dict[str, int]


@pytest.fixture(scope="module")
def heat(engine: Engine) -> Heat:
    code, bare = f"mpheat-{uuid.uuid4().hex[:6]}", f"mpheat-{uuid.uuid4().hex[:6]}"

    def station(estate: str, rcode: str, attrs: dict[str, object]) -> dict[str, object]:
        return {
            "code": rcode,
            "name": "热力站",
            "kind": "heat_station",
            "devices": [
                {
                    "code": f"{estate}-{rcode}-HX",
                    "kind": "plate_heat_exchanger",
                    "attrs": attrs,
                    "points": [{"metric": "secondary_supply_temp_c"}, {"metric": "secondary_return_temp_c"}],
                }
            ],
        }

    doc = EstateFile.model_validate(
        {
            "estate": {"code": code, "name": "气候补偿测试"},
            "rooms": [
                station(code, "HSR", {"emitter": "radiators", "supply_curve": [[-10, 70], [10, 45]]}),
                station(code, "HSF", {"system": "floor_heating"}),
            ],
            # The outdoor thermometer is an estate-level device, in no room.
            "devices": [{"code": f"{code}-WX", "kind": "weather_station", "points": [{"metric": "outdoor_temp_c"}]}],
        }
    )
    bare_doc = EstateFile.model_validate(
        {"estate": {"code": bare, "name": "无室外温度"}, "rooms": [station(bare, "HS", {"emitter": "radiators"})]}
    )
    with Session(engine) as s, s.begin():
        import_estate(s, doc)
        import_estate(s, bare_doc)
        ensure_multipoint_rules(s)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.code, p.metric, p.id, d.id FROM points p JOIN devices d ON d.id = p.device_id "
                "JOIN estates e ON e.id = d.estate_id WHERE e.code = :e"
            ),
            {"e": code},
        ).all()
    return Heat(
        engine,
        code,
        bare,
        {f"{d}.{m}": p for d, m, p, _ in rows},
        {d.removeprefix(f"{code}-"): i for d, _, _, i in rows},
    )


def heat_feed(h: Heat, ev: MultiPointEvaluator, frames: Sequence[tuple[int, Mapping[str, float]]]) -> None:
    pts = {k.removeprefix(f"{h.estate}-"): v for k, v in h.points.items()}
    b = DecodedBatch(
        sample_ts=[T0 + timedelta(seconds=s) for s, vals in frames for _ in vals],
        sample_point=[pts[m] for _, vals in frames for m in vals],
        sample_value=[v for _, vals in frames for v in vals.values()],
    )
    with h.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO samples (ts, point_id, value) SELECT * FROM unnest(CAST(:t AS timestamptz[]), "
                "CAST(:p AS int[]), CAST(:v AS float8[])) ON CONFLICT DO NOTHING"
            ),
            {"t": b.sample_ts, "p": b.sample_point, "v": b.sample_value},
        )
        ev(conn, b, None)


def heat_alarms(h: Heat, device: str) -> list[tuple[str, str, str, datetime, dict[str, object], bool]]:
    with h.engine.connect() as conn:
        return [
            (r.code, r.severity, r.state, r.raised_at, r.detail, r.ticket_id is not None)
            for r in conn.execute(
                text(
                    "SELECT r.code, a.severity, a.state, a.raised_at, a.detail, a.ticket_id FROM alarms a "
                    "JOIN alarm_rules r ON r.id = a.rule_id WHERE a.device_id = :d ORDER BY a.id"
                ),
                {"d": h.devices[device]},
            )
        ]


def test_supply_curve_needs_an_outdoor_point_in_the_estate_and_says_so(heat: Heat) -> None:
    with heat.engine.connect() as conn:
        cov = {(c["estate"], c["rule"]): c for c in coverage(conn) if c["estate"] in {heat.estate, heat.bare_estate}}
    assert cov[(heat.estate, SUPPLY_CURVE_RULE)]["configured"] is True
    bare = cov[(heat.bare_estate, SUPPLY_CURVE_RULE)]
    assert (bare["status_zh"], bare["missing"]) == ("未配置", ["outdoor"])
    # Without the curve the emitter cap still judges the station.
    assert cov[(heat.bare_estate, SUPPLY_CAP_RULE)]["configured"] is True


def test_station_curve_and_emitter_cap_raise_once_each(heat: Heat) -> None:
    ev = MultiPointEvaluator(on_raised=open_for_alarms)
    sup, wx = "HSR-HX.secondary_supply_temp_c", "WX.outdoor_temp_c"
    fsup = "HSF-HX.secondary_supply_temp_c"
    # A cold day (−10 °C): the radiator station's own curve says 70 °C, warning above 75; 72 °C is fine.
    # The floor-heating station at 58 °C stays under its 60 °C cap but is far above its curve (45 + 5).
    cold = [(i * 60, {wx: -10.0, sup: 72.0, fsup: 44.0}) for i in range(10)]
    heat_feed(heat, ev, cold)
    assert heat_alarms(heat, "HSR-HX") == []
    assert heat_alarms(heat, "HSF-HX") == []
    # It turns mild (+10 °C: radiator setpoint 45, warning above 50) but the radiator supply stays at
    # 72 °C: one warning after 5 min, however often the batch is redelivered.
    mild = [(600 + i * 60, {wx: 10.0, sup: 72.0, fsup: 35.0}) for i in range(8)]
    heat_feed(heat, ev, mild)
    heat_feed(heat, ev, mild)
    [(code, sev, state, raised, detail, ticket)] = heat_alarms(heat, "HSR-HX")
    assert (code, sev, state, raised, ticket) == (
        SUPPLY_CURVE_RULE,
        "warning",
        "active",
        T0 + timedelta(seconds=900),
        True,
    )
    assert detail["curve"] == [[-10.0, 70.0], [10.0, 45.0]]
    assert detail["margin"] == 5.0
    # The floor station overheats past 60 °C: its cap alarm (not the radiators' 85) and its curve warning.
    hot = [(1080 + i * 60, {wx: 10.0, sup: 72.0, fsup: 62.0}) for i in range(7)]
    heat_feed(heat, ev, hot)
    got = sorted((c, s, d.get("level")) for c, s, _, _, d, _ in heat_alarms(heat, "HSF-HX"))
    assert got == [(SUPPLY_CURVE_RULE, "warning", None), (SUPPLY_CAP_RULE, "alarm", 60.0)]
    assert [c for c, *_ in heat_alarms(heat, "HSR-HX")] == [SUPPLY_CURVE_RULE]  # 72 °C < 85 °C on radiators
